// Random tensors and the Gumbel samplers of the adaptive-ViT policies, on counter-based Philox.
//
// Keying: element i (flat row-major logical index) of a call with (seed, offset) draws from
// philox_*(seed, offset, i) (vitrim/philox.h). Values therefore do not depend on the thread count, on
// chunking, or on the shape the same number of elements is requested in ([n] or [a, b] give the same
// bytes), and the CUDA kernels reproduce them. Callers advance `offset` between calls.
//
// random(shape, dist): uniform on (0,1) (24-bit, never 0 or 1), standard normal (Box-Muller on
// counters 2i and 2i+1), Gumbel(0,1) = -log(-log u), Logistic(0,1) = log u - log(1-u).
//
// gumbel_sigmoid (AdaViT gates): y_soft = σ((z + n)/τ), n ~ Logistic(0,1) (distributed as g1 − g2 of
// two independent Gumbels, drawn from one uniform), or the `noise` tensor when given (same shape as z).
// hard: y = 1[y_soft > θ] with the stored float32 y_soft compared to θ, so y and y_soft never disagree;
// soft: y = y_soft (a separate copy, so the two outputs never alias). Returns {y, y_soft}; y_soft is
// what the backward needs. Backward (straight-through, hard or not): dz = gy · y_soft(1 − y_soft)/τ.
//
// gumbel_softmax (DynamicViT) over the last axis: y_soft = softmax((z + g)/τ), g ~ Gumbel(0,1) or the
// `noise` tensor; hard: y = one-hot(argmax of the stored y_soft), ties to the lowest index (NaN never
// wins; an all-NaN row picks index 0). Backward (straight-through through the softmax):
// dz = y_soft ⊙ (gy − Σ_j gy_j y_soft_j) / τ.
//
// Arithmetic is double per element (σ, exp, row sums) and rounded once to float32: sampling is never
// the bottleneck, and it makes the explicit-noise path match a float64 reference to ~1e-7.
// Checks: τ > 0 and finite; θ in (0, 1) (checked even when hard = false, so a bad configuration
// fails on the first call rather than when hard is switched on).
#include <algorithm>
#include <cmath>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"
#include "vitrim/philox.h"

namespace vitrim::cpu {
namespace {

constexpr int64_t kGrain = 4096;

void check_tau(double tau, const char* op) {
  VITRIM_CHECK(std::isfinite(tau) && tau > 0.0, Argument, op, ": tau must be a finite number > 0, got ", tau);
}

void check_noise(const std::optional<Tensor>& noise, const Tensor& logits) {
  if (!noise) return;
  check_f32_cpu(*noise, "noise");
  check_same_shape(*noise, logits, "noise", "logits");
}

inline double sigmoid(double t) {
  if (t >= 0) return 1.0 / (1.0 + std::exp(-t));
  double e = std::exp(t);
  return e / (1.0 + e);
}

}  // namespace

Tensor random(const Shape& shape, Dist dist, uint64_t seed, uint64_t offset) {
  VITRIM_CHECK(dist == Dist::Uniform || dist == Dist::Normal || dist == Dist::Gumbel || dist == Dist::Logistic,
               Argument, "random: unknown distribution ", (int)dist);
  Tensor out = empty(shape, DType::F32);
  float* o = out.f32();
  parallel_for(out.numel(), kGrain, [&](int64_t b, int64_t e) {
    switch (dist) {
      case Dist::Uniform:
        for (int64_t i = b; i < e; ++i) o[i] = philox_uniform(seed, offset, (uint64_t)i);
        break;
      case Dist::Normal:
        for (int64_t i = b; i < e; ++i) o[i] = philox_normal(seed, offset, (uint64_t)i);
        break;
      case Dist::Gumbel:
        for (int64_t i = b; i < e; ++i) o[i] = philox_gumbel(seed, offset, (uint64_t)i);
        break;
      case Dist::Logistic:
        for (int64_t i = b; i < e; ++i) o[i] = philox_logistic(seed, offset, (uint64_t)i);
        break;
    }
  });
  return out;
}

std::tuple<Tensor, Tensor> gumbel_sigmoid(const Tensor& logits, double tau, double threshold, bool hard,
                                          const std::optional<Tensor>& noise, uint64_t seed, uint64_t offset) {
  check_f32_cpu(logits, "logits");
  check_tau(tau, "gumbel_sigmoid");
  VITRIM_CHECK(threshold > 0.0 && threshold < 1.0, Argument, "gumbel_sigmoid: threshold must be in (0, 1), got ",
               threshold);
  check_noise(noise, logits);
  Tensor y = empty(logits.shape, DType::F32);
  Tensor ys = empty(logits.shape, DType::F32);
  const float* Z = logits.f32();
  const float* N = noise ? noise->f32() : nullptr;
  float* Y = y.f32();
  float* S = ys.f32();
  const double inv_tau = 1.0 / tau;
  parallel_for(logits.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double n = N ? (double)N[i] : (double)philox_logistic(seed, offset, (uint64_t)i);
      float s = (float)sigmoid(((double)Z[i] + n) * inv_tau);
      S[i] = s;
      Y[i] = hard ? ((double)s > threshold ? 1.0f : 0.0f) : s;
    }
  });
  return {y, ys};
}

