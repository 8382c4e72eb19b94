// LayerNorm over the last axis on CUDA: layernorm_forward / layernorm_backward with the names,
// signatures, checks and maths of native/cpu/layernorm.cpp (see there for the formulas).
//
// dtypes: x, weight, bias and gy share one dtype (float32 or bfloat16); gx, gw, gb take it; y takes
// out_dtype (x's by default): the forward kernels are templated on x's type T and y's type TY,
// and y is the float result rounded once, so a bfloat16 y from float32 x has the bits of the float32
// y cast to bfloat16 (autocast's LayerNorm -> bf16 GEMM, without the cast pass: at (256*197, 384)
// the float32 y's 77 MB write and re-read fewer per LayerNorm, and one launch). mean and rstd are
// float32 [rows]. Row statistics and the backward's gx row are in double (as on
// the CPU: short rows cancel heavily); the rest is fp32.
//
// Forward, L <= 1024 (every ViT width): one warp per row, the row held in registers as loaded (at
// most 32 elements per lane; bf16 stays packed, widened at each read), two-pass statistics (mean,
// then Σ (x - mean)^2 over the held values: no E[x²] - E[x]² cancellation), then y written from
// the registers: x is read once and y written once. Accesses are 16 bytes (4 floats / 8 bf16)
// when every row start of x, y, weight and bias is 16-byte aligned (base pointer % 16 == 0 and
// L * elem_size % 16 == 0, checked at run time), scalar (still coalesced) otherwise. L > 1024:
// one 256-thread block per row, three passes over the row (sum, squared deviations, write), the
// re-reads served by L1/L2.
// Backward: gx per row with the same warp-per-row (or block-per-row) structure, holding x and gy
// in registers (the row mean recomputed in double from x; see ln_bwd_warp). gw = Σ_rows gy·xhat
// and gb = Σ_rows gy are column sums done by a second
// kernel: blocks of 32 columns x 8 row lanes over a fixed split of the rows into chunks write fp32
// partials [chunks, L], then a finishing kernel sums the chunks in a fixed order. No atomics: the
// result is deterministic (it depends only on the shape and the GPU's SM count). The column sums'
// xhat takes the gx kernel's double row mean, handed over as a float pair (hi, lo) [R] rather than
// the saved float32 mean (see split_mean), which stays required and checked, as torch takes it.
// Rows are walked with grid-stride loops in int64, so any number of rows works (no grid limit).
#include <algorithm>
#include <cmath>

#include "rows.cuh"

namespace vitrim::cuda {

namespace {

struct LnDims {
  int64_t R, L;
};

LnDims ln_dims(const Tensor& x, const char* op) {
  check_float_cuda(x, "x");
  VITRIM_CHECK(x.dim() >= 1, Shape, op, ": x must have at least one dimension, got a scalar");
  const int64_t L = x.size(-1);
  VITRIM_CHECK(L > 0, Shape, op, ": the normalised (last) dimension of x must be non-empty, got ", shape_str(x.shape));
  return {x.numel() / L, L};
}

void check_affine(const std::optional<Tensor>& t, const Tensor& x, int64_t L, const char* what, const char* op) {
  if (!t) return;
  check_float_cuda(*t, what);
  VITRIM_CHECK(t->dtype == x.dtype, DType, op, ": ", what, " is ", dtype_name(t->dtype), " but x is ",
               dtype_name(x.dtype));
  check_shape(*t, {L}, what);
}

constexpr int kWarpsPerBlock = 8;  // warp-per-row kernels: 256 threads, 8 rows at a time
constexpr int kRowBlock = 256;     // block-per-row kernels

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------
// Blocks per SM asked of ptxas for the warp forward: 4 (64 registers, 32 of 64 warps resident)
// where a lane holds at most 16 elements in 16-byte accesses (every DeiT-S / ViT-S shape: 384
// wide, bf16 or float32), which ptxas (sm_90) meets without spilling; the compiler's own choice
// for longer rows and scalar accesses, which would spill. Holding floats and widening w / b on
// load, the bf16 kernel took 89 registers (16 warps / SM), the float32 one 80 (24).
template <int IT, int V>
constexpr int ln_fwd_min_blocks() {
  return V > 1 && IT * V <= 16 ? 4 : 1;
}

template <class T, class TY, int V, int IT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, ln_fwd_min_blocks<IT, V>())
    ln_fwd_warp(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, TY* __restrict__ y,
                float* __restrict__ mean, float* __restrict__ rstd, int64_t R, int L, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < R; r += stride) {
    // The row stays packed as loaded (bf16: half the registers of floats) and is widened at each of
    // its three reads; so are weight and bias. Same operations in the same order as with floats.
    Packed<T, V> xv[IT];
    warp_load_packed<T, V, IT>(x + r * L, L, lane, xv);
    // Statistics in double, as the CPU computes them (two passes, then rounded to float): the saved
    // mean / rstd then agree with the CPU's to the last bit or so, which the backward of short rows
    // needs (with C = 3, gx is a projection that amplifies a 1-ulp difference of rstd ~100x).
    // The element values are still read once and held in registers; the extra double adds are
    // free in this memory-bound kernel.
    double s = 0.0;
#pragma unroll
    for (int i = 0; i < IT; ++i)
#pragma unroll
      for (int k = 0; k < V; ++k) s += (double)unpack<T, V>(xv[i], k);  // entries past the row are 0
    const double mud = warp_sum(s) / (double)L;
    double q = 0.0;
#pragma unroll
    for (int i = 0; i < IT; ++i)
      if (row_j0(i, lane, V) < L) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const double d = (double)unpack<T, V>(xv[i], k) - mud;
          q += d * d;
        }
      }
    const double rsd = 1.0 / sqrt(warp_sum(q) / (double)L + (double)eps);
    if (lane == 0) {
      mean[r] = (float)mud;
      rstd[r] = (float)rsd;
    }
