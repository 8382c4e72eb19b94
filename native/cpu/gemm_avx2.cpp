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

// In-register 8 x 8 transpose (r[i] = row i -> r[c] = column c): unpack pairs of rows within
// 128-bit lanes, shuffle_ps to quads per lane, permute2f128 joins the lanes of rows 0-3 and 4-7.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {  // u[4i + j], lane l = rows 4i..4i+3 of column 4l + j
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// Loads `rows` (<= 8) source rows of kb (<= 8) floats (missing rows zero) and transposes them.
inline void load_transposed(const float* src, int64_t ld, int rows, int kb, __m256 r[8]) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i km = _mm256_cmpgt_epi32(_mm256_set1_epi32(kb), lane);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)
    r[i] = i >= rows ? _mm256_setzero_ps() : kb == 8 ? _mm256_loadu_ps(src + i * ld) : _mm256_maskload_ps(src + i * ld, km);
  transpose8(r);
}

// op(A) not transposed: MR (<= 8) rows per panel, 8 k at a time through transpose8; each column's
// MR floats are stored as 4 + 2 (+ ...) without masked stores (slow on some AMD parts).
template <int MR>
void pack_a_avx2(bool trans, const float* a, int64_t lda, int64_t rows, int64_t kc, float* out) {
  static_assert(MR == 6, "the store sequence below is written for 6-row panels");
  if (trans) return pack_a_panels<MR>(trans, a, lda, rows, kc, out);
  for (int64_t i0 = 0; i0 < rows; i0 += MR, out += kc * MR) {
    const int m = (int)imin(MR, rows - i0);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int kb = (int)imin(8, kc - k0);
      __m256 r[8];
      load_transposed(a + i0 * lda + k0, lda, m, kb, r);
      float* o = out + k0 * MR;
      for (int c = 0; c < kb; ++c) {
        _mm_storeu_ps(o + c * MR, _mm256_castps256_ps128(r[c]));
        _mm_storel_pi(reinterpret_cast<__m64*>(o + c * MR + 4), _mm256_extractf128_ps(r[c], 1));
      }
    }
  }
}

// op(B) transposed (B stored [N, K]): NR = 8*NV source rows per panel, 8 rows per transpose8.
template <int NR>
void pack_b_avx2(bool trans, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* out) {
  static_assert(NR % 8 == 0, "NR must be a multiple of 8");
  if (!trans) return pack_b_panels<NR>(trans, b, ldb, cols, kc, out);
  for (int64_t j0 = 0; j0 < cols; j0 += NR, out += kc * NR) {
    const int n = (int)imin(NR, cols - j0);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int kb = (int)imin(8, kc - k0);
      for (int g = 0; g < NR / 8; ++g) {
        const int rows = n - 8 * g < 0 ? 0 : (n - 8 * g > 8 ? 8 : n - 8 * g);
        __m256 r[8];
        load_transposed(b + (j0 + 8 * g) * ldb + k0, ldb, rows, kb, r);
        for (int c = 0; c < kb; ++c) _mm256_storeu_ps(out + (k0 + c) * NR + 8 * g, r[c]);
      }
    }
  }
}

}  // namespace

const Kernel& kernel_avx2() {
  static const Kernel k{"avx2", 6, 16, 96, 384, 4096, &micro_avx2<6, 2>, &pack_a_avx2<6>, &pack_b_avx2<16>,
                        &gelu_rows_impl};
  return k;
}

}  // namespace vitrim::cpu::gemm
