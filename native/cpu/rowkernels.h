// Row kernels of the softmax family: the per-row work of attention (scores -> probabilities and
// back) and of softmax / log-softmax. The bodies live in rowkernels_impl.h and are compiled three
// times: for the baseline ISA (rowkernels.cpp, portable), with AVX2+FMA (rowkernels_avx2.cpp) and
// with AVX-512 (rowkernels_avx512.cpp), so GCC's auto-vectoriser uses 4-, 8- or 16-wide vectors.
// row_kernels() picks one on first use by CPUID (cpu_isa(), which VITRIM_ISA=generic|avx2 lowers).
// Results differ between ISAs only by rounding (FMA contraction), never in semantics.
#pragma once
#include <cstdint>

namespace vitrim::cpu {

struct RowKernels {
  const char* isa;
  // Attention forward, rows i0 .. i0+rb of one (b, h): S [rb, N] holds scale*q.k and becomes the
  // probabilities P in place; stats receives (row max m, denominator) per row (2 floats each).
  // keep (length N, or null for plain softmax) and eps as in ops.h.
  void (*attn_probs_fwd)(float* S, int64_t rb, int64_t N, int64_t i0, const float* keep, float eps, float* stats);
  // Attention backward, same rows: E [rb, N] holds the recomputed scores and becomes e = exp(s - m)
  // with the saved m; P [rb, N] receives the probabilities from the saved denominators; with keep,
  // amax[r] receives the first argmax of row r's scores.
  void (*attn_probs_bwd)(float* E, float* P, int64_t rb, int64_t N, int64_t i0, const float* keep, float eps,
                         const float* stats, int64_t* amax);
  // Attention backward: G [rb, N] holds go.v^T (ungated) and becomes the score gradient gs
  // (without the factor scale); with keep, colsum[j] += Σ_{i != j} W_ij. Returns Σ_r D_r (the
  // head-gate gradient contribution of these rows). g is the head's gate.
  double (*attn_grad_scores)(float* G, const float* P, const float* E, int64_t rb, int64_t N, int64_t i0,
                             const float* keep, float eps, float g, const float* stats, const int64_t* amax,
                             float* colsum);
  // Softmax / log-softmax forward and backward over `rows` contiguous rows of length L.
  void (*softmax_fwd)(const float* x, float* y, int64_t rows, int64_t L, bool log);
  void (*softmax_bwd)(const float* y, const float* gy, float* gx, int64_t rows, int64_t L, bool log);
};

const RowKernels& row_kernels();
const RowKernels& row_kernels_generic();
#if defined(__x86_64__) || defined(_M_X64)
const RowKernels& row_kernels_avx2();
const RowKernels& row_kernels_avx512();
#endif

}  // namespace vitrim::cpu
