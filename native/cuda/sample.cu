// Random tensors and the Gumbel samplers on CUDA: the same names, signatures and Philox keying as
// native/cpu/sample.cpp. Element i (flat row-major index) of a call with (seed, offset) draws
// philox_*(seed, offset, i) from vitrim/philox.h, the very functions the CPU calls, so a seed gives the
// same stream on both devices whatever the launch shape.
//
// Arithmetic mirrors the CPU formula for formula: the Philox draws in float32 (philox.h), then
// double per element (σ, exp, row max/sums) rounded once to float32, then to the output dtype.
// Full-precision device math only (no fast-math intrinsics).
//
// Expected agreement with the CPU (for the same seed/offset and the same input values):
//   - uniform: bit-identical (integer Philox, then an exact float conversion and scaling);
//   - normal / Gumbel / logistic: logf, log1pf, cosf on the device are within 1-2 ulp of the host's,
//     so values agree to |gpu - cpu| <= 1e-6 * max(1, |cpu|) (well below that in practice; a value
//     near 0 can differ by more than 1e-6 RELATIVE to itself, e.g. Gumbel at u ~ 1/e);
//   - y_soft (float32): the same double formula on those draws: <= 1e-6 relative, almost always
//     bit-identical; the row sum of gumbel_softmax is a warp tree instead of the CPU's sequential
//     sum (a double rounding difference, invisible after rounding to float32 except at ties);
//   - hard decisions (1[y_soft > θ], argmax): equal, except where a y_soft value lies within an ulp
//     of θ or of the row's runner-up. For bfloat16 inputs the decision is taken on the float32
//     y_soft before it is rounded to bf16, i.e. exactly the value the CPU compares on the same
//     (bf16-representable) inputs; the stored bf16 y_soft may then round onto θ itself.
// Outputs take the logits' dtype (float32 or bfloat16); random() returns float32 as on the CPU.
//
// Kernels: elementwise ones grid-stride over elements; gumbel_softmax and its backward use one warp
// per row of the last axis (lanes stride over the row; double warp reductions), which fits the
// short rows of the policies (DynamicViT: L = 2; class rows of ~1000).
#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "vitrim/philox.h"

namespace vitrim::cuda {
namespace {

void check_tau(double tau, const char* op) {
  VITRIM_CHECK(std::isfinite(tau) && tau > 0.0, Argument, op, ": tau must be a finite number > 0, got ", tau);
}

void check_noise(const std::optional<Tensor>& noise, const Tensor& logits) {
  if (!noise) return;
  check_float_cuda(*noise, "noise");
  VITRIM_CHECK(noise->dtype == logits.dtype, DType, "noise is ", dtype_name(noise->dtype), " but logits is ",
               dtype_name(logits.dtype));
  check_same_shape(*noise, logits, "noise", "logits");
}

void check_pair(const Tensor& y_soft, const Tensor& gy) {
  check_float_cuda(y_soft, "y_soft");
  check_float_cuda(gy, "gy");
  VITRIM_CHECK(gy.dtype == y_soft.dtype, DType, "gy is ", dtype_name(gy.dtype), " but y_soft is ",
               dtype_name(y_soft.dtype));
  check_same_shape(gy, y_soft, "gy", "y_soft");
}

__device__ __forceinline__ double sigmoid_d(double t) {
  if (t >= 0) return 1.0 / (1.0 + exp(-t));
  const double e = exp(t);
  return e / (1.0 + e);
}

template <int D>
__device__ __forceinline__ float draw(uint64_t seed, uint64_t offset, uint64_t i) {
  if constexpr (D == (int)cpu::Dist::Normal) return philox_normal(seed, offset, i);
  else if constexpr (D == (int)cpu::Dist::Gumbel) return philox_gumbel(seed, offset, i);
  else if constexpr (D == (int)cpu::Dist::Logistic) return philox_logistic(seed, offset, i);
  else return philox_uniform(seed, offset, i);
}

template <int D>
__global__ void random_kernel(float* __restrict__ out, int64_t n, uint64_t seed, uint64_t offset) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = draw<D>(seed, offset, (uint64_t)i);
}

template <class T>
__global__ void gumbel_sigmoid_kernel(const T* __restrict__ z, const T* __restrict__ noise, T* __restrict__ y,
                                      T* __restrict__ ys, int64_t n, double inv_tau, double threshold, bool hard,
                                      uint64_t seed, uint64_t offset) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const double nz = noise ? (double)to_f(noise[i]) : (double)philox_logistic(seed, offset, (uint64_t)i);
    const float s = (float)sigmoid_d(((double)to_f(z[i]) + nz) * inv_tau);
    st(ys, i, s);
    st(y, i, hard ? ((double)s > threshold ? 1.0f : 0.0f) : s);
  }
}

