// Softmax / log-softmax over the last axis of a contiguous float32 tensor [..., L].
// Forward (numerically stable): m = max_j x_j, e_j = exp(x_j - m), s = Σ e_j;
//   softmax y_j = e_j / s;  log-softmax y_j = x_j - m - log s.
// Backward from the forward output y only (nothing else is saved):
//   softmax     gx_j = y_j (gy_j - Σ_k y_k gy_k)
//   log-softmax gx_j = gy_j - exp(y_j) Σ_k gy_k
// Threaded over rows. A row of all -inf gives NaN (as PyTorch does). Rank-0 tensors are rejected
// (there is no last axis); rows of length 0 give an empty result.
#include <cmath>

#include "rowmath.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace rm = rowmath;

static int64_t row_grain(int64_t L) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(L, 1)); }

Tensor softmax_forward(const Tensor& x, bool log) {
  check_f32_cpu(x, "x");
  VITRIM_CHECK(x.dim() >= 1, Shape, "softmax: x must have at least one dimension, got a scalar");
  int64_t L = x.size(-1), R = L ? x.numel() / L : 0;
  Tensor y = empty(x.shape, DType::F32);
  const float* xp = x.f32();
  float* yp = y.f32();
  parallel_for(R, row_grain(L), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * L;
      float* yr = yp + r * L;
      float m = rm::max(xr, L);
      float s = rm::exp_sub_sum(xr, m, yr, L);
      if (log) {
        float c = m + std::log(s);
        for (int64_t j = 0; j < L; ++j) yr[j] = xr[j] - c;
      } else {
        float inv = 1.f / s;
        for (int64_t j = 0; j < L; ++j) yr[j] *= inv;
      }
    }
  });
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log) {
  check_f32_cpu(y, "y");
  check_f32_cpu(gy, "gy");
  VITRIM_CHECK(y.dim() >= 1, Shape, "softmax_backward: y must have at least one dimension, got a scalar");
  check_same_shape(y, gy, "y", "gy");
  int64_t L = y.size(-1), R = L ? y.numel() / L : 0;
  Tensor gx = empty(y.shape, DType::F32);
  const float* yp = y.f32();
  const float* gp = gy.f32();
  float* op = gx.f32();
  parallel_for(R, row_grain(L), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* yr = yp + r * L;
      const float* gr = gp + r * L;
      float* o = op + r * L;
      if (log) {
        // libm exp rather than exp_nonpos: y is caller data here and need not be <= 0.
        float s = rm::sum(gr, L);
        for (int64_t j = 0; j < L; ++j) o[j] = gr[j] - std::exp(yr[j]) * s;
      } else {
        float d = rm::dot(yr, gr, L);
        for (int64_t j = 0; j < L; ++j) o[j] = yr[j] * (gr[j] - d);
      }
    }
  });
  return gx;
}

}  // namespace vitrim::cpu
