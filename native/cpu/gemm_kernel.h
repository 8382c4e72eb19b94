// Internal interface between the GEMM driver (gemm.cpp) and its micro-kernels (gemm_generic.cpp,
// gemm_avx2.cpp, gemm_avx512.cpp). Not part of the op surface.
//
// Packed layouts (BLIS/GotoBLAS): op(A)'s rows are packed into MR-row panels, each panel k-major
// (panel[k*MR + r] = op(A)[i0 + r, p0 + k]); op(B)'s columns into NR-column panels, each k-major
// (panel[k*NR + c] = op(B)[p0 + k, j0 + c]). Panels past the matrix edge are zero-padded, so a
// micro-kernel always runs the full MR x NR x kc product and only masks what it stores.
#pragma once
#include <cstdint>

#include "gelu.h"

namespace vitrim::cpu::gemm {

struct Kernel {
  const char* isa;
  int mr, nr;          // register tile
  int64_t mc, kc, nc;  // cache blocks: A block mc x kc (L2), B block kc x nc (L3)
  // C[m x n] = alpha * Ap Bp + beta * C (+ bias[j] on column j when bias is non-null) for m <= mr,
  // n <= nr; beta == 0 never reads C.
  void (*micro)(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta,
                const float* bias, int m, int n);
  // Packs rows [0, rows) x k [0, kc) of op(A), where op(A)[i, k] = trans ? a[k*lda + i] : a[i*lda + k],
  // into ceil(rows / mr) panels of kc*mr floats.
  void (*pack_a)(bool trans, const float* a, int64_t lda, int64_t rows, int64_t kc, float* out);
  // Packs k [0, kc) x columns [0, cols) of op(B), op(B)[k, j] = trans ? b[j*ldb + k] : b[k*ldb + j],
  // into ceil(cols / nr) panels of kc*nr floats.
  void (*pack_b)(bool trans, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* out);
  // In place C[m x n] = GELU(C) on an m x n block (any size) of rows with stride ldc: the fused
  // linear's epilogue, run on each finished row block while it is in L2. Compiled with the kernel's
  // ISA flags.
  void (*gelu_rows)(float* c, int64_t ldc, int64_t m, int64_t n);
};

// The epilogue body each kernel file instantiates with its own flags (internal linkage, so the
// AVX-512 copy can never stand in for the baseline one).
namespace {
void gelu_rows_impl(float* c, int64_t ldc, int64_t m, int64_t n) {
  for (int64_t r = 0; r < m; ++r) {
    float* cr = c + r * ldc;
    for (int64_t j = 0; j < n; ++j) cr[j] = gelu_math::gelu_value(cr[j]);
  }
}
}  // namespace

// The kernel sgemm uses now (CPUID choice unless gemm_set_isa pinned one); for callers in native/cpu
// that drive the micro-kernel themselves (attention's forward).
const Kernel& active_kernel();

const Kernel& kernel_generic();
#if defined(__x86_64__) || defined(_M_X64)
const Kernel& kernel_avx2();
const Kernel& kernel_avx512();
#endif

}  // namespace vitrim::cpu::gemm