#pragma unroll
    for (int i = 0; i < IT; ++i) {
      const int j0 = row_j0(i, lane, V);
      if (j0 < L) {
        Packed<T, V> wv{}, bv{};
        if (w) wv = load_packed<T, V>(w, j0);
        if (b) bv = load_packed<T, V>(b, j0);
        float o[V];
#pragma unroll
        for (int k = 0; k < V; ++k) {
          float t = (float)(((double)unpack<T, V>(xv[i], k) - mud) * rsd);
          if (w) t *= unpack<T, V>(wv, k);
          if (b) t += unpack<T, V>(bv, k);
          o[k] = t;
        }
        store_access<TY, V>(y + r * L + j0, o);
      }
    }
  }
}

template <class T, class TY>
__global__ void __launch_bounds__(kRowBlock)
    ln_fwd_block(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, TY* __restrict__ y,
                 float* __restrict__ mean, float* __restrict__ rstd, int64_t R, int64_t L, float eps) {
  __shared__ double sh[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {  // uniform over the block: the syncs are safe
    const T* xr = x + r * L;
    double s = 0.0;  // statistics in double, as in ln_fwd_warp and on the CPU
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) s += (double)to_f(xr[j]);
    const double mud = block_sum(s, sh) / (double)L;
    double q = 0.0;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      const double d = (double)to_f(xr[j]) - mud;
      q += d * d;
    }
    const double rsd = 1.0 / sqrt(block_sum(q, sh) / (double)L + (double)eps);
    if (threadIdx.x == 0) {
      mean[r] = (float)mud;
      rstd[r] = (float)rsd;
    }
    TY* yr = y + r * L;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      float t = (float)(((double)to_f(xr[j]) - mud) * rsd);
      if (w) t *= to_f(w[j]);
      if (b) t += to_f(b[j]);
      yr[j] = from_f<TY>(t);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: gx
// ---------------------------------------------------------------------------------------------
// The double row mean as a float pair, hi = mean rounded, lo = the rest (rounded): for the column
// sums, xhat = ((x - hi) - lo) * rstd. Where the row's spread is small against its mean (the
// ill-conditioned rows), x - hi is exact (Sterbenz) and lo restores the double mean's bits, so
// xhat is as the CPU forms it; the saved float32 mean alone was off by up to ulp(mean) / 2, which
// rstd magnifies (a [3, 2] row with rstd 295 put gw 1.3e-5 off the CPU's, found by the fuzzer).
__device__ __forceinline__ float2 split_mean(double m) {
  const float hi = (float)m;
  return make_float2(hi, (float)(m - (double)hi));
}

// The row is formed as the CPU forms it (layernorm_backward in native/cpu/layernorm.cpp): the mean
// is recomputed in double from x (the saved float32 mean's rounding, 6e-8 |mean|, moves xhat by
// 6e-8 |mean| / std on rows of small spread), and xhat, g = gy * w, the two row sums and
// gx = rstd (g - a - xhat c) are all in double, rounded once. gx cancels heavily on short rows
// (for L = 3 it lies in a 1-d subspace), where float arithmetic was 2e-5 off the float64
// reference. The double work is free in these memory-bound kernels; xhat and g * w are recomputed
// in the second pass over the row from the float registers (w re-read from L1) rather than held
// as doubles, which would double the registers per lane.
template <class T, int V, int IT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    ln_bwd_warp(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                const float* __restrict__ rstd, T* __restrict__ gx, float2* __restrict__ mu2, int64_t R, int L) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < R; r += stride) {
    float xv[IT * V], g[IT * V];
    warp_load_row<T, V, IT>(x + r * L, L, lane, xv);
    warp_load_row<T, V, IT>(gy + r * L, L, lane, g);
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < IT * V; ++k) s += (double)xv[k];  // entries past the row are 0
    const double mud = warp_sum(s) / (double)L, rsd = rstd[r];
    if (mu2 && lane == 0) mu2[r] = split_mean(mud);
    // Calls f(e, g * w, xhat), both in double, for every element e of the row this lane holds.
    auto each = [&](auto&& f) {
#pragma unroll
      for (int i = 0; i < IT; ++i) {
        const int j0 = row_j0(i, lane, V);
        if (j0 < L) {
          float wv[V];
          if (w) load_access<T, V>(w, j0, wv);
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const int e = i * V + k;
            f(e, w ? (double)g[e] * (double)wv[k] : (double)g[e], ((double)xv[e] - mud) * rsd);
          }
        }
      }
    };
    double sa = 0.0, sb = 0.0;
    each([&](int, double gd, double xh) {
      sa += gd;
      sb += gd * xh;
    });
    const double a = warp_sum(sa) / (double)L, c = warp_sum(sb) / (double)L;
    each([&](int e, double gd, double xh) { g[e] = (float)(rsd * (gd - a - xh * c)); });
    warp_store_row<T, V, IT>(gx + r * L, L, lane, g);  // past-the-row entries are not stored
  }
}

