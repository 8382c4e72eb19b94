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
#include <cstdlib>
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
    const int64_t nth = count_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (const int64_t from = fail_from_.load(std::memory_order_relaxed); from > 0 && nth >= from)
      fail(ErrorKind::Memory, "out of memory allocating ", requested, " bytes on cuda (injected: allocation ", nth,
           ", failing from ", from, ")");
    size_t cls = round(requested);
    int64_t graph = 0;
    {
      std::lock_guard<std::mutex> lk(mu_);
      graph = capturing_;
      if (graph) {  // a capture first reuses its own freed blocks (ordered within the graph)
        if (void* p = pop(pools_[graph], cls)) return took(p, cls, cls);
      }
      if (void* p = pop(free_, cls)) {
        if (graph) owner_[p] = graph;
        return took(p, cls, cls);
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, cls);
    if (e == cudaErrorMemoryAllocation && !graph) {  // no sync/free is allowed inside a capture
      cudaGetLastError();  // clear the (non-sticky) error before retrying
      release_all();
      e = cudaMalloc(&p, cls);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      std::lock_guard<std::mutex> lk(mu_);
      // The JS GC does not see device memory: tensors dropped without dispose() (and the graphs of
      // forwards run with gradients but never backward) hold theirs until it runs. Say so.
      fail(e == cudaErrorMemoryAllocation ? ErrorKind::Memory : ErrorKind::Internal, "out of memory allocating ",
           requested, " bytes on cuda (", cudaGetErrorString(e), "; vitrim holds ", in_use_, " bytes in use by ",
           live_, " blocks and ", cached_, " cached; the device has ", free_b, " of ", total_b,
           " bytes free). Tensors dropped without dispose() keep their device memory until the JS garbage "
           "collector runs: scope work in tidy(), dispose() what you no longer need, and run inference "
           "under noGrad()");
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (graph) owner_[p] = graph;
    return took(p, cls, 0);
  }
  void give(void* p, size_t requested) {
    size_t cls = round(requested);
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ -= cls;
    live_--;
    cached_ += cls;
    auto it = owner_.find(p);
    if (it != owner_.end()) pools_[it->second][cls].push_back(p);  // stays reserved for its graph
    else free_[cls].push_back(p);
  }
  // Fault injection (Backend::alloc_faults): see backend.h. One relaxed load per take when unarmed.
  int64_t faults(int64_t from) {
    VITRIM_CHECK(from >= 0, Argument, "allocFaults: n must be >= 0, got ", from);
    const int64_t counted = count_.exchange(0);
    fail_from_.store(from);
    return counted;
  }
  // Gives the global cache back to the driver; graph pools stay (their graphs still use them).
  void release_all() {
    // Blocks in the cache may still be read by queued kernels only until the stream drains.
    if (rt().stream) cudaStreamSynchronize(rt().stream);
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [cls, v] : free_)
      for (void* p : v) {
        cudaFree(p);
        cached_ -= cls;
      }
    free_.clear();
  }
  MemoryStats stats() {
    std::lock_guard<std::mutex> lk(mu_);
    MemoryStats s;
    s.live_tensors = live_;
    s.bytes_in_use = (int64_t)in_use_;
    s.bytes_cached = (int64_t)cached_;
    return s;
  }
  // ---- graph capture pools ----
  void begin_capture(int64_t graph) {
    std::lock_guard<std::mutex> lk(mu_);
    capturing_ = graph;
    pools_[graph];
  }
  void end_capture() {
    std::lock_guard<std::mutex> lk(mu_);
    capturing_ = 0;
  }
  // The graph is gone: its free blocks go to the global cache and its live blocks (tensors the
  // caller still holds) return there when freed.
  void drop_graph(int64_t graph) {
    std::lock_guard<std::mutex> lk(mu_);
    auto pit = pools_.find(graph);
    if (pit != pools_.end()) {
      for (auto& [cls, v] : pit->second)
        for (void* p : v) free_[cls].push_back(p);
      pools_.erase(pit);
    }
    for (auto it = owner_.begin(); it != owner_.end();) {
      if (it->second == graph) it = owner_.erase(it);
      else ++it;
    }
  }

 private:
  using FreeLists = std::unordered_map<size_t, std::vector<void*>>;
  static void* pop(FreeLists& f, size_t cls) {
    auto it = f.find(cls);
    if (it == f.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    return p;
  }
  void* took(void* p, size_t cls, size_t from_cache) {  // with mu_ held
    cached_ -= from_cache;
    in_use_ += cls;
    live_++;
    return p;
  }
  std::mutex mu_;
  FreeLists free_;
  std::unordered_map<int64_t, FreeLists> pools_;  // graph id -> its free blocks
  std::unordered_map<void*, int64_t> owner_;      // block -> graph id, for blocks a graph owns
  int64_t capturing_ = 0;
  size_t cached_ = 0, in_use_ = 0;
  int64_t live_ = 0;
  std::atomic<int64_t> count_{0}, fail_from_{0};  // fault injection (faults())
};
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

