// AVX2+FMA GEMM micro-kernel (compiled with -mavx2 -mfma; entered only after the CPUID check in
// gemm.cpp). Register tile MR x (8*NV): MR*NV ymm accumulators (6 x 16 -> 12 of the 16 registers,
// leaving room for the NV B loads and one A broadcast). Full tiles store straight to C; edge tiles
// spill the accumulators to a local tile and copy the valid m x n part, so C outside it is never
// touched.
#include <immintrin.h>

#include "gemm_kernel.h"
#include "gemm_pack.h"

namespace vitrim::cpu::gemm {
namespace {

template <int MR, int NV>
void micro_avx2(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c, int64_t ldc,
                float alpha, float beta, const float* bias, int m, int n) {
  constexpr int NR = 8 * NV;
  __m256 acc[MR][NV];
#pragma GCC unroll 64
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    __m256 b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(bp + v * 8);
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(ap + r);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
    ap += MR;
    bp += NR;
  }

  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (m == MR && n == NR) {
    __m256 bias_v[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bias_v[v] = bias ? _mm256_loadu_ps(bias + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r) {
      float* cr = c + r * ldc;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        __m256 x = _mm256_fmadd_ps(acc[r][v], va, bias_v[v]);
        if (beta != 0.f) x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8 * v), x);
        _mm256_storeu_ps(cr + 8 * v, x);
      }
    }
    return;
  }
  alignas(32) float t[MR * NR];
#pragma GCC unroll 64
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm256_store_ps(t + r * NR + 8 * v, acc[r][v]);
  for (int r = 0; r < m; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < n; ++j) {
      float x = alpha * t[r * NR + j] + (bias ? bias[j] : 0.f);
      if (beta != 0.f) x += beta * cr[j];
      cr[j] = x;
    }
  }
}

}  // namespace

const Kernel& kernel_avx2() {
  static const Kernel k{"avx2", 6, 16, 96, 384, 4096, &micro_avx2<6, 2>, &pack_a_panels<6>, &pack_b_panels<16>};
  return k;
}

}  // namespace vitrim::cpu::gemm
