// Shared by every file of the CUDA backend (libvitrim_cuda.so). The backend implements the ops of
// ops.h under namespace vitrim::cuda with the SAME names and signatures as vitrim::cpu (Tensor in,
// Tensor out); each family file registers its functions in the backend table with
// VITRIM_CUDA_OP(name), which the type of Backend::name checks against the CPU signature.
//
// Conventions:
// - One device (the first visible one) and one stream, stream(): every kernel and copy goes there,
//   so freeing a tensor and reusing its block for the next op is ordered without events.
// - Tensors are allocated with cuda::alloc (the caching allocator in runtime.cu): no cudaMalloc in
//   the steady state.
// - Floating point ops take float32 or bfloat16 (bf16 storage, fp32 accumulation); index tensors
//   are int32. Validate every argument on the host before launching (device, dtype, shape, ranges
//   that are known on the host); an index that lives on the device is bounds-checked in the kernel
//   and never dereferenced out of range (see the family files for how each reports it).
// - After every launch: VITRIM_CUDA_LAUNCHED() (throws on a bad configuration). Asynchronous faults
//   surface at the next synchronising call as ErrorKind::Internal.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <initializer_list>

#include "vitrim/backend.h"

namespace vitrim::cuda {

using bf16 = __nv_bfloat16;

// ---- runtime (runtime.cu) ----
cudaStream_t stream();
// A new uninitialised tensor on the device (the caching allocator). Named alloc, not empty: with ADL an
// unqualified empty(shape, dtype) would be ambiguous with vitrim::empty.
Tensor alloc(const Shape& shape, DType dtype);
int sm_count();
// A code-path switch read from the environment at each call (the bench and the tests pick a path per
// call): the index of its value in `choices`, or `dflt` where it is unset or empty. Any other value
// is an ArgumentError listing the choices, so a misspelt switch never silently runs the default.
int env_choice(const char* name, std::initializer_list<const char*> choices, int dflt);
// Every CUDA tensor's data starts at a block of the caching allocator (tensors have no storage
// offset; cudaMalloc aligns to 256 bytes), so the flat kernels (elementwise maps, casts, fills) read
// and write 16-byte packs with no unaligned variant. Checked here, an Internal error if it ever
// stops holding, rather than assumed.
void check_pack_aligned(std::initializer_list<const void*> ptrs, const char* op);
// Whether a kernel whose largest index or offset is below `hi` may use 32-bit index arithmetic:
// hi < 2^31. VITRIM_CUDA_INDEX64=1 (read at each call) answers false, so that the 64-bit
// instantiations, which otherwise run only on tensors past 2^31 elements, are checked by the tests
// on small tensors (the emulation included).
bool index32(int64_t hi);
// Throws vitrim::Error for a failed CUDA call: Memory for cudaErrorMemoryAllocation, else Internal
// (with the call and the place). `expr` is the code text of the call.
void check_status(cudaError_t e, const char* expr, const char* file, int line);
#define VITRIM_CUDA_CHECK(expr) ::vitrim::cuda::check_status((expr), #expr, __FILE__, __LINE__)
#define VITRIM_CUDA_LAUNCHED() ::vitrim::cuda::check_status(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// ---- device-side checks (indices, labels: data the host cannot see without a sync) ----
// A launch that validates device data gets a fresh zeroed flag (`words` int32 on the device),
// writes non-zero words when it meets bad data (never dereferencing it), and the host passes the
// flag to check_flag with a function that turns the words into the op's error (it must throw).
// In 'immediate' mode (the default) check_flag synchronises and checks at once. In 'deferred' mode
// (set_deferred_checks, and always inside a graph capture, where a sync is impossible) the check
// runs at the next synchronising call: a read of any cuda tensor, synchronize(), a copy to the
// host. So an error still surfaces before anyone can see a result, without a sync per op. The
// function may read the op's tensors (it holds copies of the Tensors it captures).
struct DeviceFlag {
  Tensor mem;
  int words = 0;
  int32_t* ptr() const { return static_cast<int32_t*>(mem.raw()); }
};
DeviceFlag new_flag(int words = 1);
void check_flag(const DeviceFlag& flag, std::function<void(const int32_t* words)> on_error);
// The same, always at once (for an op that must not write before its check passed).
void check_flag_now(const DeviceFlag& flag, std::function<void(const int32_t* words)> on_error);
// Runs the deferred checks now (synchronises); throws the first error in launch order.
void check_pending();
// True when idx's values are known (Storage::int_range: set by host uploads and writes, full, topk)
// to lie in [lo, hi] and no graph is being captured (a replay may follow a write() of bad values,
// and then the captured check is the only guard). An op may then launch without a flag and skip the
// check and its host sync; its kernel still never dereferences an index outside the range.
bool known_in_range(const Tensor& idx, int64_t lo, int64_t hi);
// known_in_range, and the values strictly increasing (so distinct): recorded by a host upload.
bool known_increasing_in_range(const Tensor& idx, int64_t lo, int64_t hi);
// The values of a small int32 cuda tensor as the host uploaded them (null when not known, or while
// a graph is recorded: a replay would read whatever the tensor then holds).
std::shared_ptr<const std::vector<int32_t>> known_host_ints(const Tensor& t);
// True when `derived`'s data is known to have been computed from `source` as it is now
// (Storage::derived_from) and no graph is being captured (for the same reason as above).
bool known_derived(const Tensor& derived, const Tensor& source);
// True when every value of `t` is known to lie in [0, 1] (Storage::unit_range) and no graph is
// being captured.
bool known_unit_range(const Tensor& t);
void set_deferred_checks(bool on);

// ---- argument checks ----
inline void check_cuda(const Tensor& t, const char* what) { check_device(t, Device::CUDA, what); }
// On cuda and float32 or bfloat16.
inline void check_float_cuda(const Tensor& t, const char* what) {
  check_cuda(t, what);
  VITRIM_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16, DType, what,
               " must be float32 or bfloat16 on cuda, got ", dtype_name(t.dtype));
}

// ---- registration ----
Backend& registry();
struct Register {
  explicit Register(void (*fn)(Backend&)) { fn(registry()); }
};
#define VITRIM_CUDA_OP(name)                                                    \
  static ::vitrim::cuda::Register vitrim_cuda_reg_##name([](::vitrim::Backend& b) { \
    b.name = &::vitrim::cuda::name;                                             \
  })

// Exact-erf GELU, x Phi(x) = x erfc(-x/sqrt2)/2 (erfc: no cancellation in the negative tail, where
// 1 + erf would lose the digits): the elementwise op and every GEMM epilogue share it.
__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * erfcf(-x * 0.70710678118654752440f); }

// ---- element access: bf16 is stored, fp32 is computed ----
__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls f(T{}) with T = float or bf16 for a floating dtype; throws DType for anything else.
template <class F>
void dispatch_float(DType d, const char* what, F&& f) {
  if (d == DType::F32) return f(float{});
  if (d == DType::BF16) return f(bf16{});
  fail(ErrorKind::DType, what, " must be float32 or bfloat16, got ", dtype_name(d));
}

template <class T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw());
}

// Grid size for a grid-stride loop over n items: enough blocks to fill the GPU a few times over.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  int64_t cap = (int64_t)sm_count() * 32;
  if (blocks > cap) blocks = cap;
  return (unsigned)(blocks < 1 ? 1 : blocks);
}

}  // namespace vitrim::cuda
