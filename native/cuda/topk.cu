// Top-k along the last axis on CUDA: the same name, signature and order as native/cpu/topk.cpp.
// x float32 or bfloat16 (any rank >= 1) -> values [..., k] (x's dtype, copied bit for bit from x, so
// NaN payloads and the sign of zero survive) and indices [..., k] int32, best first.
//
// Order: exactly the CPU's total order, through the CPU's own key: each element becomes one uint64,
// a monotone 32-bit encoding of its value (as float32; -0 folded into +0, every NaN above +inf) in the
// high half, complemented for smallest, and 0xFFFFFFFF - index in the low half, so that sorting the
// keys in descending unsigned order gives: better value first, and among equal values (NaN vs NaN
// included) the lower index first. Keys are distinct, so any correct sort returns the CPU's indices.
//
// Algorithm: one block per row (grid-stride over rows), the row's keys padded to a power of two P
// with key 0 (below every real key: a real key's low half is 0xFFFFFFFF - j > 0) and sorted
// descending by a bitonic network; the first k are written out.
//   - L <= 2048: keys in shared memory (P * 8 <= 16 KiB), min(P / 2, 1024) threads, one
//     compare-exchange per thread per stage (at ViT lengths, L ~ 200: P = 256, 128 threads).
//   - longer rows (any length up to INT32_MAX): the same network over a global-memory buffer of
//     P keys per block (1024 threads, a few blocks; O(P log^2 P) per row). Correct, not fast: rows
//     are short in this library.
#include <algorithm>
#include <cstdint>

#include "common.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {
namespace {

constexpr int64_t kSmemMaxLen = 2048;

__device__ __forceinline__ uint64_t topk_key(float f, uint32_t j, bool largest) {
  uint32_t k;
  if (isnan(f)) {
    k = 0xFFFFFFFFu;
  } else {
    uint32_t b = __float_as_uint(f);
    if ((b & 0x7FFFFFFFu) == 0) b = 0;  // -0 -> +0
    k = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  }
  if (!largest) k = ~k;
  return ((uint64_t)k << 32) | (uint64_t)(0xFFFFFFFFu - j);
}

// Sorts keys[0, P) descending (P a power of two) with the whole block; every thread must call it.
// Ends with a __syncthreads.
template <class I>
__device__ void bitonic_sort_desc(uint64_t* keys, I P) {
  for (I size = 2; size <= P; size <<= 1) {
    for (I stride = size >> 1; stride > 0; stride >>= 1) {
      for (I t = threadIdx.x; t < P / 2; t += blockDim.x) {
        const I lo = 2 * t - (t & (stride - 1));  // the t-th pair (lo, lo + stride)
        const I hi = lo + stride;
        const bool desc = (lo & size) == 0;  // alternate directions; the final merge (size = P) is descending
        const uint64_t a = keys[lo], b = keys[hi];
        if (desc ? a < b : a > b) {
          keys[lo] = b;
          keys[hi] = a;
        }
      }
      __syncthreads();
    }
  }
}

// gkeys == nullptr: keys in dynamic shared memory (P * 8 bytes); else block b uses gkeys[b*P, (b+1)*P).
template <class T, class I>
__global__ void topk_kernel(const T* __restrict__ x, T* __restrict__ vals, int32_t* __restrict__ idx, int64_t rows,
                            I L, I k, I P, bool largest, uint64_t* gkeys) {
  extern __shared__ __align__(16) unsigned char topk_smem[];
  uint64_t* keys = gkeys ? gkeys + (int64_t)blockIdx.x * (int64_t)P : reinterpret_cast<uint64_t*>(topk_smem);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {  // uniform across the block
    const T* __restrict__ xr = x + row * (int64_t)L;
    for (I i = threadIdx.x; i < P; i += blockDim.x) keys[i] = i < L ? topk_key(to_f(xr[i]), (uint32_t)i, largest) : 0;
    __syncthreads();
    bitonic_sort_desc<I>(keys, P);
    for (I t = threadIdx.x; t < k; t += blockDim.x) {
      const uint32_t j = 0xFFFFFFFFu - (uint32_t)(keys[t] & 0xFFFFFFFFull);
      idx[row * (int64_t)k + t] = (int32_t)j;
      vals[row * (int64_t)k + t] = xr[j];
    }
    __syncthreads();  // the next row overwrites keys
  }
}

}  // namespace

std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, bool largest) {
  check_float_cuda(x, "x");
  const Shape os = plan_topk(x, k);
  const int64_t L = x.size(-1);
  Tensor vals = alloc(os, x.dtype);
  Tensor idx = alloc(os, DType::I32);
  const int64_t rows = L == 0 ? 0 : x.numel() / L;
  if (k == 0 || rows == 0) return {vals, idx};
  int64_t P = 1;
  while (P < L) P <<= 1;
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    if (L <= kSmemMaxLen) {
      const int threads = (int)std::min<int64_t>(1024, std::max<int64_t>(32, P / 2));
      const unsigned grid = (unsigned)std::min<int64_t>(rows, (int64_t)sm_count() * 32);
      topk_kernel<T, int><<<grid, threads, (size_t)P * sizeof(uint64_t), stream()>>>(
          ptr<T>(x), ptr<T>(vals), ptr<int32_t>(idx), rows, (int)L, (int)k, (int)P, largest, nullptr);
      VITRIM_CUDA_LAUNCHED();
    } else {
      // A key buffer of P per block, bounded to ~256 MiB (at least one block).
      const int64_t by_mem = std::max<int64_t>(1, (int64_t(256) << 20) / (P * 8));
      const int64_t blocks = std::min<int64_t>({rows, (int64_t)sm_count() * 2, by_mem});
      Tensor buf = alloc({blocks * P * 2}, DType::I32);  // blocks * P uint64 keys
      topk_kernel<T, int64_t><<<(unsigned)blocks, 1024, 0, stream()>>>(
          ptr<T>(x), ptr<T>(vals), ptr<int32_t>(idx), rows, L, k, P, largest, static_cast<uint64_t*>(buf.raw()));
      VITRIM_CUDA_LAUNCHED();
      // buf goes back to the caching allocator here; the stream orders its reuse after the kernel.
    }
  });
  return {vals, idx};
}

VITRIM_CUDA_OP(topk);

}  // namespace vitrim::cuda
