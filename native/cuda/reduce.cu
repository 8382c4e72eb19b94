// Reductions on CUDA: sum, mean and max over any set of axes, the same name, signature, validation,
// messages and edge cases as native/cpu/reduce.cpp (negative axes, empty list = every axis, keepdim;
// out-of-range axis ERR_VITRIM_INDEX, duplicate ERR_VITRIM_ARGUMENT; empty reductions: sum 0, mean
// NaN, max ERR_VITRIM_SHAPE; max propagates NaN). float32 or bfloat16 in, the same dtype out, fp32
// accumulation (the CPU accumulates in double: sums agree to ~1e-7 relative at model sizes).
//
// Nothing is permuted. The host drops size-1 dims and merges adjacent dims of the same role (kept /
// reduced) into groups, exactly as the CPU, and passes both group lists (sizes, input strides) by
// value. Output element o starts at offset_of(o, kept); its k-th reduced element (k in [0, count)) is
// at offset_of(k, reduced) from there: k runs fastest along the innermost reduced group, so
// consecutive k are consecutive addresses when the innermost input dim is reduced.
// One kernel, G threads per (output element, split):
//   - innermost dim kept (e.g. a bias gradient [R, C] -> [C]): G = 1, thread per output; adjacent
//     threads are adjacent outputs, hence adjacent addresses for every k (coalesced);
//   - innermost dim reduced: G = 1 below 64 reduced elements, a warp (G = 32) up to 4096, a block
//     (G = 256) above; lanes stride over k (coalesced), then a shuffle (and shared-memory) tree.
// When the outputs alone cannot fill the GPU (fewer than 2^17 threads) the k range is cut into S
// splits (each >= 8 elements per thread, S <= 1024) whose fp32 partials go to a [S, nout] buffer that
// a second kernel combines in split order. No atomics: the split sizes and every summation order
// depend only on the shape, so results are bitwise reproducible (also across GPU models).
// Offsets are 32-bit when x has fewer than 2^31 elements, else 64-bit. Up to kMaxGroups kept and
// kMaxGroups reduced groups (any rank below 2*kMaxGroups works; more is ERR_VITRIM_ARGUMENT).
//
// sum_squares (a list of tensors -> Σ Σ x², float32 [1]): multi-tensor launches (multi_tensor.cuh),
// one block per 8192-element chunk writing its double partial sum to its own slot, then one block
// adds the slots in order, in double. No atomics: deterministic. Inputs float32 or bfloat16 (grouped
// by dtype); nothing is read back.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.cuh"
#include "multi_tensor.cuh"
#include "rows.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

// convert.cu
Tensor full(const Shape& shape, double value, DType dtype);

