// Tensor core: contiguous, row-major tensors over reference-counted storage.
// A Tensor is a cheap value (shared_ptr to Storage + shape + dtype). Views exist only where they are
// free (reshape shares storage); every other layout change is an op that writes a new tensor.
// CPU storage is 64-byte aligned so SIMD kernels may use aligned loads on row starts of aligned rows.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vitrim/error.h"

namespace vitrim {

enum class DType : int { F32 = 0, BF16 = 1, I32 = 2 };
enum class Device : int { CPU = 0, CUDA = 1 };
using Shape = std::vector<int64_t>;

size_t dtype_size(DType d);
const char* dtype_name(DType d);
const char* device_name(Device d);
std::string shape_str(const Shape& s);

// Largest tensor we accept: guards against hostile sizes (e.g. from a corrupt file) turning into a
// huge allocation or an int64 overflow.
constexpr int64_t kMaxNumel = int64_t(1) << 40;
int64_t shape_numel(const Shape& s);  // validates dims >= 0 and the kMaxNumel bound

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  // Identity and write counter for caches derived from the data (linear_fused keeps packed copies
  // of weights): uid is unique for the process lifetime (a later storage at the same address gets
  // another; CUDA storages, made by the CUDA library, carry the top bit), and EVERY code path that
  // writes an existing storage's data in place must call mark_written() after the write (today:
  // adamw_step, index_add_rows, the gemm binding's C, and NativeTensor.write). test/linear-fused.test.ts
  // lists every native function as in place or not, so that a new one has to be classified.
  const uint64_t uid;
  std::atomic<uint64_t> version{0};
  void mark_written() { version.fetch_add(1, std::memory_order_acq_rel); }
  // Known bounds of an int32 storage's values, recorded by what produced them (a host upload or
  // write, full, topk: the bindings in native/napi) and valid only while `version` has not moved
  // since: an in-place write (mark_written) forgets them. Device-side index checks are skipped when
  // the bounds prove every index in range (cuda/common.cuh known_in_range), which saves the check
  // and its host synchronisation. `increasing`: the values are also strictly increasing, hence
  // distinct (index_add_rows' duplicate check). `host`: a host copy of the values (small uploads to
  // cuda), which ops that need them on the host (attention_varlen's cu_seqlens) read instead of a
  // copy back and its stream sync. Both are recorded and forgotten with the range.
  void set_int_range(int32_t lo, int32_t hi, bool increasing = false,
                     std::shared_ptr<const std::vector<int32_t>> host = nullptr) {
    range_lo_ = lo;
    range_hi_ = hi;
    range_increasing_ = increasing;
    range_host_ = std::move(host);
    range_stamp_ = version.load(std::memory_order_acquire) + 1;
  }
  bool int_increasing() const { return range_stamp_ == version.load(std::memory_order_acquire) + 1 && range_increasing_; }
  std::shared_ptr<const std::vector<int32_t>> int_host() const {
    return range_stamp_ == version.load(std::memory_order_acquire) + 1 ? range_host_ : nullptr;
  }
  // Known: every value lies in [0, 1] (no NaN), e.g. hard Gumbel decisions, step(), full(0.5), and
  // what concat / cast / copy make of such tensors (the bindings in native/napi record it). Valid
  // while `version` has not moved; the CUDA attention then skips its keep-range check and its sync.
  void set_unit_range() { unit_stamp_ = version.load(std::memory_order_acquire) + 1; }
  bool unit_range() const { return unit_stamp_ == version.load(std::memory_order_acquire) + 1; }
  // Provenance: this storage's data was computed from `src` (its uid and version at the time), e.g.
  // the lse that cross_entropy_forward returns alongside the loss. derived_from(src) holds while
  // neither storage has been written since, so a check of the pair can be skipped (the CUDA
  // cross-entropy backward, which otherwise recomputes and compares the lse on the device).
  void set_source(const Storage& src) {
    source_uid_ = src.uid;
    source_version_ = src.version.load(std::memory_order_acquire);
    source_stamp_ = version.load(std::memory_order_acquire) + 1;
  }
  bool derived_from(const Storage& src) const {
    return source_stamp_ == version.load(std::memory_order_acquire) + 1 && source_uid_ == src.uid &&
           source_version_ == src.version.load(std::memory_order_acquire);
  }
  bool int_range(int32_t& lo, int32_t& hi) const {
    if (range_stamp_ != version.load(std::memory_order_acquire) + 1) return false;
    lo = range_lo_;
    hi = range_hi_;
    return true;
  }
  // The allocator that made `data` gives it back through `release` (set by that allocator: the CPU
  // block cache in core/tensor.cpp, or the CUDA caching allocator inside libvitrim_cuda). Inline on
  // purpose: a Storage made in one binary may be dropped in the other.
  using Release = void (*)(void* data, size_t bytes);
  Storage(void* data_, size_t bytes_, Device device_, uint64_t uid_, Release release_)
      : data(data_), bytes(bytes_), device(device_), uid(uid_), release(release_) {}
  ~Storage() {
    if (release) release(data, bytes);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

 private:
  Release release;
  int32_t range_lo_ = 0, range_hi_ = -1;
  bool range_increasing_ = false;
  std::shared_ptr<const std::vector<int32_t>> range_host_;
  uint64_t range_stamp_ = 0;  // version + 1 when the range was recorded; 0: never
  uint64_t source_uid_ = 0, source_version_ = 0, source_stamp_ = 0;  // set_source; stamp 0: none
  uint64_t unit_stamp_ = 0;                                          // set_unit_range; 0: none
};

struct Tensor;

// Marks t's storage written when it goes out of scope (also when the write throws half way):
// declare one before writing an existing tensor in place.
struct MarkWritten {
  Storage* s;
  explicit MarkWritten(const Tensor& t);
  ~MarkWritten() {
    if (s) s->mark_written();
  }
  MarkWritten(const MarkWritten&) = delete;
  MarkWritten& operator=(const MarkWritten&) = delete;
};

struct Tensor {
  std::shared_ptr<Storage> storage;
  Shape shape;
  DType dtype = DType::F32;

