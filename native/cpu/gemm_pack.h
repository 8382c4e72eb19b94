// Portable packing loops for the GEMM panels (layouts in gemm_kernel.h), templated on the register
// tile so each kernel file instantiates them with constants and its own ISA flags (the compiler then
// vectorises the contiguous copies). Everything is in an anonymous namespace: the same template
// compiled with -mavx512f in one file and baseline flags in another must never be merged by the
// linker (an AVX-512 copy picked for the generic path would fault on older CPUs).
#pragma once
#include <cstdint>
#include <cstring>

namespace vitrim::cpu::gemm {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Rows of op(A) into MR-row panels. Not transposed, each of the MR rows is read contiguously in
// chunks of KB k-values, so the gather stays inside L1 (a transpose of MR x KB per chunk).
template <int MR>
void pack_a_panels(bool trans, const float* a, int64_t lda, int64_t rows, int64_t kc, float* out) {
  constexpr int64_t KB = 32;
  for (int64_t i0 = 0; i0 < rows; i0 += MR, out += kc * MR) {
    const int m = (int)imin(MR, rows - i0);
    if (!trans) {
      const float* src = a + i0 * lda;
      for (int64_t k0 = 0; k0 < kc; k0 += KB) {
        const int64_t kb = imin(KB, kc - k0);
        float* o = out + k0 * MR;
        for (int r = 0; r < m; ++r) {
          const float* s = src + r * lda + k0;
          for (int64_t k = 0; k < kb; ++k) o[k * MR + r] = s[k];
        }
        for (int r = m; r < MR; ++r)
          for (int64_t k = 0; k < kb; ++k) o[k * MR + r] = 0.f;
      }
    } else {
      const float* src = a + i0;
      if (m == MR) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(out + k * MR, src + k * lda, sizeof(float) * MR);
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int r = 0; r < m; ++r) out[k * MR + r] = src[k * lda + r];
          for (int r = m; r < MR; ++r) out[k * MR + r] = 0.f;
        }
      }
    }
  }
}

// Columns of op(B) into NR-column panels. Transposed (B stored [N, K], the linear-layer case), each
// of the NR source rows is read contiguously in chunks of KB.
template <int NR>
void pack_b_panels(bool trans, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* out) {
  constexpr int64_t KB = 32;
  for (int64_t j0 = 0; j0 < cols; j0 += NR, out += kc * NR) {
    const int n = (int)imin(NR, cols - j0);
    if (!trans) {
      const float* src = b + j0;
      if (n == NR) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(out + k * NR, src + k * ldb, sizeof(float) * NR);
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int c = 0; c < n; ++c) out[k * NR + c] = src[k * ldb + c];
          for (int c = n; c < NR; ++c) out[k * NR + c] = 0.f;
        }
      }
    } else {
      const float* src = b + j0 * ldb;
      for (int64_t k0 = 0; k0 < kc; k0 += KB) {
        const int64_t kb = imin(KB, kc - k0);
        float* o = out + k0 * NR;
        for (int c = 0; c < n; ++c) {
          const float* s = src + c * ldb + k0;
          for (int64_t k = 0; k < kb; ++k) o[k * NR + c] = s[k];
        }
        for (int c = n; c < NR; ++c)
          for (int64_t k = 0; k < kb; ++k) o[k * NR + c] = 0.f;
      }
    }
  }
}

}  // namespace
}  // namespace vitrim::cpu::gemm
