#include "vitrim/tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

namespace vitrim {

size_t dtype_size(DType d) { return d == DType::F32 ? 4 : d == DType::BF16 ? 2 : 4; }
const char* dtype_name(DType d) { return d == DType::F32 ? "float32" : d == DType::BF16 ? "bfloat16" : "int32"; }
const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    VITRIM_CHECK(d >= 0, Shape, "negative dimension in shape ", shape_str(s));
    if (d == 0) return 0;
    VITRIM_CHECK(n <= kMaxNumel / d, Shape, "shape ", shape_str(s), " has too many elements (limit 2^40)");
    n *= d;
  }
  return n;
}

namespace {
std::atomic<int64_t> g_live[2];
std::atomic<int64_t> g_bytes[2];

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

Storage::Storage(size_t nbytes, Device dev)
    : bytes(nbytes), device(dev), uid(g_next_uid.fetch_add(1, std::memory_order_relaxed)) {
  VITRIM_CHECK(dev == Device::CPU, Device, "storage on ", device_name(dev), " is not available in this build");
  // The size class keeps the allocation a multiple of 64 with >= 64 bytes of tail, so SIMD tails
  // never leave the block and a zero-byte tensor is still a valid pointer.
  data = cache().take(BlockCache::size_class(nbytes + 64));
  if (!data) fail(ErrorKind::Memory, "out of memory allocating ", nbytes, " bytes on cpu");
  g_live[0]++;
  g_bytes[0] += (int64_t)nbytes;
}

Storage::~Storage() {
  cache().give(data, BlockCache::size_class(bytes + 64));
  g_live[0]--;
  g_bytes[0] -= (int64_t)bytes;
}

void empty_cache() { cache().release_all(); }

MemoryStats memory_stats(Device d) {
  MemoryStats s;
  int i = d == Device::CPU ? 0 : 1;
  s.live_tensors = g_live[i].load();
  s.bytes_in_use = g_bytes[i].load();
  if (i == 0) s.bytes_cached = cache().cached();
  return s;
}

Tensor Tensor::reshape(const Shape& s) const {
  Shape out = s;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      VITRIM_CHECK(infer < 0, Shape, "reshape: at most one dimension may be -1, got ", shape_str(s));
      infer = (int)i;
    } else {
      VITRIM_CHECK(out[i] >= 0, Shape, "reshape: invalid dimension in ", shape_str(s));
      known *= out[i];
    }
  }
  int64_t n = numel();
  if (infer >= 0) {
    VITRIM_CHECK(known > 0 && n % known == 0, Shape, "reshape: cannot reshape ", shape_str(shape), " to ", shape_str(s));
    out[infer] = n / known;
  }
  VITRIM_CHECK(shape_numel(out) == n, Shape, "reshape: cannot reshape ", shape_str(shape), " (", n,
               " elements) to ", shape_str(s));
  Tensor t = *this;
  t.shape = out;
  return t;
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape = shape;
  t.dtype = dtype;
  t.storage = std::make_shared<Storage>((size_t)shape_numel(shape) * dtype_size(dtype), device);
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

void check_dtype(const Tensor& t, DType d, const char* what) {
  VITRIM_CHECK(t.dtype == d, DType, what, " must be ", dtype_name(d), ", got ", dtype_name(t.dtype));
}
void check_cpu(const Tensor& t, const char* what) {
  VITRIM_CHECK(t.storage != nullptr, Disposed, what, " has no storage (disposed?)");
  VITRIM_CHECK(t.device() == Device::CPU, Device, what, " is on ", device_name(t.device()),
               "; this op runs on cpu");
}
void check_rank(const Tensor& t, int64_t rank, const char* what) {
  VITRIM_CHECK(t.dim() == rank, Shape, what, " must have ", rank, " dimensions, got shape ", shape_str(t.shape));
}
void check_same_shape(const Tensor& a, const Tensor& b, const char* wa, const char* wb) {
  VITRIM_CHECK(a.shape == b.shape, Shape, wa, " and ", wb, " must have the same shape, got ", shape_str(a.shape),
               " and ", shape_str(b.shape));
}
void check_shape(const Tensor& t, const Shape& s, const char* what) {
  VITRIM_CHECK(t.shape == s, Shape, what, " must have shape ", shape_str(s), ", got ", shape_str(t.shape));
}
void check_f32_cpu(const Tensor& t, const char* what) {
  check_cpu(t, what);
  check_dtype(t, DType::F32, what);
}

}  // namespace vitrim
