// Portable GEMM micro-kernel (baseline flags; also the only kernel on non-x86 builds). A 6 x 8
// register tile of 4-float vectors through the GCC/Clang vector extension, which lowers to SSE on
// baseline x86-64 and NEON on arm64: 12 accumulators + 2 B vectors + 1 broadcast fit the 16 xmm
// registers (plain loops over a float[6][8] array were vectorised across k by GCC and spilled).
// Same packed layouts and edge rules as the SIMD kernels (gemm_kernel.h).
#include <cstring>

#include "gemm_kernel.h"
#include "gemm_pack.h"

namespace vitrim::cpu::gemm {
namespace {

#if defined(__GNUC__) || defined(__clang__)
typedef float v4f __attribute__((vector_size(16)));

inline v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <int MR, int NV>
void micro_generic(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c, int64_t ldc,
                   float alpha, float beta, const float* bias, int m, int n) {
  constexpr int NR = 4 * NV;
  v4f acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = v4f{0.f, 0.f, 0.f, 0.f};
  for (int64_t k = 0; k < kc; ++k) {
    v4f b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load4(bp + 4 * v);
    for (int r = 0; r < MR; ++r) {
      const float s = ap[r];
      const v4f a = {s, s, s, s};
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
    ap += MR;
    bp += NR;
  }
  float t[MR][NR];
  std::memcpy(t, acc, sizeof t);
  for (int r = 0; r < m; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < n; ++j) {
      float x = alpha * t[r][j] + (bias ? bias[j] : 0.f);
      if (beta != 0.f) x += beta * cr[j];
      cr[j] = x;
    }
  }
}
#else
template <int MR, int NV>
void micro_generic(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c, int64_t ldc,
                   float alpha, float beta, const float* bias, int m, int n) {
  constexpr int NR = 4 * NV;
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, ap += MR, bp += NR)
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] += ap[r] * bp[j];
  for (int r = 0; r < m; ++r)
    for (int j = 0; j < n; ++j) {
      float x = alpha * acc[r][j] + (bias ? bias[j] : 0.f);
      if (beta != 0.f) x += beta * c[r * ldc + j];
      c[r * ldc + j] = x;
    }
}
#endif

}  // namespace

const Kernel& kernel_generic() {
  static const Kernel k{"generic", 6, 8, 96, 256, 4096, &micro_generic<6, 2>, &pack_a_panels<6>, &pack_b_panels<8>,
                        &gelu_rows_impl};
  return k;
}

}  // namespace vitrim::cpu::gemm
