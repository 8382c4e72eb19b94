// Softmax / log-softmax over the last axis on CUDA: softmax_forward / softmax_backward with the
// names, signatures, checks and maths of native/cpu/softmax.cpp:
//   forward  m = max_j x_j, s = Σ_j exp(x_j - m);  softmax y = exp(x - m) / s;  log y = x - (m + log s)
//   backward softmax gx = y (gy - Σ y gy);  log-softmax gx = gy - exp(y) Σ gy
// dtypes: float32 or bfloat16 (y, gy share one), outputs in that dtype, fp32 arithmetic.
// Rows of L <= 1024: one warp per row, the row in registers (16-byte accesses when every row start
// is 16-byte aligned, checked at run time; scalar otherwise), so x is read once and y written once.
// Longer rows: one 256-thread block per row, passes over the row re-read from L1/L2.
// A NaN in a row makes that row NaN (the max propagates it); a row of all -inf gives NaN, as on the
// CPU and in PyTorch. Grid-stride loops over rows in int64: any number of rows.
#include "rows.cuh"

namespace vitrim::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRowBlock = 256;

template <class T, int V, int IT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    softmax_fwd_warp(const T* __restrict__ x, T* __restrict__ y, int64_t R, int L, bool log) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < R; r += stride) {
    float v[IT * V];
    warp_load_row<T, V, IT>(x + r * L, L, lane, v);
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < IT; ++i)
      if (row_j0(i, lane, V) < L) {
#pragma unroll
        for (int k = 0; k < V; ++k) m = nan_max(m, v[i * V + k]);
      }
    m = warp_nan_max(m);
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < IT; ++i)
      if (row_j0(i, lane, V) < L) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const int e = i * V + k;
          const float ex = expf(v[e] - m);
          s += ex;
          if (!log) v[e] = ex;
        }
      }
    s = warp_sum(s);
    if (log) {
      const float c = m + logf(s);
#pragma unroll
      for (int e = 0; e < IT * V; ++e) v[e] -= c;
    } else {
      const float inv = 1.f / s;
#pragma unroll
      for (int e = 0; e < IT * V; ++e) v[e] *= inv;
    }
    warp_store_row<T, V, IT>(y + r * L, L, lane, v);
  }
}

template <class T>
__global__ void __launch_bounds__(kRowBlock)
    softmax_fwd_block(const T* __restrict__ x, T* __restrict__ y, int64_t R, int64_t L, bool log) {
  __shared__ float sh[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {  // uniform over the block
    const T* xr = x + r * L;
    T* yr = y + r * L;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) m = nan_max(m, to_f(xr[j]));
    m = block_nan_max(m, sh);
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) s += expf(to_f(xr[j]) - m);
    s = block_sum(s, sh);
    if (log) {
      const float c = m + logf(s);
      for (int64_t j = threadIdx.x; j < L; j += blockDim.x) yr[j] = from_f<T>(to_f(xr[j]) - c);
    } else {
      const float inv = 1.f / s;
      for (int64_t j = threadIdx.x; j < L; j += blockDim.x) yr[j] = from_f<T>(expf(to_f(xr[j]) - m) * inv);
    }
  }
}

template <class T, int V, int IT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    softmax_bwd_warp(const T* __restrict__ y, const T* __restrict__ gy, T* __restrict__ gx, int64_t R, int L,
                     bool log) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < R; r += stride) {
    float yv[IT * V], g[IT * V];
    warp_load_row<T, V, IT>(y + r * L, L, lane, yv);
    warp_load_row<T, V, IT>(gy + r * L, L, lane, g);
    // Past-the-row entries are 0 in both arrays, so they add nothing to either sum.
    // The row sum, exp(y) and the subtraction in double, as the CPU (rowkernels_impl.h): y (g - Σ y g)
    // cancels where g is near its y-weighted mean, g - exp(y) Σ g where g_j ≈ p_j Σ g (rows of 2),
    // and expf's ulps (2 here, 1 in glibc) would then differ between the devices.
    double d = 0.0;
    if (log) {
#pragma unroll
      for (int e = 0; e < IT * V; ++e) d += (double)g[e];
    } else {
#pragma unroll
      for (int e = 0; e < IT * V; ++e) d += (double)yv[e] * (double)g[e];
    }
    d = warp_sum(d);
    if (log) {
#pragma unroll
      for (int e = 0; e < IT * V; ++e) g[e] = (float)((double)g[e] - exp((double)yv[e]) * d);
    } else {
#pragma unroll
      for (int e = 0; e < IT * V; ++e) g[e] = (float)((double)yv[e] * ((double)g[e] - d));
    }
    warp_store_row<T, V, IT>(gx + r * L, L, lane, g);
  }
}