std::atomic<uint64_t> g_next_uid{1};

void release_cuda(void* p, size_t bytes) { allocator().give(p, bytes); }

// Host staging for uploads. The caller's bytes (a JS typed array: pageable, and free to change once
// the call returns) are copied into a pinned block and the DMA from that block is queued on the
// stream, so an upload neither waits for the work queued ahead of it (a pageable copy of this size
// or a stream sync would) nor lets the host run ahead of a copy that still reads the caller's memory.
// A block is reused once the event recorded after its copy has completed. Blocks are powers of two
// from 64 KiB; at most kStagingCap bytes are pinned, beyond which the pool waits for its copies and
// starts over. A request above kStagingMax, or pinned memory the driver refuses, takes the old path:
// a pageable copy and a stream sync.
class HostStaging {
 public:
  static constexpr size_t kStagingMax = size_t(256) << 20;
  static constexpr size_t kStagingCap = size_t(1) << 30;

  // Queues the copy of n bytes from src to the device pointer dst; false when it was not staged.
  bool upload(void* dst, const void* src, size_t n) {
    if (n > kStagingMax) return false;
    std::lock_guard<std::mutex> lk(mu_);
    Block* b = acquire(n);
    if (!b) return false;
    std::memcpy(b->p, src, n);
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst, b->p, n, cudaMemcpyHostToDevice, stream()));
    VITRIM_CUDA_CHECK(cudaEventRecord(b->done, stream()));
    b->pending = true;
    return true;
  }
  // Waits for the queued copies and gives every block back to the driver (emptyCache).
  void release_all() {
    std::lock_guard<std::mutex> lk(mu_);
    drain();
  }
  size_t pinned() {
    std::lock_guard<std::mutex> lk(mu_);
    return total_;
  }

 private:
  struct Block {
    void* p = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  static size_t round(size_t n) {
    size_t b = size_t(64) << 10;
    while (b < n) b <<= 1;
    return b;
  }
  // The smallest idle block that fits, else a new one; with mu_ held.
  Block* acquire(size_t n) {
    Block* best = nullptr;
    for (Block& b : blocks_) {
      if (b.bytes < n || (best && best->bytes <= b.bytes)) continue;
      if (b.pending) {
        cudaError_t q = cudaEventQuery(b.done);
        if (q == cudaErrorNotReady) continue;  // any other answer: the copy is over (or the stream failed,
                                               // which the next sync reports)
        b.pending = false;
      }
      best = &b;
    }
    if (best) return best;
    size_t want = round(n);
    if (total_ + want > kStagingCap) drain();
    Block b;
    b.bytes = want;
    if (cudaHostAlloc(&b.p, want, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    if (cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      cudaFreeHost(b.p);
      return nullptr;
    }
    total_ += want;
    blocks_.push_back(b);
    return &blocks_.back();
  }
  void drain() {
    for (Block& b : blocks_) {
      if (b.pending) cudaEventSynchronize(b.done);
      cudaEventDestroy(b.done);
      cudaFreeHost(b.p);
    }
    blocks_.clear();
    total_ = 0;
  }
  std::mutex mu_;
  std::vector<Block> blocks_;
  size_t total_ = 0;
};
HostStaging& staging() {
  static HostStaging* s = new HostStaging();
  return *s;
}

bool capture_in_progress();

void copy_from_host(const Tensor& dst, const void* src, size_t n) {
  check_cuda(dst, "destination");
  VITRIM_CHECK(n <= dst.nbytes(), Internal, "copy_from_host: ", n, " bytes into a ", dst.nbytes(), "-byte tensor");
  if (!n) return;
  // Refused before touching the stream, so the capture in progress stays usable.
  VITRIM_CHECK(!capture_in_progress(), Argument,
               "cannot copy host data to cuda while a graph is being recorded: upload before graphBegin(), or "
               "write() into a captured input between replays");
  if (staging().upload(dst.raw(), src, n)) return;
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src, n, cudaMemcpyHostToDevice, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_to_host(void* dst, const Tensor& src, size_t n) {
  check_cuda(src, "source");
  VITRIM_CHECK(n <= src.nbytes(), Internal, "copy_to_host: ", n, " bytes from a ", src.nbytes(), "-byte tensor");
  if (!n) return;
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst, src.raw(), n, cudaMemcpyDeviceToHost, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  check_pending();  // a deferred device-side error must surface before the data is used
}

void copy_device(const Tensor& dst, const Tensor& src, size_t n) {
  check_cuda(dst, "destination");
  check_cuda(src, "source");
  VITRIM_CHECK(n <= dst.nbytes() && n <= src.nbytes(), Internal, "copy_device: ", n, " bytes between tensors of ",
               src.nbytes(), " and ", dst.nbytes(), " bytes");
  if (!n || dst.raw() == src.raw()) return;
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), n, cudaMemcpyDeviceToDevice, stream()));
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

int env_choice(const char* name, std::initializer_list<const char*> choices, int dflt) {
  const char* e = std::getenv(name);
  if (!e || !*e) return dflt;
  int i = 0;
  std::string list;
  for (const char* c : choices) {
    if (std::strcmp(e, c) == 0) return i;
    list += (i++ ? ", " : "") + std::string("'") + c + "'";
  }
  fail(ErrorKind::Argument, name, " must be one of ", list, " (or unset), got '", e, "'");
}

void check_pack_aligned(std::initializer_list<const void*> ptrs, const char* op) {
  for (const void* p : ptrs)
    VITRIM_CHECK(((uintptr_t)p % 16) == 0, Internal, op, ": tensor data at ", p,
                 " is not 16-byte aligned (every tensor should start at an allocation)");
}

bool index32(int64_t hi) {
  return hi < (int64_t(1) << 31) && env_choice("VITRIM_CUDA_INDEX64", {"0", "1"}, 0) == 0;
}

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

// ---- device-side checks ----
namespace {
struct PendingCheck {
  DeviceFlag flag;
  std::function<void(const int32_t*)> on_error;
};
struct Checks {
  std::mutex mu;
  bool deferred = false;
  bool running = false;                 // check_pending is running the error functions
  std::vector<PendingCheck> pending;    // deferred checks, in launch order
  std::vector<PendingCheck> capturing;  // checks recorded by the capture in progress
  std::unordered_map<int64_t, std::vector<PendingCheck>> graphs;  // graph id -> its checks
};
Checks& checks() {
  static Checks* c = new Checks();
  return *c;
}
bool capture_in_progress();

// Copies the flag to the host (synchronises) and, if any word is set, runs the error function.
void run_check(const PendingCheck& p) {
  std::vector<int32_t> h((size_t)p.flag.words, 0);
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(h.data(), p.flag.ptr(), h.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                    stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  for (int32_t w : h)
    if (w) {
      p.on_error(h.data());
      fail(ErrorKind::Internal, "a device-side check failed without an error message");
    }
}
}  // namespace

DeviceFlag new_flag(int words) {
  VITRIM_CHECK(words >= 1 && words <= 64, Internal, "new_flag: bad word count ", words);
  DeviceFlag f;
  f.words = words;
  f.mem = cuda::alloc({words}, DType::I32);  // inside a capture: from the graph's pool
  VITRIM_CUDA_CHECK(cudaMemsetAsync(f.mem.raw(), 0, (size_t)words * sizeof(int32_t), stream()));
  return f;
}

void check_flag(const DeviceFlag& flag, std::function<void(const int32_t*)> on_error) {
  Checks& C = checks();
  PendingCheck p{flag, std::move(on_error)};
  bool now = false, flush = false;
  {
    std::lock_guard<std::mutex> lk(C.mu);
    if (capture_in_progress()) {
      C.capturing.push_back(std::move(p));
      return;
    }
    if (C.deferred) {
      C.pending.push_back(std::move(p));
      flush = C.pending.size() > 1024;  // bound what a loop without reads keeps alive
    } else {
      now = true;
    }
  }
  if (now) run_check(p);
  if (flush) check_pending();
}

void check_flag_now(const DeviceFlag& flag, std::function<void(const int32_t*)> on_error) {
  run_check(PendingCheck{flag, std::move(on_error)});
}

void check_pending() {
  Checks& C = checks();
  std::vector<PendingCheck> due;
  {
    std::lock_guard<std::mutex> lk(C.mu);
    if (C.running || C.pending.empty()) return;
    due.swap(C.pending);
    C.running = true;
  }
  struct Done {
    Checks& c;
    ~Done() {
      std::lock_guard<std::mutex> lk(c.mu);
      c.running = false;
    }
  } done{C};
  for (const PendingCheck& p : due) run_check(p);  // the first error throws; the rest are dropped
}

void set_deferred_checks(bool on) {
  if (!on) check_pending();
  std::lock_guard<std::mutex> lk(checks().mu);
  checks().deferred = on;
}


// ---- fences (synchronizeAsync) ----
// Events from a small free list; BlockingSync so that the waiting thread sleeps instead of spinning
// a core for the length of the queued work, DisableTiming because only completion matters.
namespace {
struct Fences {
  std::mutex mu;
  std::vector<cudaEvent_t> free;
};
Fences& fences() {
  static Fences* f = new Fences();
  return *f;
}
bool capture_in_progress();

void* fence_record() {
  VITRIM_CHECK(!capture_in_progress(), Argument,
               "synchronizeAsync: cannot wait while a graph is being recorded (end or abort the capture first)");
  cudaEvent_t ev = nullptr;
  {
    std::lock_guard<std::mutex> lk(fences().mu);
    if (!fences().free.empty()) {
      ev = fences().free.back();
      fences().free.pop_back();
    }
  }
  if (!ev) VITRIM_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventBlockingSync));
  cudaError_t e = cudaEventRecord(ev, stream());
  if (e != cudaSuccess) {
    cudaEventDestroy(ev);
    check_status(e, "cudaEventRecord", __FILE__, __LINE__);
  }
  return ev;
}

void fence_wait(void* f) {
  cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(f));
  if (e != cudaSuccess) check_status(e, "cudaEventSynchronize", __FILE__, __LINE__);
}

