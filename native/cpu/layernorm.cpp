// LayerNorm over the last axis of x [..., L] (R = numel / L rows), as torch.nn.functional.layer_norm:
//   mean = Σ x / L, var = Σ (x - mean)^2 / L (biased), rstd = 1 / sqrt(var + eps),
//   xhat = (x - mean) rstd, y = xhat * w + b (w, b of shape [L], optional: no affine when absent).
// Two-pass statistics accumulated in double, so rows with a large common offset or constant rows
// (var = 0 -> xhat = 0, rstd = eps^-1/2) stay accurate; eps >= 0 is a parameter (timm ViT 1e-6,
// DynamicViT's predictor 1e-5). Saved for backward: mean [R] and rstd [R] (float32); x is re-read,
// and the backward recomputes the row mean from it in double (the float32 mean's rounding is
// amplified on rows whose spread is small against their mean; see layernorm_backward).
// Backward, with g = gy * w (or gy):
//   gx = rstd (g - mean_L(g) - xhat mean_L(g xhat)),  gw = Σ_rows gy xhat,  gb = Σ_rows gy.
// gw/gb are reduced over a fixed number of row groups (independent of the thread count, so the
// result is deterministic) with double partials. Deviation from torch: a bias without a weight is
// rejected, because the backward contract returns gb only when w is given.
// out_dtype bfloat16 rounds the float32 y once (the CPU computes in float32; the option exists so
// that CPU and CUDA share the op's contract).
#include <algorithm>
#include <cmath>
#include <vector>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

struct LnDims {
  int64_t R, L;
};

LnDims ln_dims(const Tensor& x, const char* op) {
  check_f32_cpu(x, "x");
  VITRIM_CHECK(x.dim() >= 1, Shape, op, ": x must have at least one dimension, got a scalar");
  int64_t L = x.size(-1);
  VITRIM_CHECK(L > 0, Shape, op, ": the normalised (last) dimension of x must be non-empty, got ", shape_str(x.shape));
  return {x.numel() / L, L};
}

void check_affine(const std::optional<Tensor>& t, int64_t L, const char* what) {
  if (!t) return;
  check_f32_cpu(*t, what);
  check_shape(*t, {L}, what);
}

// Σ a_j (b == nullptr) or Σ a_j b_j in double, with 4 partial sums so that it vectorises.
template <class T>
inline double sum_d(const T* a, const T* b, int64_t L) {
  double acc[4] = {0, 0, 0, 0};
  int64_t j = 0;
  if (b) {
    for (; j + 4 <= L; j += 4)
      for (int k = 0; k < 4; ++k) acc[k] += (double)a[j + k] * (double)b[j + k];
  } else {
    for (; j + 4 <= L; j += 4)
      for (int k = 0; k < 4; ++k) acc[k] += (double)a[j + k];
  }
  double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; j < L; ++j) s += b ? (double)a[j] * (double)b[j] : (double)a[j];
  return s;
}

// mean and rstd of one row in double (two passes). 16 partial sums in a fixed order: they vectorise
// as two 8-double chains with AVX-512 (or 4 x 4, 8 x 2 on narrower ISAs), with the same result.
__attribute__((always_inline)) inline void row_stats(const float* x, int64_t L, double eps, double& mean,
                                                   double& rstd) {
  constexpr int P = 16;
  double a[P] = {};
  int64_t j = 0;
  for (; j + P <= L; j += P)
    for (int k = 0; k < P; ++k) a[k] += (double)x[j + k];
  double s = 0;
  for (int k = 0; k < P; ++k) s += a[k];
  for (; j < L; ++j) s += (double)x[j];
  mean = s / (double)L;
  double v[P] = {};
  j = 0;
  for (; j + P <= L; j += P)
    for (int k = 0; k < P; ++k) {
      double d = (double)x[j + k] - mean;
      v[k] += d * d;
    }
  double var = 0;
  for (int k = 0; k < P; ++k) var += v[k];
  for (; j < L; ++j) {
    double d = (double)x[j] - mean;
    var += d * d;
  }
  var /= (double)L;
  rstd = 1.0 / std::sqrt(var + eps);
}

// The forward rows, compiled for baseline x86-64, x86-64-v3 and x86-64-v4 (picked at load time by
// GCC's target_clones resolver): the double-precision statistics and the normalisation vectorise
// 2 doubles wide on the baseline and 8 wide with AVX-512 (row_stats must be inlined for that: called
// out of line it is the baseline copy). Measured on one Zen 4 core: [197, 192] 0.03 -> 0.015 ms,
// [1576, 192] 0.25 -> 0.17 ms (bench/infer_tune.cpp). Same operations in the same order on every
// clone, except FMA contraction.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VITRIM_LN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VITRIM_LN_CLONES
#endif