namespace {

using cpu::ReduceOp;

constexpr int kMaxGroups = 12;
constexpr int kThreads = 256;
constexpr int64_t kTargetThreads = 1 << 17;
constexpr int64_t kMaxSplits = 1024;

struct Groups {
  int n;
  int64_t size[kMaxGroups], stride[kMaxGroups];
};

struct RedArgs {
  Groups kept, red;
  int64_t nout, count, chunk, splits;
  float scale;  // 1/count for mean (applied once, to the final value), else 1
};

// Offset (input elements) of flat index r over the groups (outer..inner).
template <class I>
__device__ __forceinline__ I offset_of(I r, const Groups& g) {
  I off = 0;
  for (int d = g.n - 1; d > 0; --d) {
    const I sz = (I)g.size[d];
    const I q = r / sz;
    off += (r - q * sz) * (I)g.stride[d];
    r = q;
  }
  if (g.n > 0) off += r * (I)g.stride[0];
  return off;
}

__device__ __forceinline__ float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

template <bool MAX>
__device__ __forceinline__ float combine(float a, float b) {
  if constexpr (MAX) return max_nan(a, b);
  else return a + b;
}

template <bool MAX>
__device__ __forceinline__ float warp_reduce(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = combine<MAX>(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// The (serial) reduction of the k-range of split s of output o by `lane` of a G-thread group.
template <class T, class I, bool MAX, int G>
__device__ __forceinline__ float reduce_part(const T* __restrict__ x, const RedArgs& a, I o, I s, int lane) {
  float acc = MAX ? -INFINITY : 0.f;
  const I base = offset_of<I>(o, a.kept);
  const I k0 = s * (I)a.chunk;
  const I k1 = min((I)a.count, k0 + (I)a.chunk);
  for (I k = k0 + (I)lane; k < k1; k += (I)G) acc = combine<MAX>(acc, to_f(x[base + offset_of<I>(k, a.red)]));
  return acc;
}

template <class T, bool MAX>
__device__ __forceinline__ void write_out(T* y, float* part, const RedArgs& a, int64_t o, int64_t s, float v) {
  if (a.splits == 1) y[o] = from_f<T>(MAX ? v : v * a.scale);
  else part[s * a.nout + o] = v;
}

// Pairs p = s * nout + o (o fastest: adjacent threads / warps take adjacent outputs).
template <class T, class I, bool MAX>
__global__ void reduce_thread_kernel(const T* __restrict__ x, T* __restrict__ y, float* __restrict__ part, RedArgs a) {
  const I npairs = (I)(a.nout * a.splits), nout = (I)a.nout;
  const I stride = (I)gridDim.x * blockDim.x;
  for (I p = (I)blockIdx.x * blockDim.x + threadIdx.x; p < npairs; p += stride) {
    const I s = p / nout, o = p - s * nout;
    write_out<T, MAX>(y, part, a, o, s, reduce_part<T, I, MAX, 1>(x, a, o, s, 0));
  }
}

// One warp per pair. The pair loop is uniform across each warp, so full-mask shuffles are safe.
template <class T, class I, bool MAX>
__global__ void reduce_warp_kernel(const T* __restrict__ x, T* __restrict__ y, float* __restrict__ part, RedArgs a) {
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const I npairs = (I)(a.nout * a.splits), nout = (I)a.nout;
  const I stride = (I)gridDim.x * warps;
  for (I p = (I)blockIdx.x * warps + (threadIdx.x >> 5); p < npairs; p += stride) {
    const I s = p / nout, o = p - s * nout;
    const float v = warp_reduce<MAX>(reduce_part<T, I, MAX, 32>(x, a, o, s, lane));
    if (lane == 0) write_out<T, MAX>(y, part, a, o, s, v);
  }
}

// One block (kThreads) per pair; the pair loop is uniform across the block, so the barriers are too.
template <class T, class I, bool MAX>
__global__ void __launch_bounds__(kThreads) reduce_block_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                float* __restrict__ part, RedArgs a) {
  __shared__ float sh[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const I npairs = (I)(a.nout * a.splits), nout = (I)a.nout;
  for (I p = blockIdx.x; p < npairs; p += (I)gridDim.x) {
    const I s = p / nout, o = p - s * nout;
    float v = warp_reduce<MAX>(reduce_part<T, I, MAX, kThreads>(x, a, o, s, threadIdx.x));
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
      v = lane < kThreads / 32 ? sh[lane] : (MAX ? -INFINITY : 0.f);
      v = warp_reduce<MAX>(v);
      if (lane == 0) write_out<T, MAX>(y, part, a, o, s, v);
    }
    __syncthreads();  // sh is rewritten by the next pair
  }
}

// y[o] = combine of part[0..S-1][o] in split order (then the mean's scale).
template <class T, bool MAX>
__global__ void reduce_finish_kernel(const float* __restrict__ part, T* __restrict__ y, int64_t nout, int64_t splits,
                                     float scale) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < nout; o += stride) {
    float v = part[o];
    for (int64_t s = 1; s < splits; ++s) v = combine<MAX>(v, part[s * nout + o]);
    y[o] = from_f<T>(MAX ? v : v * scale);
  }
}

