// cast / copy / full on CUDA: the same names, signatures, validation and results as
// native/core/convert.cpp.
//
// cast: float32 <-> bfloat16 uses the CPU's bit formula (round to nearest even; a NaN stays a quiet NaN
//   with its top mantissa bits kept: (u >> 16) | 0x40), not __float2bfloat16_rn, so both devices give
//   the same bytes. int32 -> float32 is the usual round-to-nearest conversion, int32 -> bfloat16 goes
//   through float32 first (two roundings, as the CPU does). float -> int32 truncates; a value that is
//   not finite or outside [-2^31, 2^31) is ERR_VITRIM_ARGUMENT. That check runs in the kernel (it sets
//   a device flag and writes 0 instead), reported by check_flag (at once, or deferred, see
//   common.cuh); on a hit the input is copied to the host to name the first bad index and value in
//   the same message as the CPU (error path only).
// copy: one cudaMemcpyAsync device to device.
// full: the value is converted on the host exactly as the CPU does (float32: (float)value; bfloat16:
//   the formula above; int32: must be an integer in range, else ERR_VITRIM_ARGUMENT), then a fill
//   kernel writes its bit pattern (cudaMemsetAsync when the pattern is all zero bits).
//
// Kernels are flat grid-stride loops over 4-element packs (16-byte float32/int32 loads, 8-byte
// bfloat16 loads; every tensor starts at an allocation, so every pointer is aligned to its pack:
// check_pack_aligned), plus a scalar tail: these ops are
// memory bound and 4-byte-per-thread loads leave H100 bandwidth unused.
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common.cuh"