Tensor gumbel_sigmoid_backward(const Tensor& y_soft, const Tensor& gy, double tau) {
  check_f32_cpu(y_soft, "y_soft");
  check_f32_cpu(gy, "gy");
  check_same_shape(gy, y_soft, "gy", "y_soft");
  check_tau(tau, "gumbel_sigmoid_backward");
  Tensor gz = empty(y_soft.shape, DType::F32);
  const float* S = y_soft.f32();
  const float* G = gy.f32();
  float* O = gz.f32();
  const double inv_tau = 1.0 / tau;
  parallel_for(y_soft.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double s = S[i];
      O[i] = (float)((double)G[i] * s * (1.0 - s) * inv_tau);
    }
  });
  return gz;
}

std::tuple<Tensor, Tensor> gumbel_softmax(const Tensor& logits, double tau, bool hard,
                                          const std::optional<Tensor>& noise, uint64_t seed, uint64_t offset) {
  check_f32_cpu(logits, "logits");
  VITRIM_CHECK(logits.dim() >= 1, Shape, "gumbel_softmax: logits must have at least one dimension, got a scalar");
  check_tau(tau, "gumbel_softmax");
  check_noise(noise, logits);
  Tensor y = empty(logits.shape, DType::F32);
  Tensor ys = empty(logits.shape, DType::F32);
  const int64_t L = logits.size(-1);
  const int64_t rows = L == 0 ? 0 : logits.numel() / L;
  const float* Z = logits.f32();
  const float* N = noise ? noise->f32() : nullptr;
  float* Y = y.f32();
  float* S = ys.f32();
  const double inv_tau = 1.0 / tau;
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(L, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = r * L;
      const float* z = Z + base;
      float* s = S + base;
      float* yr = Y + base;
      // The Philox noise is drawn once per element and parked in the y row (overwritten below), so
      // the second pass re-forms t_j = (z_j + g_j)/τ in double from the same float g_j.
      const float* g = N ? N + base : yr;
      if (!N)
        for (int64_t j = 0; j < L; ++j) yr[j] = philox_gumbel(seed, offset, (uint64_t)(base + j));
      auto t_of = [&](int64_t j) { return ((double)z[j] + (double)g[j]) * inv_tau; };
      double m = -INFINITY;
      bool nan = false;
      for (int64_t j = 0; j < L; ++j) {
        double t = t_of(j);
        if (std::isnan(t)) nan = true;
        if (t > m) m = t;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < L; ++j) {
        double e = nan ? NAN : std::exp(t_of(j) - m);  // a +inf max gives NaN, as softmax does
        s[j] = (float)e;
        sum += e;
      }
      const double inv = 1.0 / sum;
      for (int64_t j = 0; j < L; ++j) s[j] = (float)((double)s[j] * inv);
      if (hard) {
        int64_t best = 0;
        for (int64_t j = 1; j < L; ++j)
          if (s[j] > s[best] || (std::isnan(s[best]) && !std::isnan(s[j]))) best = j;
        for (int64_t j = 0; j < L; ++j) yr[j] = j == best ? 1.0f : 0.0f;
      } else {
        for (int64_t j = 0; j < L; ++j) yr[j] = s[j];
      }
    }
  });
  return {y, ys};
}

Tensor gumbel_softmax_backward(const Tensor& y_soft, const Tensor& gy, double tau) {
  check_f32_cpu(y_soft, "y_soft");
  check_f32_cpu(gy, "gy");
  check_same_shape(gy, y_soft, "gy", "y_soft");
  VITRIM_CHECK(y_soft.dim() >= 1, Shape, "gumbel_softmax_backward: y_soft must have at least one dimension");
  check_tau(tau, "gumbel_softmax_backward");
  Tensor gz = empty(y_soft.shape, DType::F32);
  const int64_t L = y_soft.size(-1);
  const int64_t rows = L == 0 ? 0 : y_soft.numel() / L;
  const float* S = y_soft.f32();
  const float* G = gy.f32();
  float* O = gz.f32();
  const double inv_tau = 1.0 / tau;
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(L, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* s = S + r * L;
      const float* g = G + r * L;
      float* o = O + r * L;
      double dot = 0.0;
      for (int64_t j = 0; j < L; ++j) dot += (double)g[j] * (double)s[j];
      for (int64_t j = 0; j < L; ++j) o[j] = (float)((double)s[j] * ((double)g[j] - dot) * inv_tau);
    }
  });
  return gz;
}

}  // namespace vitrim::cpu
