// GEMM family on the CPU: sgemm (row-major, optional transposes), batched matmul, linear fwd/bwd.
// This first version is a simple correct loop nest; the packed, cache-blocked, SIMD version replaces
// sgemm's body without changing its signature.
#include <cstring>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

const char* gemm_isa() { return "generic"; }

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  parallel_for(M, 4, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* c = C + m * ldc;
      if (beta == 0.f) std::memset(c, 0, sizeof(float) * N);
      else if (beta != 1.f) for (int64_t n = 0; n < N; ++n) c[n] *= beta;
      for (int64_t k = 0; k < K; ++k) {
        float a = alpha * (transA ? A[k * lda + m] : A[m * lda + k]);
        if (!transB) {
          const float* b = B + k * ldb;
          for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
        } else {
          for (int64_t n = 0; n < N; ++n) c[n] += a * B[n * ldb + k];
        }
      }
    }
  });
}

Tensor matmul(const Tensor& a, const Tensor& b, bool transA, bool transB) {
  check_f32_cpu(a, "a");
  check_f32_cpu(b, "b");
  VITRIM_CHECK(a.dim() >= 2 && b.dim() >= 2, Shape, "matmul: a and b must have at least 2 dimensions, got ",
               shape_str(a.shape), " and ", shape_str(b.shape));
  int64_t M = transA ? a.size(-1) : a.size(-2), K = transA ? a.size(-2) : a.size(-1);
  int64_t Kb = transB ? b.size(-1) : b.size(-2), N = transB ? b.size(-2) : b.size(-1);
  VITRIM_CHECK(K == Kb, Shape, "matmul: inner dimensions differ: a ", shape_str(a.shape), (transA ? " (transposed)" : ""),
               " and b ", shape_str(b.shape), (transB ? " (transposed)" : ""));
  Shape batch(a.shape.begin(), a.shape.end() - 2);
  bool shared_b = b.dim() == 2;
  if (!shared_b) {
    Shape bb(b.shape.begin(), b.shape.end() - 2);
    VITRIM_CHECK(bb == batch, Shape, "matmul: batch dimensions differ: ", shape_str(a.shape), " and ", shape_str(b.shape));
  }
  int64_t nb = shape_numel(batch);
  Shape os = batch;
  os.push_back(M);
  os.push_back(N);
  Tensor c = empty(os, DType::F32);
  int64_t lda = a.size(-1), ldb = b.size(-1);
  for (int64_t i = 0; i < nb; ++i)
    sgemm(transA, transB, M, N, K, 1.f, a.f32() + i * M * K, lda, b.f32() + (shared_b ? 0 : i * K * N), ldb, 0.f,
          c.f32() + i * M * N, N);
  return c;
}

static void check_linear(const Tensor& x, const Tensor& w, const char* op) {
  check_f32_cpu(x, "x");
  check_f32_cpu(w, "weight");
  check_rank(w, 2, "weight");
  VITRIM_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), Shape, op, ": x ", shape_str(x.shape),
               " does not match weight ", shape_str(w.shape), " (last dim of x must equal weight.shape[1])");
}

Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias) {
  check_linear(x, w, "linear");
  int64_t N = w.size(0), K = w.size(1), M = x.numel() / (K ? K : 1);
  if (bias) {
    check_f32_cpu(*bias, "bias");
    check_shape(*bias, {N}, "bias");
  }
  Shape os = x.shape;
  os.back() = N;
  Tensor y = empty(os, DType::F32);
  if (bias) {
    for (int64_t m = 0; m < M; ++m) std::memcpy(y.f32() + m * N, bias->f32(), sizeof(float) * N);
  }
  sgemm(false, true, M, N, K, 1.f, x.f32(), K, w.f32(), K, bias ? 1.f : 0.f, y.f32(), N);
  return y;
}

std::tuple<Tensor, Tensor, std::optional<Tensor>> linear_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                                                  bool need_bias) {
  check_linear(x, w, "linear_backward");
  check_f32_cpu(gy, "gy");
  int64_t N = w.size(0), K = w.size(1), M = x.numel() / (K ? K : 1);
  Shape gs = x.shape;
  gs.back() = N;
  check_shape(gy, gs, "gy");
  Tensor gx = empty(x.shape, DType::F32);
  sgemm(false, false, M, K, N, 1.f, gy.f32(), N, w.f32(), K, 0.f, gx.f32(), K);
  Tensor gw = empty(w.shape, DType::F32);
  sgemm(true, false, N, K, M, 1.f, gy.f32(), N, x.f32(), K, 0.f, gw.f32(), K);
  std::optional<Tensor> gb;
  if (need_bias) {
    gb = zeros({N}, DType::F32);
    float* g = gb->f32();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) g[n] += gy.f32()[m * N + n];
  }
  return {gx, gw, gb};
}

}  // namespace vitrim::cpu