template <class T>
__global__ void gumbel_sigmoid_backward_kernel(const T* __restrict__ ys, const T* __restrict__ gy, T* __restrict__ gz,
                                               int64_t n, double inv_tau) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const double s = (double)to_f(ys[i]);
    st(gz, i, (float)((double)to_f(gy[i]) * s * (1.0 - s) * inv_tau));
  }
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_max(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The CPU's argmax order: a non-NaN value beats NaN; larger beats smaller; on equal values (or both
// NaN) the lower index wins. (So an all-NaN row picks index 0.)
__device__ __forceinline__ bool better(float av, int64_t ai, float bv, int64_t bi) {
  const bool an = isnan(av), bn = isnan(bv);
  if (an != bn) return bn;
  if (!an && av != bv) return av > bv;
  return ai < bi;
}

// One warp per row r of [rows, L] (grid-stride; loop bounds uniform across the warp).
template <class T>
__global__ void gumbel_softmax_kernel(const T* __restrict__ Z, const T* __restrict__ N, T* __restrict__ Y,
                                      T* __restrict__ S, int64_t rows, int64_t L, double inv_tau, bool hard,
                                      uint64_t seed, uint64_t offset) {
  const int lane = (int)(threadIdx.x & 31u);
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nwarps) {
    const int64_t base = r * L;
    // t_j = (z_j + g_j) / τ in double from the float32 noise g_j (redrawn per pass: Philox is a pure
    // function of the index, so every pass sees the same g_j).
    auto t_of = [&](int64_t j) {
      const double g = N ? (double)to_f(N[base + j]) : (double)philox_gumbel(seed, offset, (uint64_t)(base + j));
      return ((double)to_f(Z[base + j]) + g) * inv_tau;
    };
    double m = -INFINITY;
    bool nan = false;
    for (int64_t j = lane; j < L; j += 32) {
      const double t = t_of(j);
      if (isnan(t)) nan = true;
      if (t > m) m = t;
    }
    m = warp_max(m);  // never NaN: NaN t never entered m
    nan = __any_sync(0xffffffffu, nan);
    double sum = 0.0;
    for (int64_t j = lane; j < L; j += 32) sum += nan ? (double)NAN : exp(t_of(j) - m);
    sum = warp_sum(sum);
    const double inv = 1.0 / sum;
    float bv = NAN;
    int64_t bi = INT64_MAX;
    for (int64_t j = lane; j < L; j += 32) {
      const double e = nan ? (double)NAN : exp(t_of(j) - m);  // a +inf max gives NaN, as on the CPU
      const float s = (float)((double)(float)e * inv);         // the CPU rounds e, then scales
      st(S, base + j, s);
      if (!hard) st(Y, base + j, s);
      else if (better(s, j, bv, bi)) {
        bv = s;
        bi = j;
      }
    }
    if (hard) {  // uniform across the warp
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) {
          bv = ov;
          bi = oi;
        }
      }
      for (int64_t j = lane; j < L; j += 32) st(Y, base + j, j == bi ? 1.0f : 0.0f);
    }
  }
}

template <class T>
__global__ void gumbel_softmax_backward_kernel(const T* __restrict__ S, const T* __restrict__ G, T* __restrict__ O,
                                               int64_t rows, int64_t L, double inv_tau) {
  const int lane = (int)(threadIdx.x & 31u);
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nwarps) {
    const int64_t base = r * L;
    double dot = 0.0;
    for (int64_t j = lane; j < L; j += 32) dot += (double)to_f(G[base + j]) * (double)to_f(S[base + j]);
    dot = warp_sum(dot);
    for (int64_t j = lane; j < L; j += 32) {
      const double s = (double)to_f(S[base + j]);
      st(O, base + j, (float)(s * ((double)to_f(G[base + j]) - dot) * inv_tau));
    }
  }
}

}  // namespace

Tensor random(const Shape& shape, cpu::Dist dist, uint64_t seed, uint64_t offset) {
  VITRIM_CHECK(dist == cpu::Dist::Uniform || dist == cpu::Dist::Normal || dist == cpu::Dist::Gumbel ||
                   dist == cpu::Dist::Logistic,
               Argument, "random: unknown distribution ", (int)dist);
  Tensor out = alloc(shape, DType::F32);
  const int64_t n = out.numel();
  if (n == 0) return out;
  const unsigned grid = grid_for(n, 256);
  float* o = ptr<float>(out);
  switch (dist) {
    case cpu::Dist::Uniform: random_kernel<(int)cpu::Dist::Uniform><<<grid, 256, 0, stream()>>>(o, n, seed, offset); break;
    case cpu::Dist::Normal: random_kernel<(int)cpu::Dist::Normal><<<grid, 256, 0, stream()>>>(o, n, seed, offset); break;
    case cpu::Dist::Gumbel: random_kernel<(int)cpu::Dist::Gumbel><<<grid, 256, 0, stream()>>>(o, n, seed, offset); break;
    case cpu::Dist::Logistic:
      random_kernel<(int)cpu::Dist::Logistic><<<grid, 256, 0, stream()>>>(o, n, seed, offset);
      break;
  }
  VITRIM_CUDA_LAUNCHED();
  return out;
}