template <class T, class I, bool MAX>
void reduce_launch(const Tensor& x, const Tensor& y, const RedArgs& a, int G) {
  Tensor part;
  float* pp = nullptr;
  if (a.splits > 1) {
    part = alloc({a.splits, a.nout}, DType::F32);
    pp = ptr<float>(part);
  }
  const int64_t npairs = a.nout * a.splits;
  const T* xp = ptr<T>(x);
  T* yp = ptr<T>(y);
  if (G == 1) {
    reduce_thread_kernel<T, I, MAX><<<grid_for(npairs, kThreads), kThreads, 0, stream()>>>(xp, yp, pp, a);
  } else if (G == 32) {
    reduce_warp_kernel<T, I, MAX><<<grid_for(npairs * 32, kThreads), kThreads, 0, stream()>>>(xp, yp, pp, a);
  } else {
    const int64_t blocks = std::min<int64_t>(npairs, (int64_t)sm_count() * 32);
    reduce_block_kernel<T, I, MAX><<<(unsigned)blocks, kThreads, 0, stream()>>>(xp, yp, pp, a);
  }
  VITRIM_CUDA_LAUNCHED();
  if (a.splits > 1) {
    reduce_finish_kernel<T, MAX><<<grid_for(a.nout, kThreads), kThreads, 0, stream()>>>(pp, yp, a.nout, a.splits,
                                                                                        a.scale);
    VITRIM_CUDA_LAUNCHED();
  }
}

template <class T>
struct SquaresArgs {
  ChunkTable c;
  const T* x[kMultiMax];
};

template <class T>
__global__ void __launch_bounds__(256) sum_squares_chunks(const SquaresArgs<T> a, double* __restrict__ part,
                                                          int64_t first_slot) {
  __shared__ double sh[32];
  int64_t lo, hi;
  const int t = a.c.tensor_of_block(lo, hi);
  const T* __restrict__ x = a.x[t];
  double s = 0.0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const double v = (double)to_f(x[i]);
    s += v * v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[first_slot + blockIdx.x] = s;
}

