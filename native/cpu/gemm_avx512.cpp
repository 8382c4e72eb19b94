// AVX-512 GEMM micro-kernel (compiled with -mavx512f...; entered only after the CPUID check in
// gemm.cpp). Register tile MR x (16*NV): MR*NV zmm accumulators; per k step NV vector loads of the
// packed B row and MR broadcasts of packed A (folded into the FMAs as {1to16} memory operands).
// Edge tiles (n < NR) store through write masks; rows past m are computed on zero padding and dropped.
#include <immintrin.h>

#include "gemm_kernel.h"
#include "gemm_pack.h"

namespace vitrim::cpu::gemm {
namespace {

template <int MR, int NV>
void micro_avx512(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c, int64_t ldc,
                  float alpha, float beta, const float* bias, int m, int n) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 64
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(bp + v * 16);
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(ap[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
    ap += MR;
    bp += NR;
  }

  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __mmask16 mk[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const int rem = n - 16 * v;
    mk[v] = rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1u);
  }
  __m512 bias_v[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) bias_v[v] = bias ? _mm512_maskz_loadu_ps(mk[v], bias + 16 * v) : _mm512_setzero_ps();
  if (n == NR) {
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r) {
      if (r >= m) break;
      float* cr = c + r * ldc;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        __m512 x = _mm512_fmadd_ps(acc[r][v], va, bias_v[v]);
        if (beta != 0.f) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16 * v), x);
        _mm512_storeu_ps(cr + 16 * v, x);
      }
    }
  } else {
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r) {
      if (r >= m) break;
      float* cr = c + r * ldc;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        __m512 x = _mm512_fmadd_ps(acc[r][v], va, bias_v[v]);
        if (beta != 0.f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk[v], cr + 16 * v), x);
        _mm512_mask_storeu_ps(cr + 16 * v, mk[v], x);
      }
    }
  }
}

template <int MR, int NV>
Kernel make_kernel(int64_t mc, int64_t kc, int64_t nc) {
  return Kernel{"avx512",
                MR,
                16 * NV,
                mc,
                kc,
                nc,
                &micro_avx512<MR, NV>,
                &pack_a_panels<MR>,
                &pack_b_panels<16 * NV>};
}

}  // namespace

const Kernel& kernel_avx512() {
  static const Kernel k = make_kernel<12, 2>(192, 384, 4096);
  return k;
}

}  // namespace vitrim::cpu::gemm