template <class T>
__global__ void __launch_bounds__(kRowBlock)
    ln_bwd_block(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                 const float* __restrict__ rstd, T* __restrict__ gx, float2* __restrict__ mu2, int64_t R, int64_t L) {
  __shared__ double sh[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T *xr = x + r * L, *gr = gy + r * L;
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) s += (double)to_f(xr[j]);
    const double mud = block_sum(s, sh) / (double)L, rsd = rstd[r];
    if (mu2 && threadIdx.x == 0) mu2[r] = split_mean(mud);
    double sa = 0.0, sb = 0.0;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      const double g = w ? (double)to_f(gr[j]) * (double)to_f(w[j]) : (double)to_f(gr[j]);
      sa += g;
      sb += g * (((double)to_f(xr[j]) - mud) * rsd);
    }
    const double a = block_sum(sa, sh) / (double)L;
    const double c = block_sum(sb, sh) / (double)L;
    T* o = gx + r * L;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      const double g = w ? (double)to_f(gr[j]) * (double)to_f(w[j]) : (double)to_f(gr[j]);
      o[j] = from_f<T>((float)(rsd * (g - a - (((double)to_f(xr[j]) - mud) * rsd) * c)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: gw, gb (column sums, deterministic)
// ---------------------------------------------------------------------------------------------
// Block (32, 8): column n = blockIdx.x * 32 + threadIdx.x, rows of chunk blockIdx.y strided by 8
// over threadIdx.y; a warp reads 32 consecutive columns of one row (coalesced).
template <class T>
__global__ void __launch_bounds__(256)
    ln_colsum(const T* __restrict__ gy, const T* __restrict__ x, const float2* __restrict__ mu2,
              const float* __restrict__ rstd, float* __restrict__ pw, float* __restrict__ pb, int64_t R, int64_t L,
              int64_t rows_per_chunk) {
  __shared__ float sw[8][33], sb[8][33];
  const int64_t n = (int64_t)blockIdx.x * 32 + threadIdx.x;
  const int64_t m0 = (int64_t)blockIdx.y * rows_per_chunk;
  const int64_t m1 = min(R, m0 + rows_per_chunk);
  float aw = 0.f, ab = 0.f;
  if (n < L)
    for (int64_t m = m0 + threadIdx.y; m < m1; m += 8) {
      const float g = to_f(gy[m * L + n]);
      const float2 mu = mu2[m];
      const float xh = ((to_f(x[m * L + n]) - mu.x) - mu.y) * rstd[m];
      aw += g * xh;
      ab += g;
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && n < L) {
    float tw = 0.f, tb = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      tw += sw[k][threadIdx.x];
      tb += sb[k][threadIdx.x];
    }
    pw[(int64_t)blockIdx.y * L + n] = tw;
    pb[(int64_t)blockIdx.y * L + n] = tb;
  }
}

// gw[n] = Σ_c pw[c, n] (same for gb), in a fixed order: block (32, 8), chunks strided by 8 over
// threadIdx.y, then the 8 lanes summed in order.
template <class T>
__global__ void __launch_bounds__(256)
    ln_colsum_finish(const float* __restrict__ pw, const float* __restrict__ pb, T* __restrict__ gw,
                     T* __restrict__ gb, int64_t chunks, int64_t L) {
  __shared__ float sw[8][33], sb[8][33];
  const int64_t n = (int64_t)blockIdx.x * 32 + threadIdx.x;
  float aw = 0.f, ab = 0.f;
  if (n < L)
    for (int64_t c = threadIdx.y; c < chunks; c += 8) {
      aw += pw[c * L + n];
      ab += pb[c * L + n];
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && n < L) {
    float tw = 0.f, tb = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      tw += sw[k][threadIdx.x];
      tb += sb[k][threadIdx.x];
    }
    gw[n] = from_f<T>(tw);
    gb[n] = from_f<T>(tb);
  }
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> layernorm_forward(const Tensor& x, const std::optional<Tensor>& w,
                                                     const std::optional<Tensor>& b, double eps,
                                                     std::optional<DType> out_dtype) {
  const LnDims d = ln_dims(x, "layernorm");
  const int64_t R = d.R, L = d.L;  // plain variables: the lambdas below capture them
  check_affine(w, x, L, "weight", "layernorm");
  check_affine(b, x, L, "bias", "layernorm");
  VITRIM_CHECK(!b || w, Argument, "layernorm: a bias needs a weight (pass both or neither)");
  VITRIM_CHECK(std::isfinite(eps) && eps >= 0, Argument, "layernorm: eps must be finite and >= 0, got ", eps);
  const DType yt = out_dtype.value_or(x.dtype);
  VITRIM_CHECK(yt == DType::F32 || yt == DType::BF16, DType,
               "layernorm: the output dtype must be float32 or bfloat16, got ", dtype_name(yt));
  Tensor y = alloc(x.shape, yt), mean = alloc({R}, DType::F32), rstd = alloc({R}, DType::F32);
  if (R == 0) return {y, mean, rstd};
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    dispatch_float(yt, "y", [&](auto ytag) {
      using TY = decltype(ytag);
      const T* xp = ptr<T>(x);
      const T* wp = w ? ptr<T>(*w) : nullptr;
      const T* bp = b ? ptr<T>(*b) : nullptr;
      TY* yp = ptr<TY>(y);
      float *mp = ptr<float>(mean), *rp = ptr<float>(rstd);
      const float e = (float)eps;
      if (L <= kWarpRowMax) {
        const unsigned grid = blocks_for(R, kWarpsPerBlock);
        constexpr int VW = vec_width<T>();
        const bool vec = vec_ok(xp, L, sizeof(T)) && vec_ok(yp, L, sizeof(TY)) && vec_ok(wp, L, sizeof(T)) &&
                         vec_ok(bp, L, sizeof(T));
        if (vec) {
          dispatch_it<VW>(accesses_per_lane(L, VW), [&](auto it) {
            ln_fwd_warp<T, TY, VW, decltype(it)::value>
                <<<grid, kWarpsPerBlock * 32, 0, stream()>>>(xp, wp, bp, yp, mp, rp, R, (int)L, e);
          });
        } else {
          dispatch_it<1>(accesses_per_lane(L, 1), [&](auto it) {
            ln_fwd_warp<T, TY, 1, decltype(it)::value>
                <<<grid, kWarpsPerBlock * 32, 0, stream()>>>(xp, wp, bp, yp, mp, rp, R, (int)L, e);
          });
        }
      } else {
        ln_fwd_block<T, TY><<<blocks_for(R, 1), kRowBlock, 0, stream()>>>(xp, wp, bp, yp, mp, rp, R, L, e);
      }
      VITRIM_CUDA_LAUNCHED();
    });
  });
  return {y, mean, rstd};
}