void fence_release(void* f) {
  std::lock_guard<std::mutex> lk(fences().mu);
  fences().free.push_back(static_cast<cudaEvent_t>(f));
}
}  // namespace

// ---- CUDA graphs ----
namespace {
struct Graphs {
  std::mutex mu;
  int64_t next = 1;
  std::atomic<int64_t> capturing{0};
  struct Entry {
    cudaGraphExec_t exec;
    int64_t nodes, kernels;  // what the graph holds (graph_stats)
  };
  std::unordered_map<int64_t, Entry> execs;
};
Graphs& graphs() {
  static Graphs* g = new Graphs();
  return *g;
}

void capture_begin() {
  Graphs& G = graphs();
  std::lock_guard<std::mutex> lk(G.mu);
  VITRIM_CHECK(G.capturing == 0, Argument, "a graph capture is already in progress");
  int64_t id = G.next++;
  allocator().begin_capture(id);
  // Relaxed: the allocator may cudaMalloc while the stream is captured.
  cudaError_t e = cudaStreamBeginCapture(stream(), cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    cudaGetLastError();
    allocator().end_capture();
    allocator().drop_graph(id);
    check_status(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
  }
  G.capturing = id;
  std::lock_guard<std::mutex> ck(checks().mu);
  checks().capturing.clear();
}

}  // namespace

bool known_in_range(const Tensor& idx, int64_t lo, int64_t hi) {
  int32_t a, b;
  if (idx.dtype != DType::I32 || !idx.storage || !idx.storage->int_range(a, b)) return false;
  return graphs().capturing == 0 && (a > b || (a >= lo && b <= hi));
}

bool known_increasing_in_range(const Tensor& idx, int64_t lo, int64_t hi) {
  return known_in_range(idx, lo, hi) && idx.storage->int_increasing();
}

std::shared_ptr<const std::vector<int32_t>> known_host_ints(const Tensor& t) {
  if (t.dtype != DType::I32 || !t.storage || graphs().capturing != 0) return nullptr;
  auto h = t.storage->int_host();
  if (!h || (int64_t)h->size() != t.numel()) return nullptr;  // (a reshape shares the storage)
  return h;
}

bool known_unit_range(const Tensor& t) {
  return graphs().capturing == 0 && t.storage && t.storage->unit_range();
}

bool known_derived(const Tensor& derived, const Tensor& source) {
  return graphs().capturing == 0 && derived.storage && source.storage &&
         derived.storage->derived_from(*source.storage);
}

namespace {
bool capture_in_progress() {
  // Called with checks().mu held; reads the graph state without its lock (set/cleared only by the
  // thread that captures, which is the thread issuing the ops).
  return graphs().capturing != 0;
}

// Ends the capture; returns the instantiated graph or throws (the pool is dropped on failure).
int64_t capture_end() {
  Graphs& G = graphs();
  std::lock_guard<std::mutex> lk(G.mu);
  VITRIM_CHECK(G.capturing != 0, Argument, "no graph capture is in progress");
  int64_t id = G.capturing.load();
  G.capturing = 0;
  cudaGraph_t g = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream(), &g);
  allocator().end_capture();
  cudaGraphExec_t exec = nullptr;
  std::pair<int64_t, int64_t> counts{0, 0};
  if (e == cudaSuccess && g) {
    // The counts are informational: a failure leaves them 0 (and its error is cleared).
    size_t n = 0;
    bool ok = cudaGraphGetNodes(g, nullptr, &n) == cudaSuccess;
    std::vector<cudaGraphNode_t> nodes(n);
    if (ok && n) ok = cudaGraphGetNodes(g, nodes.data(), &n) == cudaSuccess;
    for (size_t i = 0; ok && i < n; ++i) {
      cudaGraphNodeType t;
      ok = cudaGraphNodeGetType(nodes[i], &t) == cudaSuccess;
      if (ok && t == cudaGraphNodeTypeKernel) ++counts.second;
    }
    if (ok) counts.first = (int64_t)n;
    else {
      counts = {0, 0};
      cudaGetLastError();
    }
    e = cudaGraphInstantiate(&exec, g, 0);
  }
  if (g) cudaGraphDestroy(g);
  if (e != cudaSuccess || !exec) {
    cudaGetLastError();
    allocator().drop_graph(id);
    fail(ErrorKind::Argument, "the graph capture failed (", cudaGetErrorString(e),
         "): an op in the captured region synchronises with the host (device-side index checks, reads, host "
         "copies) or the work is not capturable");
  }
  G.execs[id] = {exec, counts.first, counts.second};
  {
    std::lock_guard<std::mutex> ck(checks().mu);
    checks().graphs[id].swap(checks().capturing);
    checks().capturing.clear();
  }
  return id;
}

void capture_abort() {
  Graphs& G = graphs();
  std::lock_guard<std::mutex> lk(G.mu);
  if (!G.capturing) return;
  int64_t id = G.capturing.load();
  G.capturing = 0;
  cudaGraph_t g = nullptr;
  cudaStreamEndCapture(stream(), &g);
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();
  allocator().end_capture();
  allocator().drop_graph(id);
  std::lock_guard<std::mutex> ck(checks().mu);
  checks().capturing.clear();
}

void graph_replay(int64_t id) {
  Graphs& G = graphs();
  cudaGraphExec_t exec;
  {
    std::lock_guard<std::mutex> lk(G.mu);
    VITRIM_CHECK(G.capturing == 0, Argument, "cannot replay a graph while capturing another");
    auto it = G.execs.find(id);
    VITRIM_CHECK(it != G.execs.end(), Argument, "no graph with id ", id, " (destroyed?)");
    exec = it->second.exec;
  }
  VITRIM_CUDA_CHECK(cudaGraphLaunch(exec, stream()));
  // The replay's device-side checks run at the next synchronising call (a replay never waits).
  std::lock_guard<std::mutex> ck(checks().mu);
  auto it = checks().graphs.find(id);
  if (it != checks().graphs.end())
    for (const PendingCheck& p : it->second) checks().pending.push_back(p);
}

void graph_stats(int64_t id, int64_t* nodes, int64_t* kernels) {
  Graphs& G = graphs();
  std::lock_guard<std::mutex> lk(G.mu);
  auto it = G.execs.find(id);
  VITRIM_CHECK(it != G.execs.end(), Argument, "no graph with id ", id, " (destroyed?)");
  *nodes = it->second.nodes;
  *kernels = it->second.kernels;
}

void graph_destroy(int64_t id) {
  Graphs& G = graphs();
  std::lock_guard<std::mutex> lk(G.mu);
  auto it = G.execs.find(id);
  if (it == G.execs.end()) return;  // idempotent
  // Replays still queued read the pool: let them finish before its blocks go back to the cache.
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  cudaGraphExecDestroy(it->second.exec);
  G.execs.erase(it);
  {
    std::lock_guard<std::mutex> ck(checks().mu);
    checks().graphs.erase(id);
  }
  allocator().drop_graph(id);
}
}  // namespace

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
    b.copy_device = &copy_device;
    b.synchronize = [] {
      VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
      check_pending();
    };
    b.fence_record = &fence_record;
    b.fence_wait = &fence_wait;
    b.fence_release = &fence_release;
    b.check_deferred = [] { check_pending(); };
    b.set_deferred_checks = &vitrim::cuda::set_deferred_checks;
    b.memory_stats = [] {
      MemoryStats s = allocator().stats();
      s.host_pinned_bytes = (int64_t)staging().pinned();
      return s;
    };
    b.empty_cache = [] {
      allocator().release_all();
      staging().release_all();
    };
    b.alloc_faults = [](int64_t n) { return allocator().faults(n); };
    b.describe = &describe;
    b.set_allow_tf32 = &vitrim::cuda::set_allow_tf32;
    b.capture_begin = &capture_begin;
    b.capture_end = &capture_end;
    b.capture_abort = &capture_abort;
    b.graph_replay = &graph_replay;
    b.graph_destroy = &graph_destroy;
    b.graph_stats = &graph_stats;
    return &b;
  } catch (const std::exception& ex) {
    return say(ex.what());
  }
}
