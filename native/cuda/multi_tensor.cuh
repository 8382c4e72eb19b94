// Multi-tensor launches (as PyTorch's multi_tensor_apply): one kernel covers up to kMultiMax
// tensors, whose pointers and sizes travel by value in the kernel's argument. Each tensor is cut into
// kMultiChunk-element chunks, one block per chunk: tensor t owns blocks [first[t], first[t + 1]). A
// block finds its tensor by a scan of at most kMultiMax entries and works on [lo, hi) of it. Chunk
// starts are multiples of 4, so 16-byte accesses of a tensor whose base is aligned stay aligned.
// Used by adamw_step_multi (optim.cu) and sum_squares (reduce.cu).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace vitrim::cuda {

constexpr int kMultiMax = 32;      // tensors per launch: the argument stays well under 4 KiB
constexpr int kMultiChunk = 8192;  // elements per block (32 per thread at 256 threads)

struct ChunkTable {
  int64_t n[kMultiMax];
  int32_t first[kMultiMax + 1];
  int count;

  // Host: whether a tensor of n elements still fits in this launch (else launch, then reset()).
  bool fits(int64_t n_) const {
    const int64_t blocks = (n_ + kMultiChunk - 1) / kMultiChunk;
    return count < kMultiMax && (int64_t)first[count] + blocks <= INT32_MAX;
  }
  // Host: appends a tensor (fits() must hold); returns its slot.
  int add(int64_t n_) {
    const int t = count++;
    n[t] = n_;
    first[t + 1] = first[t] + (int32_t)((n_ + kMultiChunk - 1) / kMultiChunk);
    return t;
  }
  int32_t blocks() const { return first[count]; }

  // Device: this block's tensor and element range.
  __device__ __forceinline__ int tensor_of_block(int64_t& lo, int64_t& hi) const {
    const int32_t b = (int32_t)blockIdx.x;
    int t = 0;
    while (t + 1 < count && b >= first[t + 1]) ++t;
    lo = (int64_t)(b - first[t]) * kMultiChunk;
    hi = lo + kMultiChunk < n[t] ? lo + kMultiChunk : n[t];
    return t;
  }
};

// Packs entries 0..count-1 into launches, in order: size(i) is entry i's element count (0: not in
// this launch series, e.g. another dtype), fill(args, slot, i) stores its pointers, launch(args)
// runs one full argument block. Entries were checked with check_multi_size, so one always fits.
template <class Args, class Size, class Fill, class Launch>
void multi_launches(size_t count, Size size, Fill fill, Launch launch) {
  Args a{};
  for (size_t i = 0; i < count; ++i) {
    const int64_t n = size(i);
    if (n == 0) continue;
    if (!a.c.fits(n)) {
      launch(a);
      a = Args{};
    }
    fill(a, a.c.add(n), i);
  }
  if (a.c.count) launch(a);
}

// The largest tensor a multi-tensor op takes (its chunks must be countable in int32).
inline void check_multi_size(int64_t n, const char* op, size_t entry) {
  VITRIM_CHECK(n / kMultiChunk < (int64_t(1) << 30), Shape, op, ": entry ", entry, " has too many elements (", n,
               ")");
}

}  // namespace vitrim::cuda
