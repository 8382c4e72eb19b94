// Internal interface between gemm.cu (linear_fused) and gemm_f32tc.cu (the 3xTF32 float32 linear
// forward; see there).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace vitrim::cuda {

// VITRIM_CUDA_GEMM_F32=3xtf32 (read per call): float32 linear forwards use linear_f32tc where it fits.
bool linear_f32tc_selected();
// K > 0, K % 4 == 0, x and w 16-byte aligned.
bool linear_f32tc_fits(const void* x, const void* w, int64_t K);
// y[M, N] = act(x[M, K] w[N, K]^T + bias) (+ res), act = GELU (exact erf) when `gelu`; bias, res may be null.
void linear_f32tc(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t M, int64_t N,
                  int64_t K, bool gelu);

}  // namespace vitrim::cuda
