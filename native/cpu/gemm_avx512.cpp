// AVX-512 GEMM micro-kernel (compiled with -mavx512f...; entered only after the CPUID check in
// gemm.cpp). Register tile MR x (16*NV): MR*NV zmm accumulators; per k step NV vector loads of the
// packed B row and MR broadcasts of packed A, each feeding NV FMAs. Edge tiles (n < NR) store
// through write masks; rows past m are computed on the zero padding and dropped. Also here: the
// packing routines that are transposes (A not transposed, B transposed), done 16 x 16 in registers.
#include <immintrin.h>

// GCC 12's own _mm512_undefined_ps (used inside the shuffle intrinsics) trips -W(maybe-)uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

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

// In-register transpose of 16 rows x 16 floats (r[i] = row i) into r[c] = column c: unpack within
// 128-bit lanes (pairs of rows), shuffle_ps (quads of rows per lane), then two rounds of
// shuffle_f32x4 gather lane l of the four quads into column 4l + j. 64 shuffles per 256 floats.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // u[4i + j], lane l = rows 4i..4i+3 of column 4l + j
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    t[0 + j] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    t[8 + j] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    t[4 + j] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Loads `rows` (<= 16) source rows of kb (<= 16) floats each into r (missing rows are zero),
// transposes, and stores the first kb columns' `width` lanes at out + c*stride.
inline void transpose_block(const float* src, int64_t ld, int rows, int kb, float* out, int64_t stride,
                            __mmask16 width) {
  const __mmask16 km = kb >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kb) - 1u);
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(km, src + i * ld) : _mm512_setzero_ps();
  transpose16(r);
  if (kb == 16) {
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(out + c * stride, width, r[c]);
  } else {
    for (int c = 0; c < kb; ++c) _mm512_mask_storeu_ps(out + c * stride, width, r[c]);
  }
}

// op(A) not transposed (rows of A are contiguous in k): MR <= 16 rows per panel, 16 k at a time
// through transpose16. Transposed A is a plain copy and keeps the portable loop.
template <int MR>
void pack_a_avx512(bool trans, const float* a, int64_t lda, int64_t rows, int64_t kc, float* out) {
  static_assert(MR <= 16, "one transpose16 covers at most 16 rows");
  if (trans) return pack_a_panels<MR>(trans, a, lda, rows, kc, out);
  const __mmask16 width = (__mmask16)((1u << MR) - 1u);
  for (int64_t i0 = 0; i0 < rows; i0 += MR, out += kc * MR) {
    const int m = (int)imin(MR, rows - i0);
    for (int64_t k0 = 0; k0 < kc; k0 += 16)
      transpose_block(a + i0 * lda + k0, lda, m, (int)imin(16, kc - k0), out + k0 * MR, MR, width);
  }
}

// op(B) transposed (B stored [N, K], the linear layer's weight): NR = 16*NV source rows per panel,
// each group of 16 rows transposed into its 16-column slice of the panel.
template <int NR>
void pack_b_avx512(bool trans, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* out) {
  static_assert(NR % 16 == 0, "NR must be a multiple of 16");
  if (!trans) return pack_b_panels<NR>(trans, b, ldb, cols, kc, out);
  for (int64_t j0 = 0; j0 < cols; j0 += NR, out += kc * NR) {
    const int n = (int)imin(NR, cols - j0);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int kb = (int)imin(16, kc - k0);
#pragma GCC unroll 4
      for (int g = 0; g < NR / 16; ++g) {
        const int rows = n - 16 * g < 0 ? 0 : (n - 16 * g > 16 ? 16 : n - 16 * g);
        transpose_block(b + (j0 + 16 * g) * ldb + k0, ldb, rows, kb, out + k0 * NR + 16 * g, NR, (__mmask16)0xFFFF);
      }
    }
  }
}

}  // namespace

// 12 x 32: 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers. On the Zen 4 this
// was tuned on, 14x32, 6x64, 8x48 and 28x16 all run at the same L1-resident peak (~115 GFLOP/s
// per core); 12x32 wastes the least on 197-token edges (NR = 64 would pad 197 columns to 256) and
// kc 512 / mc 144 (A block 288 KiB of the 1 MiB L2) measured best. See bench/gemm-variants.md.
const Kernel& kernel_avx512() {
  static const Kernel k{"avx512", 12, 32, 144, 512, 4096, &micro_avx512<12, 2>, &pack_a_avx512<12>,
                        &pack_b_avx512<32>, &gelu_rows_impl};
  return k;
}

}  // namespace vitrim::cpu::gemm
