// Portable GEMM micro-kernel (baseline flags; also the only kernel on non-x86 builds). A 4 x 16
// register tile written as plain loops over a local accumulator array, which the compiler keeps in
// vector registers (SSE on baseline x86-64, NEON on arm64). Same packed layouts and edge rules as
// the SIMD kernels (gemm_kernel.h).
#include "gemm_kernel.h"
#include "gemm_pack.h"

namespace vitrim::cpu::gemm {
namespace {

template <int MR, int NR>
void micro_generic(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c, int64_t ldc,
                   float alpha, float beta, const float* bias, int m, int n) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < MR; ++r) {
      const float a = ap[r];
      for (int j = 0; j < NR; ++j) acc[r][j] += a * bp[j];
    }
    ap += MR;
    bp += NR;
  }
  for (int r = 0; r < m; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < n; ++j) {
      float x = alpha * acc[r][j] + (bias ? bias[j] : 0.f);
      if (beta != 0.f) x += beta * cr[j];
      cr[j] = x;
    }
  }
}

}  // namespace

const Kernel& kernel_generic() {
  static const Kernel k{"generic", 4, 16, 128, 256, 4096, &micro_generic<4, 16>, &pack_a_panels<4>,
                        &pack_b_panels<16>};
  return k;
}

}  // namespace vitrim::cpu::gemm
