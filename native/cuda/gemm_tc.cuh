// Internal interface between gemm.cu (linear_fused) and our tensor-core linear forwards:
// gemm_f32tc.cu (float32 in 3xTF32) and gemm_bf16tc.cu (bf16, fp32 accumulate). Both take
// y[M, N] = act(x[M, K] w[N, K]^T + bias) (+ res), act = exact-erf GELU or identity, row-major, and
// are alternatives to cuBLASLt chosen by an environment variable read per call, until a GPU run has
// compared them (bench rows `... (3xTF32 kernel)`, `... (mma kernel)`, `gemm-tune ...`).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace vitrim::cuda {

// How a tensor-core linear is launched (gemm_tc.cu):
// - the CTA tile: the one `tile_env` names (128x128, 128x64, 64x128 or 64x64; anything else is an
//   ArgumentError naming the choices), else the largest that still gives every SM a CTA;
// - split-K: where even 64 x 64 tiles leave SMs idle (batch 1: M = 197 gives 24 tiles for a
//   384-wide output on 132 SMs), the K steps are shared out over `splits` CTAs per tile (each at
//   least 4 K steps), which write fp32 partial sums to a workspace that tc_splitk_epilogue adds up
//   in a fixed order (deterministic) before the bias / GELU / residual epilogue.
//   VITRIM_CUDA_GEMM_SPLITK=n forces n (1 = off; 1..64, else an ArgumentError).
// `steps` = K steps per split; splits * steps covers every K step, the last split may have fewer.
struct TcPlan {
  int bm, bn;
  int splits;
  int64_t steps;
};
TcPlan tc_plan(int64_t M, int64_t N, int64_t ktiles, const char* tile_env);

// y[m, n] = act(sum_s part[s, m, n] + bias[n]) (+ res[m, n]): the epilogue of a split-K launch.
// part float32 [splits, M, N]; y and res of dtype yt, bias (optional) of dtype bt.
void tc_splitk_epilogue(const float* part, int splits, const void* bias, DType bt, const void* res, void* y, DType yt,
                        int64_t M, int64_t N, bool gelu);

// VITRIM_CUDA_GEMM_F32=3xtf32: float32 linear forwards use linear_f32tc where it fits.
bool linear_f32tc_selected();
// K > 0, K % 4 == 0, x and w 16-byte aligned.
bool linear_f32tc_fits(const void* x, const void* w, int64_t K);
// bias, res may be null.
void linear_f32tc(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t M, int64_t N,
                  int64_t K, bool gelu);

// VITRIM_CUDA_GEMM_BF16=mma: bf16 linear forwards use linear_bf16tc where it fits.
bool linear_bf16tc_selected();
// K > 0, K % 8 == 0, x and w 16-byte aligned.
bool linear_bf16tc_fits(const void* x, const void* w, int64_t K);
// x, w bf16; y of dtype `yt` (bf16, or float32 for autocast's residual stream), res (optional) of
// y's dtype, bias (optional) of dtype `bt` (bf16 or float32).
void linear_bf16tc(const bf16* x, const bf16* w, const void* bias, DType bt, const void* res, void* y, DType yt,
                   int64_t M, int64_t N, int64_t K, bool gelu);

}  // namespace vitrim::cuda