  Device device() const { return storage ? storage->device : Device::CPU; }
  int64_t numel() const { return shape_numel(shape); }
  int64_t dim() const { return (int64_t)shape.size(); }
  int64_t size(int64_t i) const { return shape[i < 0 ? i + (int64_t)shape.size() : i]; }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype); }
  void* raw() const { return storage ? storage->data : nullptr; }
  float* f32() const { return static_cast<float*>(raw()); }
  int32_t* i32() const { return static_cast<int32_t*>(raw()); }
  uint16_t* bf16() const { return static_cast<uint16_t*>(raw()); }
  Tensor reshape(const Shape& s) const;  // view; numel must match
};

inline MarkWritten::MarkWritten(const Tensor& t) : s(t.storage.get()) {}

// Allocation (uninitialised / zero-filled) on the CPU, or on CUDA through the loaded CUDA backend
// (backend.h). Throws ErrorKind::Memory naming the request on failure, ErrorKind::Device when the
// device is not available.
Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
Tensor zeros(const Shape& shape, DType dtype, Device device = Device::CPU);

// Process-wide accounting, per device: live storages and bytes.
struct MemoryStats {
  int64_t live_tensors = 0;
  int64_t bytes_in_use = 0;
  int64_t bytes_cached = 0;
  int64_t host_pinned_bytes = 0;  // page-locked host memory kept for uploads (cuda)
};
MemoryStats memory_stats(Device d);
// Test hook: counts CPU tensor allocations; fail_from > 0 makes the fail_from-th one from now on and
// every later one fail (ErrorKind::Memory), 0 disarms. Returns the count since the previous call.
int64_t cpu_alloc_faults(int64_t fail_from);
// Returns cached (free) CPU blocks to the system (the CUDA cache: Backend::empty_cache).
void empty_cache();

// Argument checks shared by every op. `what` names the argument in the message.
void check_dtype(const Tensor& t, DType d, const char* what);
void check_cpu(const Tensor& t, const char* what);
// Storage present and on `d` (the message names the op's device).
void check_device(const Tensor& t, Device d, const char* what);
void check_rank(const Tensor& t, int64_t rank, const char* what);
void check_same_shape(const Tensor& a, const Tensor& b, const char* wa, const char* wb);
void check_shape(const Tensor& t, const Shape& s, const char* what);
// For an op on CPU float32 data: device, dtype and non-empty storage checks in one call.
void check_f32_cpu(const Tensor& t, const char* what);

}  // namespace vitrim
