// Backends: one table of functions per device. The CPU table points at vitrim::cpu (ops.h); the CUDA
// table lives in libvitrim_cuda.so, which the addon dlopens on first use (core/backend_loader.cpp)
// and which fills it with vitrim::cuda functions of the SAME names and signatures (the member types
// are decltype(&cpu::op), so a CUDA op whose signature drifts from the CPU one does not compile).
//
// The two binaries are built together by one CMake run; the loader refuses a library whose ABI
// number or build id differs from the addon's, so sharing C++ types (Tensor, std::optional,
// std::tuple, vitrim::Error) across the boundary is safe. Ops dispatch on the device of their inputs
// (napi/dispatch.h); an op the CUDA table leaves null throws ErrorKind::Device naming it.
#pragma once
#include <string>
#include <vector>

#include "vitrim/ops.h"

namespace vitrim {

// Bumped whenever Backend's layout or the meaning of a member changes.
constexpr int kBackendAbi = 9;

// X(name) for every op a backend provides; each is decltype(&cpu::name).
#define VITRIM_BACKEND_OPS(X)                                                                               \
  X(cast) X(copy) X(full) X(binary) X(unary) X(unary_backward) X(affine) X(step) X(sum_to) X(reduce)         \
  X(sum_squares) X(permute) X(slice) X(slice_backward) X(concat) X(matmul) X(linear_forward) X(linear_fused)                 \
  X(linear_backward) X(layernorm_forward) X(layernorm_backward) X(softmax_forward) X(softmax_backward)       \
  X(attention_forward) X(attention_backward) X(attention_varlen_forward) X(gather_tokens) X(scatter_tokens)  \
  X(gather_rows) X(index_add_rows) X(cross_entropy_forward) X(cross_entropy_backward) X(topk) X(random)      \
  X(gumbel_sigmoid) X(gumbel_sigmoid_backward) X(gumbel_softmax) X(gumbel_softmax_backward) X(patchify)       \
  X(unpatchify) X(adamw_step) X(adamw_step_multi)

struct Backend {
  int abi = kBackendAbi;
  Device device = Device::CPU;
  // ---- memory and transfers ----
  Tensor (*empty)(const Shape& shape, DType dtype) = nullptr;  // uninitialised storage on this device
  // Copies nbytes between host memory and a tensor of this device (synchronous: on return the copy
  // is done and host memory may be reused). `dst`/`src` tensors must be at least nbytes long.
  void (*copy_from_host)(const Tensor& dst, const void* src, size_t nbytes) = nullptr;
  void (*copy_to_host)(void* dst, const Tensor& src, size_t nbytes) = nullptr;
  // Copies nbytes from one tensor of this device into another, in stream order (the host does not
  // wait; a graph capture records it). The two must not overlap unless they start at one address.
  void (*copy_device)(const Tensor& dst, const Tensor& src, size_t nbytes) = nullptr;
  void (*synchronize)() = nullptr;  // waits for all queued work; throws on a device-side error
  // Fences, for waiting off the JS thread (synchronizeAsync): fence_record marks the work queued so
  // far (throws during a graph capture); fence_wait blocks until that work is done and may run on
  // any thread (it touches no other state; throws vitrim::Error on a device error); fence_release
  // gives the fence back. check_deferred then throws a deferred device-side check's error, on the
  // thread that issues ops. Null on the CPU, whose ops finish before they return.
  void* (*fence_record)() = nullptr;
  void (*fence_wait)(void* fence) = nullptr;
  void (*fence_release)(void* fence) = nullptr;
  void (*check_deferred)() = nullptr;
  MemoryStats (*memory_stats)() = nullptr;
  void (*empty_cache)() = nullptr;  // gives cached blocks back to the driver
  // Fault injection for tests: with n > 0, the n-th tensor allocation on this device counted from
  // this call, and every later one, fails as out of memory (0 disarms). Returns the allocations
  // counted since the previous call.
  int64_t (*alloc_faults)(int64_t n) = nullptr;
  // A line for `vitrim info` / backends(): GPU name, compute capability, memory, versions.
  std::string (*describe)() = nullptr;
  // TF32 for float32 GEMMs (off by default: float32 results then match the CPU to 1e-5).
  void (*set_allow_tf32)(bool allow) = nullptr;
  // Device-side checks of indices and labels: at once (false, the default: one host sync per such
  // op) or at the next synchronising call (true: no sync per op; the error still surfaces before
  // any result can be read). Graph replays always defer.
  void (*set_deferred_checks)(bool deferred) = nullptr;
  // ---- graphs (CUDA only; null on the CPU) ----
  // Every op between capture_begin and capture_end is recorded, not run; capture_end returns a
  // graph id whose replay re-runs the recorded work on the same memory. Tensors allocated during
  // the capture come from a pool private to the graph (kept until graph_destroy); the caller must
  // keep the capture's input and output tensors alive while it replays. An op that synchronises the
  // host (device-side index checks, copies to the host) cannot be captured: it throws and the
  // capture is abandoned (capture_end then throws too; capture_abort cleans up).
  void (*capture_begin)() = nullptr;
  int64_t (*capture_end)() = nullptr;
  void (*capture_abort)() = nullptr;
  void (*graph_replay)(int64_t id) = nullptr;
  void (*graph_destroy)(int64_t id) = nullptr;
  // What the graph holds: all its nodes, and its kernel nodes (the launches a replay makes).
  void (*graph_stats)(int64_t id, int64_t* nodes, int64_t* kernels) = nullptr;
  // ---- ops (ops.h) ----
#define VITRIM_BACKEND_MEMBER(name) decltype(&cpu::name) name = nullptr;
  VITRIM_BACKEND_OPS(VITRIM_BACKEND_MEMBER)
#undef VITRIM_BACKEND_MEMBER
};

// The backend for `d`. CPU always exists; for CUDA the first call loads libvitrim_cuda and this
// throws ErrorKind::Device with every reason it is unavailable.
const Backend& backend(Device d);
// The backend for `d` if it is loaded and usable, else nullptr (never loads, never throws).
const Backend* loaded_backend(Device d);

// What backends() reports: for each device, whether it is available and, if not, why (every
// attempt and its error, sharp-style).
struct BackendStatus {
  Device device;
  bool available = false;
  std::string detail;                // describe() when available
  std::vector<std::string> reasons;  // why not, one line per attempt
};
std::vector<BackendStatus> backend_status();  // loads the CUDA backend if not tried yet

// The symbol libvitrim_cuda.so exports. Returns the table, or nullptr with `why` filled.
// `build_id` must equal the library's VITRIM_BUILD_ID.
using CudaOpenFn = const Backend* (*)(int abi, const char* build_id, char* why, size_t why_len);
#define VITRIM_CUDA_OPEN_SYMBOL "vitrim_cuda_open"

}  // namespace vitrim
