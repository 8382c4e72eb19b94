// The CUDA backend's runtime: the library entry point (vitrim_cuda_open), the device and its one
// stream, the caching allocator, host<->device copies and error mapping.
//
// Caching allocator: requests are rounded up (512 B granularity below 1 MiB, 2 MiB above) and a
// released block goes to a free list of its rounded size instead of cudaFree, so steady-state
// training and inference never call cudaMalloc (cudaMalloc/cudaFree synchronise the device). All
// work runs on one stream, so a block freed by the host while a kernel that uses it is still queued
// can be handed to the next op at once: that op is queued behind the kernel. On cudaMalloc failure
// the cache is freed (after a stream sync) and the allocation retried once; a second failure throws
// ErrorKind::Memory naming the request and the device's state. Known limitation: a free list per
// exact rounded size (no block splitting), so a workload whose shapes keep changing can hold more
// cached memory than it uses; emptyCache() gives it back.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.cuh"

#ifndef VITRIM_BUILD_ID
#define VITRIM_BUILD_ID "dev"
#endif

namespace vitrim::cuda {

namespace {
struct Runtime {
  int device = 0;
  int sms = 1;
  cudaStream_t stream = nullptr;
  cudaDeviceProp prop{};
};
Runtime& rt() {
  static Runtime* r = new Runtime();  // never destroyed: storages may be released during teardown
  return *r;
}

class Allocator {
 public:
  static size_t round(size_t n) {
    if (n == 0) n = 1;
    if (n < (1u << 20)) return (n + 511) / 512 * 512;
    return (n + (2u << 20) - 1) / (2u << 20) * (2u << 20);
  }
  void* take(size_t requested) {
    size_t cls = round(requested);
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        in_use_ += cls;
        live_++;
        return p;
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, cls);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the (non-sticky) error before retrying
      release_all();
      e = cudaMalloc(&p, cls);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      std::lock_guard<std::mutex> lk(mu_);
      fail(e == cudaErrorMemoryAllocation ? ErrorKind::Memory : ErrorKind::Internal, "out of memory allocating ",
           requested, " bytes on cuda (", cudaGetErrorString(e), "; vitrim holds ", in_use_, " bytes in use and ",
           cached_, " cached; the device has ", free_b, " of ", total_b, " bytes free)");
    }
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ += cls;
    live_++;
    return p;
  }
  void give(void* p, size_t requested) {
    size_t cls = round(requested);
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ -= cls;
    live_--;
    free_[cls].push_back(p);
    cached_ += cls;
  }
  void release_all() {
    // Blocks in the cache may still be read by queued kernels only until the stream drains.
    if (rt().stream) cudaStreamSynchronize(rt().stream);
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [cls, v] : free_)
      for (void* p : v) cudaFree(p);
    free_.clear();
    cached_ = 0;
  }
  MemoryStats stats() {
    std::lock_guard<std::mutex> lk(mu_);
    MemoryStats s;
    s.live_tensors = live_;
    s.bytes_in_use = (int64_t)in_use_;
    s.bytes_cached = (int64_t)cached_;
    return s;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0, in_use_ = 0;
  int64_t live_ = 0;
};
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

std::atomic<uint64_t> g_next_uid{1};

void release_cuda(void* p, size_t bytes) { allocator().give(p, bytes); }

void copy_from_host(const Tensor& dst, const void* src, size_t n) {
  check_cuda(dst, "destination");
  VITRIM_CHECK(n <= dst.nbytes(), Internal, "copy_from_host: ", n, " bytes into a ", dst.nbytes(), "-byte tensor");
  if (!n) return;
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src, n, cudaMemcpyHostToDevice, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_to_host(void* dst, const Tensor& src, size_t n) {
  check_cuda(src, "source");
  VITRIM_CHECK(n <= src.nbytes(), Internal, "copy_to_host: ", n, " bytes from a ", src.nbytes(), "-byte tensor");
  if (!n) return;
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst, src.raw(), n, cudaMemcpyDeviceToHost, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

std::string describe() {
  const cudaDeviceProp& p = rt().prop;
  int drv = 0, rtv = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rtv);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB; driver %d.%d, runtime %d.%d)", p.name, p.major,
                p.minor, p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024 * 1024), drv / 1000,
                (drv % 1000) / 10, rtv / 1000, (rtv % 1000) / 10);
  return buf;
}
}  // namespace

cudaStream_t stream() { return rt().stream; }
int sm_count() { return rt().sms; }