VITRIM_LN_CLONES void ln_rows(const float* xp, const float* wp, const float* bp, float* yp, float* mp, float* rp,
                              int64_t r0, int64_t r1, int64_t L, double eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = xp + r * L;
    float* yr = yp + r * L;
    double mu, rs;
    row_stats(xr, L, eps, mu, rs);
    mp[r] = (float)mu;
    rp[r] = (float)rs;
    if (wp && bp) {
      for (int64_t j = 0; j < L; ++j) yr[j] = (float)(((double)xr[j] - mu) * rs) * wp[j] + bp[j];
    } else if (wp) {
      for (int64_t j = 0; j < L; ++j) yr[j] = (float)(((double)xr[j] - mu) * rs) * wp[j];
    } else {
      for (int64_t j = 0; j < L; ++j) yr[j] = (float)(((double)xr[j] - mu) * rs);
    }
  }
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> layernorm_forward(const Tensor& x, const std::optional<Tensor>& w,
                                                     const std::optional<Tensor>& b, double eps,
                                                     std::optional<DType> out_dtype) {
  auto [R, L] = ln_dims(x, "layernorm");
  check_affine(w, L, "weight");
  check_affine(b, L, "bias");
  VITRIM_CHECK(!b || w, Argument, "layernorm: a bias needs a weight (pass both or neither)");
  VITRIM_CHECK(std::isfinite(eps) && eps >= 0, Argument, "layernorm: eps must be finite and >= 0, got ", eps);
  VITRIM_CHECK(!out_dtype || *out_dtype == DType::F32 || *out_dtype == DType::BF16, DType,
               "layernorm: the output dtype must be float32 or bfloat16, got ", dtype_name(*out_dtype));
  Tensor y = empty(x.shape, DType::F32), mean = empty({R}, DType::F32), rstd = empty({R}, DType::F32);
  const float* xp = x.f32();
  const float* wp = w ? w->f32() : nullptr;
  const float* bp = b ? b->f32() : nullptr;
  float *yp = y.f32(), *mp = mean.f32(), *rp = rstd.f32();
  parallel_for(R, std::max<int64_t>(1, 16384 / L),
               [&](int64_t r0, int64_t r1) { ln_rows(xp, wp, bp, yp, mp, rp, r0, r1, L, eps); });
  if (out_dtype && *out_dtype != DType::F32) y = cast(y, *out_dtype);
  return {y, mean, rstd};
}

std::tuple<Tensor, std::optional<Tensor>, std::optional<Tensor>> layernorm_backward(
    const Tensor& gy, const Tensor& x, const std::optional<Tensor>& w, const Tensor& mean, const Tensor& rstd) {
  auto [R, L] = ln_dims(x, "layernorm_backward");
  check_f32_cpu(gy, "gy");
  check_same_shape(gy, x, "gy", "x");
  check_affine(w, L, "weight");
  check_f32_cpu(mean, "mean");
  check_f32_cpu(rstd, "rstd");
  check_shape(mean, {R}, "mean");
  check_shape(rstd, {R}, "rstd");

  Tensor gx = empty(x.shape, DType::F32);
  const int64_t groups = std::min<int64_t>(64, (R + 31) / 32);
  const int64_t per = groups ? (R + groups - 1) / groups : 0;
  std::vector<double> part_w, part_b;  // [groups, L] each
  if (w) {
    part_w.assign((size_t)(groups * L), 0.0);
    part_b.assign((size_t)(groups * L), 0.0);
  }
  const float *xp = x.f32(), *gp = gy.f32(), *wp = w ? w->f32() : nullptr, *rp = rstd.f32();
  float* op = gx.f32();
  parallel_for(groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<double> xh((size_t)L), gh((size_t)L);
    for (int64_t g = g0; g < g1; ++g) {
      double* pw = wp ? part_w.data() + g * L : nullptr;
      double* pb = wp ? part_b.data() + g * L : nullptr;
      for (int64_t r = g * per, re = std::min(R, (g + 1) * per); r < re; ++r) {
        const float *xr = xp + r * L, *gr = gp + r * L;
        // The mean is recomputed in double rather than read back from the float32 one the forward
        // saved: for a row whose spread is small against its mean, the saved mean's rounding
        // (6e-8 |mean|) shifts xhat by 6e-8 |mean| / std, which the projection below passes
        // straight into gx ([197, 3] rows of x ~ N(0, 4) came out 1.4e-5 off at seed 974524).
        // The saved mean is still required and shape-checked, as torch's backward takes it.
        const double mu = sum_d<float>(xr, nullptr, L) / (double)L, rsd = rp[r];
        for (int64_t j = 0; j < L; ++j) xh[j] = ((double)xr[j] - mu) * rsd;
        if (wp) {
          for (int64_t j = 0; j < L; ++j) gh[j] = (double)gr[j] * (double)wp[j];
        } else {
          for (int64_t j = 0; j < L; ++j) gh[j] = gr[j];
        }
        const double a = sum_d<double>(gh.data(), nullptr, L) / (double)L;
        const double c = sum_d(gh.data(), xh.data(), L) / (double)L;
        float* o = op + r * L;
        // gx = rstd (g - a - xhat c) cancels heavily on short rows (for L = 3 it lies in a 1-d
        // subspace), so the whole row is formed in double and rounded once.
        for (int64_t j = 0; j < L; ++j) o[j] = (float)(rsd * (gh[j] - a - xh[j] * c));
        if (pw) {
          for (int64_t j = 0; j < L; ++j) {
            pw[j] += (double)gr[j] * xh[j];
            pb[j] += (double)gr[j];
          }
        }
      }
    }
  });

  std::optional<Tensor> gw, gb;
  if (w) {
    gw = empty({L}, DType::F32);
    gb = empty({L}, DType::F32);
    float *gwp = gw->f32(), *gbp = gb->f32();
    for (int64_t j = 0; j < L; ++j) {
      double sw = 0, sb = 0;
      for (int64_t g = 0; g < groups; ++g) {
        sw += part_w[g * L + j];
        sb += part_b[g * L + j];
      }
      gwp[j] = (float)sw;
      gbp[j] = (float)sb;
    }
  }
  return {gx, gw, gb};
}

}  // namespace vitrim::cpu
