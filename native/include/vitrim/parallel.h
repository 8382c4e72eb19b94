// A persistent thread pool sized to the machine (VITRIM_NUM_THREADS overrides). parallel_for splits
// [0, n) into contiguous chunks of at least `grain` items; the calling thread takes a chunk too.
// Nested parallel_for calls (from inside a worker) run serially, so kernels may call each other freely.
#pragma once
#include <cstdint>
#include <functional>

namespace vitrim {

int num_threads();
void set_num_threads(int n);  // 1..256; takes effect on the next parallel_for
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace vitrim