Tensor alloc(const Shape& shape, DType dtype) {
  size_t n = (size_t)shape_numel(shape) * dtype_size(dtype);
  void* p = allocator().take(n);
  Tensor t;
  t.shape = shape;
  t.dtype = dtype;
  try {
    t.storage = std::make_shared<Storage>(p, n, Device::CUDA, (uint64_t(1) << 63) | g_next_uid.fetch_add(1),
                                          &release_cuda);
  } catch (...) {
    release_cuda(p, n);
    throw;
  }
  return t;
}

void check_status(cudaError_t e, const char* expr, const char* file, int line) {
  if (e == cudaSuccess) return;
  const char* base = std::strrchr(file, '/');
  if (e == cudaErrorMemoryAllocation)
    fail(ErrorKind::Memory, "cuda: out of memory in ", expr, " (", base ? base + 1 : file, ":", line, ")");
  fail(ErrorKind::Internal, "cuda error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ", expr, " at ",
       base ? base + 1 : file, ":", line,
       (e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure
            ? "; the CUDA context is now unusable, restart the process"
            : ""));
}

void* scratch(size_t bytes) {
  static std::mutex mu;
  static void* p = nullptr;
  static size_t have = 0;
  std::lock_guard<std::mutex> lk(mu);
  if (bytes > have) {
    if (p) {
      VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
      cudaFree(p);
      p = nullptr;
      have = 0;
    }
    size_t n = bytes < 4096 ? 4096 : bytes;
    VITRIM_CUDA_CHECK(cudaMalloc(&p, n));
    VITRIM_CUDA_CHECK(cudaMemsetAsync(p, 0, n, stream()));
    have = n;
  }
  return p;
}

int32_t read_flag(int32_t* flag) {
  int32_t h = 0;
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(&h, flag, sizeof h, cudaMemcpyDeviceToHost, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (h) VITRIM_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof h, stream()));
  return h;
}

Backend& registry() {
  static Backend* b = new Backend();
  return *b;
}

// Defined in gemm.cu: creates the cuBLASLt handle (returns "" or why it failed) and the TF32 switch.
std::string gemm_init();
void set_allow_tf32(bool allow);

}  // namespace vitrim::cuda

// The library's one exported symbol (everything else is hidden).
extern "C" __attribute__((visibility("default"))) const vitrim::Backend* vitrim_cuda_open(int abi,
                                                                                          const char* build_id,
                                                                                          char* why, size_t why_len) {
  using namespace vitrim;
  using namespace vitrim::cuda;
  auto say = [&](const std::string& s) {
    if (why && why_len) std::snprintf(why, why_len, "%s", s.c_str());
    return nullptr;
  };
  try {
    if (abi != kBackendAbi)
      return say("ABI " + std::to_string(abi) + " requested, this library has " + std::to_string(kBackendAbi) +
                 " (rebuild with `npm run build`)");
    if (!build_id || std::strcmp(build_id, VITRIM_BUILD_ID) != 0)
      return say(std::string("built separately from the addon (build ") + VITRIM_BUILD_ID + " vs " +
                 (build_id ? build_id : "?") + "); rebuild both with `npm run build`");
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice || n == 0) {
      cudaGetLastError();
      if (e == cudaErrorInsufficientDriver)
        return say("no NVIDIA driver, or one too old for this CUDA runtime (cudaErrorInsufficientDriver)");
      return say("no CUDA GPU is visible (" + std::string(e == cudaSuccess ? "0 devices" : cudaGetErrorName(e)) +
                 "; check CUDA_VISIBLE_DEVICES)");
    }
    if (e != cudaSuccess) return say(std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e));
    Runtime& r = rt();
    r.device = 0;
    if ((e = cudaSetDevice(0)) != cudaSuccess) return say(std::string("cudaSetDevice(0): ") + cudaGetErrorString(e));
    if ((e = cudaGetDeviceProperties(&r.prop, 0)) != cudaSuccess)
      return say(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e));
    r.sms = r.prop.multiProcessorCount;
    if ((e = cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking)) != cudaSuccess)
      return say(std::string("cudaStreamCreate: ") + cudaGetErrorString(e));
    std::string g = gemm_init();
    if (!g.empty()) return say(g);
    Backend& b = registry();
    b.abi = kBackendAbi;
    b.device = Device::CUDA;
    b.empty = &vitrim::cuda::alloc;
    b.copy_from_host = &copy_from_host;
    b.copy_to_host = &copy_to_host;
    b.synchronize = [] { VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream())); };
    b.memory_stats = [] { return allocator().stats(); };
    b.empty_cache = [] { allocator().release_all(); };
    b.describe = &describe;
    b.set_allow_tf32 = &vitrim::cuda::set_allow_tf32;
    return &b;
  } catch (const std::exception& ex) {
    return say(ex.what());
  }
}