__global__ void __launch_bounds__(1024) sum_squares_total(const double* __restrict__ part, int64_t n,
                                                          float* __restrict__ out) {
  __shared__ double sh[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = (float)s;
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  check_float_cuda(x, "x");
  ReducePlan plan = plan_reduce(op, x, axes, keepdim);
  const int64_t r = x.dim();
  const std::vector<bool>& red = plan.reduced;
  const Shape& os = plan.out;
  const int64_t count = plan.count;
  const int64_t nout = shape_numel(os);
  if (nout == 0) return alloc(os, x.dtype);
  if (count == 0) {
    VITRIM_CHECK(op != ReduceOp::Max, Shape, "reduce: max over an empty axis of shape ", shape_str(x.shape));
    return cuda::full(os, op == ReduceOp::Sum ? 0.0 : std::numeric_limits<double>::quiet_NaN(), x.dtype);
  }
  Tensor y = alloc(os, x.dtype);
  if (count == 1) {  // only size-1 dims are reduced: the data is unchanged
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(y.raw(), x.raw(), y.nbytes(), cudaMemcpyDeviceToDevice, stream()));
    return y;
  }

  // Groups of merged dims, outer..inner, with their role (as the CPU).
  std::vector<int64_t> ksz, kst, rsz, rst;
  bool inner_reduced = false;
  {
    struct G {
      int64_t size, stride;
      bool red;
    };
    std::vector<G> rev;  // inner..outer
    int64_t stride = 1;
    for (int64_t i = r - 1; i >= 0; --i) {
      const int64_t d = x.shape[i];
      if (d != 1) {
        if (!rev.empty() && rev.back().red == red[i]) rev.back().size *= d;
        else rev.push_back({d, stride, (bool)red[i]});
      }
      stride *= d;
    }
    inner_reduced = rev.front().red;  // count > 1, so some reduced dim is not 1: rev is not empty
    for (int64_t k = (int64_t)rev.size() - 1; k >= 0; --k) {
      (rev[k].red ? rsz : ksz).push_back(rev[k].size);
      (rev[k].red ? rst : kst).push_back(rev[k].stride);
    }
  }
  VITRIM_CHECK((int)ksz.size() <= kMaxGroups && (int)rsz.size() <= kMaxGroups, Argument, "reduce: shape ",
               shape_str(x.shape), " with these axes alternates kept and reduced dimensions ",
               ksz.size() + rsz.size(), " times; cuda supports up to ", kMaxGroups, " groups of each");
  RedArgs a{};
  a.kept.n = (int)ksz.size();
  a.red.n = (int)rsz.size();
  for (size_t k = 0; k < ksz.size(); ++k) {
    a.kept.size[k] = ksz[k];
    a.kept.stride[k] = kst[k];
  }
  for (size_t k = 0; k < rsz.size(); ++k) {
    a.red.size[k] = rsz[k];
    a.red.stride[k] = rst[k];
  }
  a.nout = nout;
  a.count = count;
  a.scale = op == ReduceOp::Mean ? (float)(1.0 / (double)count) : 1.f;

  // Threads per output (G) and splits of the reduced range (S): functions of the shape only.
  int G = 1;
  if (inner_reduced && count >= 64) G = count <= 4096 ? 32 : kThreads;
  const int64_t per_thread = G == 1 ? 16 : 8;
  const int64_t s_max = std::min<int64_t>(kMaxSplits, std::max<int64_t>(1, count / (G * per_thread)));
  int64_t S = 1;
  if (nout * G < kTargetThreads) S = std::min<int64_t>(s_max, (kTargetThreads + nout * G - 1) / (nout * G));
  a.chunk = (count + S - 1) / S;
  a.splits = (count + a.chunk - 1) / a.chunk;  // no empty split

  const bool small = index32(x.numel());
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    if (op == ReduceOp::Max) {
      if (small) reduce_launch<T, uint32_t, true>(x, y, a, G);
      else reduce_launch<T, int64_t, true>(x, y, a, G);
    } else {
      if (small) reduce_launch<T, uint32_t, false>(x, y, a, G);
      else reduce_launch<T, int64_t, false>(x, y, a, G);
    }
  });
  return y;
}

Tensor sum_squares(const std::vector<Tensor>& xs) {
  int64_t slots = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_float_cuda(xs[i], "xs");
    check_multi_size(xs[i].numel(), "sum_squares", i);
    slots += (xs[i].numel() + kMultiChunk - 1) / kMultiChunk;
  }
  Tensor y = alloc({1}, DType::F32);
  // the partial sums, as doubles in a float32 buffer twice as long (blocks are 512-byte aligned)
  Tensor part = alloc({std::max<int64_t>(1, 2 * slots)}, DType::F32);
  double* P = reinterpret_cast<double*>(part.raw());
  int64_t next = 0;
  for (DType dt : {DType::F32, DType::BF16}) {
    dispatch_float(dt, "xs", [&](auto tag) {
      using T = decltype(tag);
      multi_launches<SquaresArgs<T>>(
          xs.size(), [&](size_t i) { return xs[i].dtype == dt ? xs[i].numel() : 0; },
          [&](SquaresArgs<T>& a, int t, size_t i) { a.x[t] = ptr<T>(xs[i]); },
          [&](const SquaresArgs<T>& a) {
            sum_squares_chunks<T><<<a.c.blocks(), 256, 0, stream()>>>(a, P, next);
            VITRIM_CUDA_LAUNCHED();
            next += a.c.blocks();
          });
    });
  }
  sum_squares_total<<<1, 1024, 0, stream()>>>(P, next, ptr<float>(y));
  VITRIM_CUDA_LAUNCHED();
  return y;
}

VITRIM_CUDA_OP(sum_squares);
VITRIM_CUDA_OP(reduce);

}  // namespace vitrim::cuda
