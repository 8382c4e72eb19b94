// Softmax / log-softmax over the last axis of a contiguous float32 tensor [..., L].
// Forward (numerically stable): m = max_j x_j, e_j = exp(x_j - m), s = Σ e_j;
//   softmax y_j = e_j / s;  log-softmax y_j = x_j - m - log s.
// Backward from the forward output y only (nothing else is saved):
//   softmax     gx_j = y_j (gy_j - Σ_k y_k gy_k)
//   log-softmax gx_j = gy_j - exp(y_j) Σ_k gy_k
// Threaded over rows; the row loops are the ISA-dispatched kernels of rowkernels.h. A row of all
// -inf gives NaN (as PyTorch does). Rank-0 tensors are rejected (there is no last axis); rows of
// length 0 give an empty result.
#include <algorithm>

#include "rowkernels.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

static int64_t row_grain(int64_t L) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(L, 1)); }

Tensor softmax_forward(const Tensor& x, bool log) {
  check_f32_cpu(x, "x");
  VITRIM_CHECK(x.dim() >= 1, Shape, "softmax: x must have at least one dimension, got a scalar");
  int64_t L = x.size(-1), R = L ? x.numel() / L : 0;
  Tensor y = empty(x.shape, DType::F32);
  const float* xp = x.f32();
  float* yp = y.f32();
  const RowKernels& k = row_kernels();
  parallel_for(R, row_grain(L), [&](int64_t r0, int64_t r1) { k.softmax_fwd(xp + r0 * L, yp + r0 * L, r1 - r0, L, log); });
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log) {
  check_f32_cpu(y, "y");
  check_f32_cpu(gy, "gy");
  VITRIM_CHECK(y.dim() >= 1, Shape, "softmax_backward: y must have at least one dimension, got a scalar");
  check_same_shape(y, gy, "y", "gy");
  int64_t L = y.size(-1), R = L ? y.numel() / L : 0;
  Tensor gx = empty(y.shape, DType::F32);
  const float* yp = y.f32();
  const float* gp = gy.f32();
  float* op = gx.f32();
  const RowKernels& k = row_kernels();
  parallel_for(R, row_grain(L), [&](int64_t r0, int64_t r1) {
    k.softmax_bwd(yp + r0 * L, gp + r0 * L, op + r0 * L, r1 - r0, L, log);
  });
  return gx;
}

}  // namespace vitrim::cpu