namespace vitrim::cuda {

namespace {

__host__ __device__ inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

__host__ __device__ inline float bf16_bits_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};
constexpr int kPack = 4;

// Element conversions. Storage types: float (float32), uint16_t (bfloat16 bits), int32_t.
__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(uint16_t v) { return bf16_bits_to_f32(v); }
__device__ __forceinline__ float load_f(int32_t v) { return (float)v; }

template <class D>
struct StoreCast;
template <>
struct StoreCast<float> {
  __device__ __forceinline__ static float conv(float v, int32_t*) { return v; }
};
template <>
struct StoreCast<uint16_t> {
  __device__ __forceinline__ static uint16_t conv(float v, int32_t*) { return f32_to_bf16_bits(v); }
};
template <>
struct StoreCast<int32_t> {
  __device__ __forceinline__ static int32_t conv(float v, int32_t* bad) {
    if (!(isfinite(v) && v < 2147483648.0f && v >= -2147483648.0f)) {
      atomicOr(bad, 1);  // several threads may find one at once: plain stores would race
      return 0;
    }
    return (int32_t)v;  // truncation toward zero
  }
};

// In packs of kPack (both pointers pack-aligned: check_pack_aligned), then a scalar tail.
template <class S, class D>
__global__ void cast_kernel(const S* __restrict__ x, D* __restrict__ y, int64_t n, int32_t* bad) {
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t np = n / kPack;
  const Pack<S, kPack>* xp = reinterpret_cast<const Pack<S, kPack>*>(x);
  Pack<D, kPack>* yp = reinterpret_cast<Pack<D, kPack>*>(y);
  for (int64_t p = tid; p < np; p += stride) {
    const Pack<S, kPack> a = xp[p];
    Pack<D, kPack> b;
#pragma unroll
    for (int k = 0; k < kPack; ++k) b.v[k] = StoreCast<D>::conv(load_f(a.v[k]), bad);
    yp[p] = b;
  }
  for (int64_t i = np * kPack + tid; i < n; i += stride) y[i] = StoreCast<D>::conv(load_f(x[i]), bad);
}

template <class S, class D>
void launch_cast(const Tensor& x, const Tensor& y, int32_t* bad) {
  const int64_t n = x.numel();
  const S* xs = static_cast<const S*>(x.raw());
  D* yd = static_cast<D*>(y.raw());
  check_pack_aligned({xs, yd}, "cast");
  cast_kernel<S, D><<<grid_for((n + kPack - 1) / kPack, 256), 256, 0, stream()>>>(xs, yd, n, bad);
  VITRIM_CUDA_LAUNCHED();
}

// x's dtype S to y's, which differs (cast() copies a same-dtype cast), so no S -> S kernel exists.
template <class S>
void launch_cast_from(const Tensor& x, const Tensor& y, int32_t* bad) {
  auto go = [&](auto dtag) {
    using D = decltype(dtag);
    if constexpr (std::is_same_v<S, D>) fail(ErrorKind::Internal, "cast: a same-dtype cast reached a kernel");
    else launch_cast<S, D>(x, y, bad);
  };
  switch (y.dtype) {
    case DType::F32: return go(float{});
    case DType::BF16: return go(uint16_t{});
    default: return go(int32_t{});
  }
}

// The first value of x that cannot become an int32 (host side, error path only): the CPU's message.
[[noreturn]] void fail_int_cast(const Tensor& x) {
  const int64_t n = x.numel();
  std::vector<uint8_t> h(x.nbytes());
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(h.data(), x.raw(), x.nbytes(), cudaMemcpyDeviceToHost, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  for (int64_t i = 0; i < n; ++i) {
    float v;
    if (x.dtype == DType::F32) {
      std::memcpy(&v, h.data() + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, h.data() + 2 * i, 2);
      v = bf16_bits_to_f32(b);
    }
    VITRIM_CHECK(std::isfinite(v) && v < 2147483648.0f && v >= -2147483648.0f, Argument, "cast to int32: value ", v,
                 " at index ", i, " is not representable");
  }
  fail(ErrorKind::Internal, "cast to int32: the device flagged a value the host finds representable");
}

template <class E>
__global__ void fill_kernel(E* __restrict__ y, int64_t n, E v) {
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t np = n / kPack;
  Pack<E, kPack> b;
#pragma unroll
  for (int k = 0; k < kPack; ++k) b.v[k] = v;
  Pack<E, kPack>* yp = reinterpret_cast<Pack<E, kPack>*>(y);
  for (int64_t p = tid; p < np; p += stride) yp[p] = b;
  for (int64_t i = np * kPack + tid; i < n; i += stride) y[i] = v;
}

template <class E>
void launch_fill(const Tensor& y, E v) {
  const int64_t n = y.numel();
  E* p = static_cast<E*>(y.raw());
  check_pack_aligned({p}, "fill");
  fill_kernel<E><<<grid_for((n + kPack - 1) / kPack, 256), 256, 0, stream()>>>(p, n, v);
  VITRIM_CUDA_LAUNCHED();
}

}  // namespace

Tensor copy(const Tensor& x) {
  check_cuda(x, "x");
  Tensor y = alloc(x.shape, x.dtype);
  if (x.nbytes()) VITRIM_CUDA_CHECK(cudaMemcpyAsync(y.raw(), x.raw(), x.nbytes(), cudaMemcpyDeviceToDevice, stream()));
  return y;
}

Tensor cast(const Tensor& x, DType to) {
  check_cuda(x, "x");
  VITRIM_CHECK(to == DType::F32 || to == DType::BF16 || to == DType::I32, Argument, "cast: unknown dtype");
  if (x.dtype == to) return cuda::copy(x);
  Tensor y = alloc(x.shape, to);
  if (x.numel() == 0) return y;
  DeviceFlag flag;
  int32_t* bad = nullptr;
  if (to == DType::I32) {
    flag = new_flag();
    bad = flag.ptr();
  }
  switch (x.dtype) {
    case DType::F32: launch_cast_from<float>(x, y, bad); break;
    case DType::BF16: launch_cast_from<uint16_t>(x, y, bad); break;
    default: launch_cast_from<int32_t>(x, y, bad); break;
  }
  if (bad) check_flag(flag, [x](const int32_t*) { fail_int_cast(x); });
  return y;
}

Tensor full(const Shape& shape, double value, DType dtype) {
  shape_numel(shape);  // validates the shape before anything else, as cpu::full's empty() does
  VITRIM_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::I32, Argument, "full: unknown dtype");
  uint32_t bits32 = 0;
  uint16_t bits16 = 0;
  if (dtype == DType::F32) {
    const float v = (float)value;
    std::memcpy(&bits32, &v, 4);
  } else if (dtype == DType::I32) {
    VITRIM_CHECK(value == std::floor(value) && value >= -2147483648.0 && value <= 2147483647.0, Argument, "full: ", value,
                 " is not an int32 value");
    const int32_t v = (int32_t)value;
    std::memcpy(&bits32, &v, 4);
  } else {
    bits16 = f32_to_bf16_bits((float)value);
  }
  Tensor y = alloc(shape, dtype);
  if (y.numel() == 0) return y;
  if (bits32 == 0 && bits16 == 0) {
    VITRIM_CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.nbytes(), stream()));
  } else if (dtype == DType::BF16) {
    launch_fill<uint16_t>(y, bits16);
  } else {
    launch_fill<uint32_t>(y, bits32);
  }
  return y;
}

VITRIM_CUDA_OP(cast);
VITRIM_CUDA_OP(copy);
VITRIM_CUDA_OP(full);

}  // namespace vitrim::cuda