std::tuple<Tensor, Tensor> gumbel_sigmoid(const Tensor& logits, double tau, double threshold, bool hard,
                                          const std::optional<Tensor>& noise, uint64_t seed, uint64_t offset) {
  check_float_cuda(logits, "logits");
  check_tau(tau, "gumbel_sigmoid");
  VITRIM_CHECK(threshold > 0.0 && threshold < 1.0, Argument, "gumbel_sigmoid: threshold must be in (0, 1), got ",
               threshold);
  check_noise(noise, logits);
  Tensor y = alloc(logits.shape, logits.dtype);
  Tensor ys = alloc(logits.shape, logits.dtype);
  const int64_t n = logits.numel();
  if (n == 0) return {y, ys};
  dispatch_float(logits.dtype, "logits", [&](auto tag) {
    using T = decltype(tag);
    gumbel_sigmoid_kernel<T><<<grid_for(n, 256), 256, 0, stream()>>>(ptr<T>(logits), noise ? ptr<T>(*noise) : nullptr,
                                                                      ptr<T>(y), ptr<T>(ys), n, 1.0 / tau, threshold,
                                                                      hard, seed, offset);
    VITRIM_CUDA_LAUNCHED();
  });
  return {y, ys};
}

Tensor gumbel_sigmoid_backward(const Tensor& y_soft, const Tensor& gy, double tau) {
  check_pair(y_soft, gy);
  check_tau(tau, "gumbel_sigmoid_backward");
  Tensor gz = alloc(y_soft.shape, y_soft.dtype);
  const int64_t n = y_soft.numel();
  if (n == 0) return gz;
  dispatch_float(y_soft.dtype, "y_soft", [&](auto tag) {
    using T = decltype(tag);
    gumbel_sigmoid_backward_kernel<T><<<grid_for(n, 256), 256, 0, stream()>>>(ptr<T>(y_soft), ptr<T>(gy), ptr<T>(gz),
                                                                               n, 1.0 / tau);
    VITRIM_CUDA_LAUNCHED();
  });
  return gz;
}

std::tuple<Tensor, Tensor> gumbel_softmax(const Tensor& logits, double tau, bool hard,
                                          const std::optional<Tensor>& noise, uint64_t seed, uint64_t offset) {
  check_float_cuda(logits, "logits");
  VITRIM_CHECK(logits.dim() >= 1, Shape, "gumbel_softmax: logits must have at least one dimension, got a scalar");
  check_tau(tau, "gumbel_softmax");
  check_noise(noise, logits);
  Tensor y = alloc(logits.shape, logits.dtype);
  Tensor ys = alloc(logits.shape, logits.dtype);
  const int64_t L = logits.size(-1);
  const int64_t rows = L == 0 ? 0 : logits.numel() / L;
  if (rows == 0) return {y, ys};
  dispatch_float(logits.dtype, "logits", [&](auto tag) {
    using T = decltype(tag);
    gumbel_softmax_kernel<T><<<grid_for(rows * 32, 256), 256, 0, stream()>>>(
        ptr<T>(logits), noise ? ptr<T>(*noise) : nullptr, ptr<T>(y), ptr<T>(ys), rows, L, 1.0 / tau, hard, seed,
        offset);
    VITRIM_CUDA_LAUNCHED();
  });
  return {y, ys};
}

Tensor gumbel_softmax_backward(const Tensor& y_soft, const Tensor& gy, double tau) {
  check_pair(y_soft, gy);
  VITRIM_CHECK(y_soft.dim() >= 1, Shape, "gumbel_softmax_backward: y_soft must have at least one dimension");
  check_tau(tau, "gumbel_softmax_backward");
  Tensor gz = alloc(y_soft.shape, y_soft.dtype);
  const int64_t L = y_soft.size(-1);
  const int64_t rows = L == 0 ? 0 : y_soft.numel() / L;
  if (rows == 0) return gz;
  dispatch_float(y_soft.dtype, "y_soft", [&](auto tag) {
    using T = decltype(tag);
    gumbel_softmax_backward_kernel<T><<<grid_for(rows * 32, 256), 256, 0, stream()>>>(ptr<T>(y_soft), ptr<T>(gy),
                                                                                       ptr<T>(gz), rows, L, 1.0 / tau);
    VITRIM_CUDA_LAUNCHED();
  });
  return gz;
}

VITRIM_CUDA_OP(random);
VITRIM_CUDA_OP(gumbel_sigmoid);
VITRIM_CUDA_OP(gumbel_sigmoid_backward);
VITRIM_CUDA_OP(gumbel_softmax);
VITRIM_CUDA_OP(gumbel_softmax_backward);

}  // namespace vitrim::cuda
