// Bodies of the row kernels declared in rowkernels.h; included once per ISA TU (rowkernels.cpp,
// rowkernels_avx2.cpp, rowkernels_avx512.cpp), each of which wraps them in its RowKernels table.
// Internal linkage only and no std:: inline templates or libm wrappers (only __builtin_* calls), so
// nothing compiled with AVX flags can be shared with the baseline path at link time.
// The maths (see attention.cpp and softmax.cpp for the derivations):
//   attention rows  P_ij = e_ij/l_i (plain) or (e_ij pi_ij + eps/N)/(Z_i + eps) (keep), e = exp(s - m)
//   gradient rows   plain gs_ij = g P_ij (G_ij - D_i);  keep W_ij = (g/den_i) e_ij (G_ij - D_i),
//                   gs_ij = pi_ij W_ij, gs_{i,argmax} -= eps (g/den_i)(D_i - mean_j G_ij)
#pragma once
#include <cstdint>

#include "rowkernels.h"
#include "rowmath.h"

namespace vitrim::cpu {
namespace {

namespace rm = rowmath;

void attn_probs_fwd(float* S, int64_t rb, int64_t N, int64_t i0, const float* keep, float eps, float* stats) {
  for (int64_t r = 0; r < rb; ++r) {
    const int64_t i = i0 + r;
    float* s = S + r * N;
    const float m = rm::max(s, N);
    for (int64_t j = 0; j < N; ++j) s[j] = rm::exp_nonpos(s[j] - m);
    float den;
    if (keep) {
      const float ei = s[i];  // pi_ii = 1 whatever keep_i is
      for (int64_t j = 0; j < N; ++j) s[j] *= keep[j];
      s[i] = ei;
      den = rm::sum(s, N) + eps;
      const float rr = 1.f / den, add = eps / (float)N * rr;
      for (int64_t j = 0; j < N; ++j) s[j] = s[j] * rr + add;
    } else {
      den = rm::sum(s, N);
      const float rr = 1.f / den;
      for (int64_t j = 0; j < N; ++j) s[j] *= rr;
    }
    stats[2 * r] = m;
    stats[2 * r + 1] = den;
  }
}

void attn_probs_bwd(float* E, float* P, int64_t rb, int64_t N, int64_t i0, const float* keep, float eps,
                    const float* stats, int64_t* amax) {
  for (int64_t r = 0; r < rb; ++r) {
    const int64_t i = i0 + r;
    float* e = E + r * N;
    float* p = P + r * N;
    const float m = stats[2 * r], rr = 1.f / stats[2 * r + 1];
    if (keep) {
      // The first argmax receives the max's gradient (as torch.max routes it). The scores come
      // from the same sgemm call as in the forward; where a last-bit difference could move the
      // argmax, the entries are tied to rounding and either choice is equally right.
      const float mx = rm::max(e, N);
      int64_t am = 0;
      while (am < N - 1 && !(e[am] == mx)) ++am;
      amax[r] = am;
    }
    for (int64_t j = 0; j < N; ++j) e[j] = rm::exp_nonpos(e[j] - m);
    if (keep) {
      const float add = eps / (float)N * rr;
      for (int64_t j = 0; j < N; ++j) p[j] = e[j] * keep[j] * rr + add;
      p[i] = e[i] * rr + add;
    } else {
      for (int64_t j = 0; j < N; ++j) p[j] = e[j] * rr;
    }
  }
}

double attn_grad_scores(float* G, const float* P, const float* E, int64_t rb, int64_t N, int64_t i0,
                        const float* keep, float eps, float g, const float* stats, const int64_t* amax,
                        float* colsum) {
  double dsum = 0;
  for (int64_t r = 0; r < rb; ++r) {
    const int64_t i = i0 + r;
    float* gs = G + r * N;
    const float* p = P + r * N;
    const float* e = E + r * N;
    const float di = rm::dot(p, gs, N);
    dsum += di;
    if (keep) {
      const float mean_g = rm::sum(gs, N) / (float)N;
      const float coef = g / stats[2 * r + 1];
      const float wii = coef * e[i] * (gs[i] - di);
      for (int64_t j = 0; j < N; ++j) {
        const float w = coef * e[j] * (gs[j] - di);
        colsum[j] += w;
        gs[j] = w * keep[j];
      }
      colsum[i] -= wii;  // d pi_ii / d keep_i = 0
      gs[i] = wii;       // pi_ii = 1
      gs[amax[r]] -= eps * coef * (di - mean_g);
    } else {
      for (int64_t j = 0; j < N; ++j) gs[j] = g * p[j] * (gs[j] - di);
    }
  }
  return dsum;
}

void softmax_fwd(const float* x, float* y, int64_t rows, int64_t L, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * L;
    float* yr = y + r * L;
    const float m = rm::max(xr, L);
    const float s = rm::exp_sub_sum(xr, m, yr, L);
    if (log) {
      const float c = m + __builtin_logf(s);
      for (int64_t j = 0; j < L; ++j) yr[j] = xr[j] - c;
    } else {
      const float inv = 1.f / s;
      for (int64_t j = 0; j < L; ++j) yr[j] *= inv;
    }
  }
}

void softmax_bwd(const float* y, const float* gy, float* gx, int64_t rows, int64_t L, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * L;
    const float* gr = gy + r * L;
    float* o = gx + r * L;
    // The row sums and the subtraction in double: gx = y (g - Σ y g) cancels where g is close to
    // its y-weighted mean, and a float dot put short rows 1.003e-5 off the float64 reference
    // (softmax [7], seed 222193). Standalone softmax is not on a hot path (attention has its own).
    if (log) {
      // libm exp in double rather than exp_nonpos: y is caller data here and need not be <= 0, and
      // gx = g - exp(y) Σ g cancels where g_j ≈ p_j Σ g (rows of 2: gx_0 = p_1 g_0 - p_0 g_1), where
      // a float exp's rounding came out 3e-5 off the exact gradient of the given y.
      double s = 0.0;
      for (int64_t j = 0; j < L; ++j) s += (double)gr[j];
      for (int64_t j = 0; j < L; ++j) o[j] = (float)((double)gr[j] - __builtin_exp((double)yr[j]) * s);
    } else {
      double d = 0.0;
      for (int64_t j = 0; j < L; ++j) d += (double)yr[j] * (double)gr[j];
      for (int64_t j = 0; j < L; ++j) o[j] = (float)((double)yr[j] * ((double)gr[j] - d));
    }
  }
}

}  // namespace
}  // namespace vitrim::cpu

// Defines `const RowKernels& fn()` returning this TU's table.
#define VITRIM_ROW_KERNELS_TABLE(fn, isa_name)                                                       \
  namespace vitrim::cpu {                                                                          \
  const RowKernels& fn() {                                                                         \
    static constexpr RowKernels k{isa_name, attn_probs_fwd, attn_probs_bwd, attn_grad_scores, softmax_fwd, \
                                  softmax_bwd};                                                   \
    return k;                                                                                      \
  }                                                                                                \
  }