template <class T>
__global__ void __launch_bounds__(kRowBlock)
    softmax_bwd_block(const T* __restrict__ y, const T* __restrict__ gy, T* __restrict__ gx, int64_t R, int64_t L,
                      bool log) {
  __shared__ double sh[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T *yr = y + r * L, *gr = gy + r * L;
    T* o = gx + r * L;
    double d = 0.0;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x)
      d += log ? (double)to_f(gr[j]) : (double)to_f(yr[j]) * (double)to_f(gr[j]);
    d = block_sum(d, sh);
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      const double yj = to_f(yr[j]), gj = to_f(gr[j]);
      o[j] = from_f<T>((float)(log ? gj - exp(yj) * d : yj * (gj - d)));
    }
  }
}

// Launches the warp kernel (vectorised when `vec`) or the block kernel for rows of length L.
template <class T, class WarpLaunch, class BlockLaunch>
void launch_rows(int64_t R, int64_t L, bool vec, WarpLaunch&& warp, BlockLaunch&& block) {
  if (L <= kWarpRowMax) {
    const unsigned grid = blocks_for(R, kWarpsPerBlock);
    constexpr int VW = vec_width<T>();
    if (vec) {
      dispatch_it<VW>(accesses_per_lane(L, VW), [&](auto it) {
        warp(std::integral_constant<int, VW>{}, it, grid);
      });
    } else {
      dispatch_it<1>(accesses_per_lane(L, 1), [&](auto it) { warp(std::integral_constant<int, 1>{}, it, grid); });
    }
  } else {
    block(blocks_for(R, 1));
  }
  VITRIM_CUDA_LAUNCHED();
}

}  // namespace

Tensor softmax_forward(const Tensor& x, bool log) {
  check_float_cuda(x, "x");
  VITRIM_CHECK(x.dim() >= 1, Shape, "softmax: x must have at least one dimension, got a scalar");
  const int64_t L = x.size(-1), R = L ? x.numel() / L : 0;
  Tensor y = alloc(x.shape, x.dtype);
  if (R == 0) return y;
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = ptr<T>(x);
    T* yp = ptr<T>(y);
    const bool vec = vec_ok(xp, L, sizeof(T)) && vec_ok(yp, L, sizeof(T));
    launch_rows<T>(
        R, L, vec,
        [&](auto v, auto it, unsigned grid) {
          softmax_fwd_warp<T, decltype(v)::value, decltype(it)::value>
              <<<grid, kWarpsPerBlock * 32, 0, stream()>>>(xp, yp, R, (int)L, log);
        },
        [&](unsigned grid) { softmax_fwd_block<T><<<grid, kRowBlock, 0, stream()>>>(xp, yp, R, L, log); });
  });
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log) {
  check_float_cuda(y, "y");
  check_float_cuda(gy, "gy");
  VITRIM_CHECK(y.dtype == gy.dtype, DType, "softmax_backward: y is ", dtype_name(y.dtype), " but gy is ",
               dtype_name(gy.dtype));
  VITRIM_CHECK(y.dim() >= 1, Shape, "softmax_backward: y must have at least one dimension, got a scalar");
  check_same_shape(y, gy, "y", "gy");
  const int64_t L = y.size(-1), R = L ? y.numel() / L : 0;
  Tensor gx = alloc(y.shape, y.dtype);
  if (R == 0) return gx;
  dispatch_float(y.dtype, "y", [&](auto tag) {
    using T = decltype(tag);
    const T* yp = ptr<T>(y);
    const T* gp = ptr<T>(gy);
    T* op = ptr<T>(gx);
    const bool vec = vec_ok(yp, L, sizeof(T)) && vec_ok(gp, L, sizeof(T)) && vec_ok(op, L, sizeof(T));
    launch_rows<T>(
        R, L, vec,
        [&](auto v, auto it, unsigned grid) {
          softmax_bwd_warp<T, decltype(v)::value, decltype(it)::value>
              <<<grid, kWarpsPerBlock * 32, 0, stream()>>>(yp, gp, op, R, (int)L, log);
        },
        [&](unsigned grid) { softmax_bwd_block<T><<<grid, kRowBlock, 0, stream()>>>(yp, gp, op, R, L, log); });
  });
  return gx;
}

VITRIM_CUDA_OP(softmax_forward);
VITRIM_CUDA_OP(softmax_backward);

}  // namespace vitrim::cuda
