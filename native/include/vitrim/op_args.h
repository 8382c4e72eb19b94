// Argument checks and shape plans shared by the CPU and CUDA implementations of an op: the parts
// that do not depend on the device (shapes, scalars, storage aliasing, output shapes). Each backend
// still checks device and dtype itself (the CPU takes float32, CUDA float32 or bfloat16) and then
// calls these, so both report the same errors with the same messages. Pure functions in
// core/op_args.cpp, compiled into the addon and into libvitrim_cuda alike.
#pragma once
#include <functional>
#include <vector>

#include "vitrim/ops.h"
#include "vitrim/tensor.h"

namespace vitrim {

// axis in [-rank, rank) -> [0, rank); Index error naming `op` otherwise.
int64_t norm_axis(int64_t axis, int64_t rank, const char* op);

// ---- permute ----
// An output dim (outer to inner) and its stride in the input, in elements; size-1 dims dropped and
// dims that stay consecutive in the input merged, so the copy loops over as few dims as possible.
struct PDim {
  int64_t size, stride;
};
struct PermutePlan {
  Shape out;
  std::vector<PDim> dims;  // empty when every dim is 1 (or the tensor is empty)
};
// perm must be a permutation of the axes (negative axes allowed).
PermutePlan plan_permute(const Tensor& x, const std::vector<int64_t>& perm);

// ---- reduce ----
struct ReducePlan {
  std::vector<bool> reduced;  // per input axis (every axis when `axes` is empty)
  Shape out;                  // the output shape (reduced axes kept as 1 with keepdim)
  int64_t count = 1;          // elements reduced into each output
};
ReducePlan plan_reduce(cpu::ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim);

// ---- topk along the last axis: k in [0, L], int32 indices; returns the output shape [..., k] ----
Shape plan_topk(const Tensor& x, int64_t k);

// ---- token gather / scatter: idx [B, K] int32 on device d ----
void check_token_index(const Tensor& idx, int64_t B, Device d, const char* op);
// scatter_tokens' shapes: g [B, K, C] (its dtype is the backend's to check), n >= 0, idx [B, K] on d.
void check_scatter_tokens(const Tensor& g, const Tensor& idx, int64_t n, Device d);

// ---- attention: qkv [B, N, 3C] in timm's fused layout, C = H * D ----
struct AttentionShape {
  int64_t B, N, H, C, D, C3;
};
// qkv's rank and last dimension against num_heads, and the finite scale / eps >= 0 scalars.
AttentionShape check_attention_shape(const char* op, const Tensor& qkv, int64_t num_heads, double scale, double eps);

// ---- slice along one axis: rows of `inner` elements, `outer` of them ----
struct SlicePlan {
  int64_t axis = 0;
  int64_t d = 0;    // the axis' size in the full tensor
  int64_t len = 0;  // the slice's length along it
  Shape out;        // slice: the slice's shape; slice_backward: the full shape
  int64_t outer = 1, inner = 1;
};
// x[..., start:end, ...] along axis (0 <= start <= end <= size).
SlicePlan plan_slice(const Shape& x, int64_t axis, int64_t start, int64_t end);
// The zero-padded gradient of a slice: gy (the slice's gradient) placed at `start` in `shape`.
SlicePlan plan_slice_backward(const Shape& gy, const Shape& shape, int64_t axis, int64_t start);

// ---- patchify: images [B, C, H, W] into (H/p)x(W/p) patches of C*p*p ----
struct PatchGeom {
  int64_t B, C, H, W, p, gh, gw;
};
PatchGeom patch_geometry(const Shape& image, int64_t p, const char* op);

// ---- varlen attention: qkv [R, 3C] packed rows, cu_seqlens [S+1] int32 on device d ----
struct VarlenShape {
  int64_t R, C3, C, H, D, S;
};
VarlenShape check_varlen_shape(const Tensor& qkv, const Tensor& cu_seqlens, int64_t num_heads, double scale, Device d);

// ---- sum_to (the backward of broadcasting): the axes of x that sum down to `shape` ----
std::vector<int64_t> sum_to_axes(const Shape& x, const Shape& shape);

// ---- concat ----
struct ConcatPlan {
  int64_t axis = 0;
  Shape out;            // the output shape
  int64_t outer = 1;    // product of the dims before the axis
  int64_t inner = 1;    // product of the dims after it
};
// Every input has input 0's dtype and rank, and its shape except along the axis.
ConcatPlan plan_concat(const std::vector<Tensor>& xs, int64_t axis);
// The concatenation as row copies: input k's `outer` rows of bytes go to y's rows at a byte offset
// that grows with k. CopyRows(rows, src, src_row_bytes, dst, dst_row_bytes, dst_offset, bytes) is
// the backend's strided row copy.
using CopyRows = void (*)(int64_t, const uint8_t*, int64_t, uint8_t*, int64_t, int64_t, int64_t);
void concat_rows(const std::vector<Tensor>& xs, const ConcatPlan& plan, const Tensor& y, CopyRows copy);

// ---- matmul: [.., M, K] x [.., K, N] (b may be 2-D and shared) ----
struct MatmulPlan {
  int64_t M = 0, N = 0, K = 0, batch = 1;
  bool shared_b = false;
  Shape out;
};
MatmulPlan plan_matmul(const Tensor& a, const Tensor& b, bool transA, bool transB);

// ---- AdamW ----
// The per-step scalars of the fused update (bias corrections folded in), in float32 as both
// backends apply them: m = b1 m + c1 g; v = b2 v + c2 g^2;
// p = p decay - step_size m / (sqrt(v) inv_sqrt_bc2 + eps).
struct AdamWScalars {
  float decay, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps;
};
// Shapes, hyper-parameters and storage aliasing of an AdamW step (device and dtype: the backend).
AdamWScalars check_adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                         double beta1, double beta2, double eps, double weight_decay, int64_t step);
// The same for the lists of adamw_step_multi (one entry per parameter; errors name the entry), plus
// storage aliasing across entries: every param, m and v is written, so no two may share storage,
// and no grad may share storage with any of them. `check_devices(i)` checks entry i's devices and
// dtypes (the backend's part).
AdamWScalars check_adamw_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                               const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, double lr, double beta1,
                               double beta2, double eps, double weight_decay, int64_t step,
                               const std::function<void(size_t)>& check_devices);
// grad_scale of adamw_step_multi: float32, one element (its device: the backend's dispatch).
void check_grad_scale(const std::optional<Tensor>& grad_scale);

}  // namespace vitrim
