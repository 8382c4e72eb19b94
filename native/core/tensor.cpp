// The CPU side of the tensor core: the caching allocator behind CPU storage, allocation on any device
// (CUDA through the loaded backend) and per-device memory accounting.
#include "vitrim/tensor.h"

#include "vitrim/backend.h"

#include <sys/sysinfo.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

namespace vitrim {

namespace {
std::atomic<int64_t> g_live[1];
std::atomic<int64_t> g_bytes[1];

// CPU caching allocator. Large blocks from the C allocator are fresh mmap'ed pages: every new
// activation tensor then pays a page fault per 4 KiB on first touch, which cost more than the op
// itself for elementwise kernels. Blocks of >= 64 KiB are instead rounded up to a size class
// (2^k · {4,5,6,7}/4: at most 25 % slack) and kept on a free list when released, up to a cache bound
// (VITRIM_CPU_CACHE_MB, default 2048; 0 disables caching). empty_cache() returns them to the system.
class BlockCache {
 public:
  static constexpr size_t kMin = 64 * 1024;
  BlockCache() {
    limit_ = (size_t)2048 << 20;
    if (const char* e = std::getenv("VITRIM_CPU_CACHE_MB")) limit_ = (size_t)std::strtoull(e, nullptr, 10) << 20;
  }
  ~BlockCache() { release_all(); }
  static size_t size_class(size_t n) {
    if (n < kMin) return ((n + 63) / 64) * 64 + 64;
    size_t p = 1;
    while (p * 2 <= n) p *= 2;
    for (size_t q = 4; q <= 8; ++q)
      if (p / 4 * q >= n) return p / 4 * q;
    return p * 2;
  }
  void* take(size_t cls) {
    if (cls >= kMin) {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, cls);
    if (!p && cls >= kMin) {  // out of memory: give the cache back and retry once
      release_all();
      p = std::aligned_alloc(64, cls);
    }
    return p;
  }
  void give(void* p, size_t cls) {
    if (cls >= kMin) {
      std::lock_guard<std::mutex> lk(mu_);
      if (cached_ + cls <= limit_) {
        free_[cls].push_back(p);
        cached_ += cls;
        return;
      }
    }
    std::free(p);
  }
  void release_all() {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [cls, v] : free_)
      for (void* p : v) std::free(p);
    free_.clear();
    cached_ = 0;
  }
  int64_t cached() {
    std::lock_guard<std::mutex> lk(mu_);
    return (int64_t)cached_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0, limit_ = 0;
};

BlockCache& cache() {
  static BlockCache* c = new BlockCache();  // never destroyed: storages may outlive static teardown
  return *c;
}
}  // namespace

static std::atomic<uint64_t> g_next_uid{1};

static void release_cpu(void* data, size_t bytes) {
  cache().give(data, BlockCache::size_class(bytes + 64));
  g_live[0]--;
  g_bytes[0] -= (int64_t)bytes;
}

// The most bytes CPU tensors may hold at once: VITRIM_CPU_MEMORY_LIMIT_MB (0: no limit), by default
// the machine's physical memory plus swap. A request past it can never be met without the kernel's
// OOM killer ending the process (allocations are overcommitted, then die on first touch), so it is
// refused as a MemoryError instead.
static int64_t cpu_memory_limit() {
  static const int64_t limit = [] {
    if (const char* e = std::getenv("VITRIM_CPU_MEMORY_LIMIT_MB")) return (int64_t)std::strtoll(e, nullptr, 10) << 20;
    struct sysinfo si {};
    if (sysinfo(&si) != 0) return (int64_t)0;
    return (int64_t)((uint64_t)si.totalram + (uint64_t)si.totalswap) * (int64_t)si.mem_unit;
  }();
  return limit;
}

// Fault injection for tests (cpu_alloc_faults): while armed with n > 0, the n-th CPU tensor allocation
// counted from the arming and every one after it fail as out of memory, so that a test can fail an
// entry point at each of its allocations in turn (a size limit only ever fails the allocations that
// set a new peak) and check that nothing is left allocated. One relaxed load when unarmed.
static std::atomic<int64_t> g_fail_from{0};
static std::atomic<int64_t> g_alloc_count{0};

int64_t cpu_alloc_faults(int64_t fail_from) {
  VITRIM_CHECK(fail_from >= 0, Argument, "allocFaults: n must be >= 0, got ", fail_from);
  const int64_t counted = g_alloc_count.exchange(0);
  g_fail_from.store(fail_from);
  return counted;
}

static std::shared_ptr<Storage> cpu_storage(size_t nbytes) {
  const int64_t nth = g_alloc_count.fetch_add(1, std::memory_order_relaxed) + 1;
  if (const int64_t from = g_fail_from.load(std::memory_order_relaxed); from > 0 && nth >= from)
    fail(ErrorKind::Memory, "out of memory allocating ", nbytes, " bytes on cpu (injected: allocation ", nth,
         ", failing from ", from, ")");
  const int64_t limit = cpu_memory_limit();
  if (limit > 0 && (int64_t)nbytes > limit - g_bytes[0].load()) {
    fail(ErrorKind::Memory, "allocating ", nbytes, " bytes on cpu would put ", g_bytes[0].load() + (int64_t)nbytes,
         " bytes in use, over the limit of ", limit, " (the machine's memory and swap, or VITRIM_CPU_MEMORY_LIMIT_MB)");
  }
  // The size class keeps the allocation a multiple of 64 with >= 64 bytes of tail, so SIMD tails
  // never leave the block and a zero-byte tensor is still a valid pointer.
  void* data = cache().take(BlockCache::size_class(nbytes + 64));
  if (!data) fail(ErrorKind::Memory, "out of memory allocating ", nbytes, " bytes on cpu");
  g_live[0]++;
  g_bytes[0] += (int64_t)nbytes;
  try {
    return std::make_shared<Storage>(data, nbytes, Device::CPU, g_next_uid.fetch_add(1, std::memory_order_relaxed),
                                     &release_cpu);
  } catch (...) {
    release_cpu(data, nbytes);
    throw;
  }
}

void empty_cache() { cache().release_all(); }

MemoryStats memory_stats(Device d) {
  if (d == Device::CUDA) {
    const Backend* be = loaded_backend(Device::CUDA);
    return be ? be->memory_stats() : MemoryStats{};
  }
  MemoryStats s;
  s.live_tensors = g_live[0].load();
  s.bytes_in_use = g_bytes[0].load();
  s.bytes_cached = cache().cached();
  return s;
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  if (device != Device::CPU) return backend(device).empty(shape, dtype);
  Tensor t;
  t.shape = shape;
  t.dtype = dtype;
  t.storage = cpu_storage((size_t)shape_numel(shape) * dtype_size(dtype));
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  if (device != Device::CPU) return backend(device).full(shape, 0.0, dtype);
  Tensor t = empty(shape, dtype, device);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

}  // namespace vitrim