std::tuple<Tensor, std::optional<Tensor>, std::optional<Tensor>> layernorm_backward(
    const Tensor& gy, const Tensor& x, const std::optional<Tensor>& w, const Tensor& mean, const Tensor& rstd) {
  const LnDims d = ln_dims(x, "layernorm_backward");
  const int64_t R = d.R, L = d.L;
  check_float_cuda(gy, "gy");
  VITRIM_CHECK(gy.dtype == x.dtype, DType, "layernorm_backward: gy is ", dtype_name(gy.dtype), " but x is ",
               dtype_name(x.dtype));
  check_same_shape(gy, x, "gy", "x");
  check_affine(w, x, L, "weight", "layernorm_backward");
  check_cuda(mean, "mean");
  check_cuda(rstd, "rstd");
  check_dtype(mean, DType::F32, "mean");
  check_dtype(rstd, DType::F32, "rstd");
  check_shape(mean, {R}, "mean");
  check_shape(rstd, {R}, "rstd");

  Tensor gx = alloc(x.shape, x.dtype);
  std::optional<Tensor> gw, gb;
  if (w) {
    gw = alloc({L}, x.dtype);
    gb = alloc({L}, x.dtype);
  }
  if (R == 0) {  // no rows: gx is empty and the column sums are zero
    if (w) {
      VITRIM_CUDA_CHECK(cudaMemsetAsync(gw->raw(), 0, gw->nbytes(), stream()));
      VITRIM_CUDA_CHECK(cudaMemsetAsync(gb->raw(), 0, gb->nbytes(), stream()));
    }
    return {gx, gw, gb};
  }
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = ptr<T>(gy);
    const T* xp = ptr<T>(x);
    const T* wp = w ? ptr<T>(*w) : nullptr;
    const float* rp = ptr<float>(rstd);
    T* op = ptr<T>(gx);
    // the gx kernels' double row means for the column sums (see split_mean); only with a weight
    std::optional<Tensor> mu2;
    if (w) mu2 = alloc({R, 2}, DType::F32);
    float2* m2 = w ? ptr<float2>(*mu2) : nullptr;
    if (L <= kWarpRowMax) {
      const unsigned grid = blocks_for(R, kWarpsPerBlock);
      constexpr int VW = vec_width<T>();
      const bool vec = vec_ok(gp, L, sizeof(T)) && vec_ok(xp, L, sizeof(T)) && vec_ok(wp, L, sizeof(T)) &&
                       vec_ok(op, L, sizeof(T));
      if (vec) {
        dispatch_it<VW>(accesses_per_lane(L, VW), [&](auto it) {
          ln_bwd_warp<T, VW, decltype(it)::value>
              <<<grid, kWarpsPerBlock * 32, 0, stream()>>>(gp, xp, wp, rp, op, m2, R, (int)L);
        });
      } else {
        dispatch_it<1>(accesses_per_lane(L, 1), [&](auto it) {
          ln_bwd_warp<T, 1, decltype(it)::value>
              <<<grid, kWarpsPerBlock * 32, 0, stream()>>>(gp, xp, wp, rp, op, m2, R, (int)L);
        });
      }
    } else {
      ln_bwd_block<T><<<blocks_for(R, 1), kRowBlock, 0, stream()>>>(gp, xp, wp, rp, op, m2, R, L);
    }
    VITRIM_CUDA_LAUNCHED();
    if (!w) return;
    // Chunks of rows: enough (column-block x chunk) blocks to fill the GPU a few times, each chunk
    // at least 32 rows; gridDim.y = chunks <= 8 * SMs, far below 65535.
    const int64_t col_blocks = (L + 31) / 32;
    int64_t chunks = std::max<int64_t>(1, std::min<int64_t>((R + 31) / 32, (8 * (int64_t)sm_count() + col_blocks - 1) /
                                                                               col_blocks));
    chunks = std::min<int64_t>(chunks, 8 * (int64_t)sm_count());
    const int64_t rows_per_chunk = (R + chunks - 1) / chunks;
    chunks = (R + rows_per_chunk - 1) / rows_per_chunk;  // no empty chunk
    Tensor pw = alloc({chunks, L}, DType::F32), pb = alloc({chunks, L}, DType::F32);
    const dim3 block(32, 8);
    ln_colsum<T><<<dim3((unsigned)col_blocks, (unsigned)chunks), block, 0, stream()>>>(
        gp, xp, m2, rp, ptr<float>(pw), ptr<float>(pb), R, L, rows_per_chunk);
    VITRIM_CUDA_LAUNCHED();
    ln_colsum_finish<T><<<(unsigned)col_blocks, block, 0, stream()>>>(ptr<float>(pw), ptr<float>(pb), ptr<T>(*gw),
                                                                       ptr<T>(*gb), chunks, L);
    VITRIM_CUDA_LAUNCHED();
  });
  return {gx, gw, gb};
}

VITRIM_CUDA_OP(layernorm_forward);
VITRIM_CUDA_OP(layernorm_backward);

}  // namespace vitrim::cuda
