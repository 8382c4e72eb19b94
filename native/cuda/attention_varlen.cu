// Varlen attention forward on CUDA (inference on packed sequences): attention_varlen_forward with
// the semantics and validation of native/cpu/attention_varlen.cpp.
//
// cu_seqlens lives on the device (the dispatcher requires every tensor argument on one device); it
// is small, so it is copied to the host (one stream sync; none when it was uploaded from the host,
// whose values the upload kept: known_host_ints) and checked exactly as the CPU does
// (cu[0] = 0: Argument; nondecreasing: Argument; cu[S] = R: Shape). The host copy also builds the
// kernel's task list: one CTA per (sequence, head, query tile), see attention.cu (the same
// forward kernels as the dense op, without keep or stats). A head whose gate is 0 is not computed:
// its CTAs read the gate, write zeros to the head's output channels and return.
// head_gate: float32 or the dtype of qkv, [S, H].
#include <cmath>
#include <memory>
#include <vector>

#include "attention.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

Tensor attention_varlen_forward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t num_heads, double scale,
                                const std::optional<Tensor>& head_gate) {
  check_float_cuda(qkv, "qkv");
  const VarlenShape vs = check_varlen_shape(qkv, cu_seqlens, num_heads, scale, Device::CUDA);
  const int64_t R = vs.R, C3 = vs.C3, H = vs.H, D = vs.D;
  VITRIM_CHECK(D <= 128, Shape, "attention_varlen: head_dim ", D, " is above 128, the largest the cuda kernels support");
  VITRIM_CHECK(C3 <= INT32_MAX, Shape, "attention_varlen: qkv rows of ", C3, " values are above the cuda kernels' limit");
  const int64_t S = vs.S;
  // Uploaded from the host: the values the upload kept, without a copy back and a sync.
  std::shared_ptr<const std::vector<int32_t>> held = known_host_ints(cu_seqlens);
  if (!held) {
    auto back = std::make_shared<std::vector<int32_t>>((size_t)(S + 1));
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(back->data(), cu_seqlens.raw(), back->size() * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, stream()));
    VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
    held = std::move(back);
  }
  const std::vector<int32_t>& cu = *held;
  VITRIM_CHECK(cu[0] == 0, Argument, "attention_varlen: cu_seqlens[0] must be 0, got ", cu[0]);
  for (int64_t s = 0; s < S; ++s)
    VITRIM_CHECK(cu[s + 1] >= cu[s], Argument, "attention_varlen: cu_seqlens must be nondecreasing (at ", s + 1, ")");
  VITRIM_CHECK(cu[S] == R, Shape, "attention_varlen: cu_seqlens[S] = ", cu[S], " must equal the number of rows ", R);
  if (head_gate) {
    check_cuda(*head_gate, "head_gate");
    VITRIM_CHECK(head_gate->dtype == DType::F32 || head_gate->dtype == qkv.dtype, DType,
                 "head_gate must be float32 or ", dtype_name(qkv.dtype), " (the dtype of qkv), got ",
                 dtype_name(head_gate->dtype));
    check_shape(*head_gate, {S, H}, "head_gate");
  }
  return attn::varlen_forward(qkv, cu_seqlens, cu, num_heads, scale, head_gate);
}

VITRIM_CUDA_OP(attention_varlen_forward);

}  // namespace vitrim::cuda
