// Row-kernel helpers shared by the last-axis families (layernorm.cu, softmax.cu, loss.cu): 16-byte
// vector loads/stores that widen to / narrow from fp32, and warp / block reductions.
//
// Vector access is only legal on a 16-byte aligned address; callers prove that at run time (base
// pointer % 16 == 0 and row length * element size % 16 == 0, so every row start is aligned) and
// fall back to scalar access otherwise (vec_ok below).
#pragma once
#include <cstdint>
#include <type_traits>

#include "common.cuh"

namespace vitrim::cuda {

// Elements per 16-byte vector: 4 floats or 8 bf16.
template <class T>
constexpr int vec_width() {
  return 16 / (int)sizeof(T);
}

// Loads 16 bytes at p (16-byte aligned) as vec_width<T>() floats.
__device__ __forceinline__ void load_vec(const float* p, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load_vec(const bf16* p, float* out) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // Little-endian: the element at the lower address is the low half. bf16 -> f32 is exact: the
    // 16 bits are the high half of the float.
    out[2 * i] = __uint_as_float(w[i] << 16);
    out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
// Stores vec_width<T>() floats to p (16-byte aligned), rounding to bf16 (nearest even) for bf16.
__device__ __forceinline__ void store_vec(float* p, const float* in) {
  *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
}
__device__ __forceinline__ void store_vec(bf16* p, const float* in) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = __bfloat16_as_ushort(__float2bfloat16_rn(in[2 * i]));
    const uint32_t hi = __bfloat16_as_ushort(__float2bfloat16_rn(in[2 * i + 1]));
    w[i] = lo | (hi << 16);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

// Stores the V floats of one access at p (aligned to 16 bytes, or to V * sizeof(T) when that is
// less), converting to T: the widths a row kernel with different input and output dtypes meets
// (V = vec_width of the input: 4 floats to bf16 is one 8-byte store, 8 bf16 to floats two 16-byte
// stores) as well as the plain 16-byte store and the scalar one.
__device__ __forceinline__ void store_vec4(bf16* p, const float* in) {
  const uint32_t a = __bfloat16_as_ushort(__float2bfloat16_rn(in[0])) |
                     ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(in[1])) << 16);
  const uint32_t b = __bfloat16_as_ushort(__float2bfloat16_rn(in[2])) |
                     ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(in[3])) << 16);
  *reinterpret_cast<uint2*>(p) = make_uint2(a, b);
}
template <class T, int V>
__device__ __forceinline__ void store_access(T* p, const float* in) {
  constexpr int W = 16 / (int)sizeof(T);  // vec_width<T>(), declared below
  if constexpr (V == 1) {
    *p = from_f<T>(in[0]);
  } else if constexpr (V == W) {
    store_vec(p, in);
  } else if constexpr (V == 2 * W) {
    store_vec(p, in);
    store_vec(p + W, in + W);
  } else {
    static_assert(std::is_same_v<T, bf16> && V == 4, "store_access: unsupported width");
    store_vec4(p, in);
  }
}

// True when rows of `row_len` elements of `elem` bytes starting at p may be accessed with 16-byte
// vectors (null pointers, i.e. absent optional tensors, do not constrain).
inline bool vec_ok(const void* p, int64_t row_len, size_t elem) {
  return p == nullptr || (((uintptr_t)p % 16) == 0 && ((uint64_t)row_len * elem) % 16 == 0);
}

// Butterfly reductions over a full warp (every lane must call; every lane gets the result).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// max that propagates NaN (fmaxf drops it): a NaN anywhere in a row must reach the result, as on
// the CPU, where the max pass leaves NaN to poison Σexp.
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float warp_nan_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reductions for blockDim.x a multiple of 32 and at most 1024. Every thread of the block
// must call (they contain __syncthreads); every thread gets the result. `sh` is a __shared__
// float[32] owned by the caller; the trailing __syncthreads lets the caller reuse it at once.
// T is float or double (sh then a __shared__ T[32]).
template <class T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  T t = lane < nw ? sh[lane] : T(0);
  t = warp_sum(t);
  __syncthreads();
  return t;
}
__device__ __forceinline__ float block_nan_max(float v, float* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_nan_max(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float t = lane < nw ? sh[lane] : -INFINITY;
  t = warp_nan_max(t);
  __syncthreads();
  return t;
}

// ---- a row held in registers by one warp (rows of at most 32 * 32 = 1024 elements) ----
// Lane `lane` owns accesses i = 0..IT-1, access i covering elements [j0, j0 + V) with
// j0 = (i * 32 + lane) * V. V is vec_width<T>() (16-byte accesses; then L % V == 0, so an access is
// either entirely inside the row or entirely past it) or 1 (scalar). Registers: IT * V floats.
// warp_store_row may store to a row of another dtype than the one loaded, with the loaded V
// (store_access: 8-, 16- or 32-byte stores).

__device__ __forceinline__ int row_j0(int i, int lane, int V) { return (i * 32 + lane) * V; }

// The V elements of one access, [j0, j0 + V) of p, as floats (a 16-byte load when V > 1).
template <class T, int V>
__device__ __forceinline__ void load_access(const T* p, int j0, float (&v)[V]) {
  if constexpr (V > 1) {
    load_vec(p + j0, v);
  } else {
    v[0] = to_f(p[j0]);
  }
}

template <class T, int V, int IT>
__device__ __forceinline__ void warp_load_row(const T* row, int L, int lane, float (&v)[IT * V]) {
#pragma unroll
  for (int i = 0; i < IT; ++i) {
    const int j0 = row_j0(i, lane, V);
    if (j0 < L) {
      if constexpr (V > 1) {
        load_vec(row + j0, &v[i * V]);
      } else {
        v[i] = to_f(row[j0]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) v[i * V + k] = 0.f;
    }
  }
}

template <class T, int V, int IT>
__device__ __forceinline__ void warp_store_row(T* row, int L, int lane, const float (&v)[IT * V]) {
#pragma unroll
  for (int i = 0; i < IT; ++i) {
    const int j0 = row_j0(i, lane, V);
    if (j0 < L) {
      store_access<T, V>(row + j0, &v[i * V]);
    }
  }
}

// ---- a row held packed: each access's loaded bits, widened to float only where used ----
// For bf16 that is half the registers of warp_load_row's floats; a kernel whose values are read
// several times (LayerNorm's forward reads each three times) widens at each read (a shift).
// Packed<T, V> is one access: 16 bytes (V = vec_width<T>()) or one element (V = 1).
template <class T, int V>
using Packed = std::conditional_t<V == 1, T, uint4>;

template <class T, int V>
__device__ __forceinline__ Packed<T, V> load_packed(const T* p, int j0) {
  if constexpr (V == 1) {
    return p[j0];
  } else {
    static_assert(V * sizeof(T) == 16, "load_packed: 16-byte accesses only");
    return *reinterpret_cast<const uint4*>(p + j0);
  }
}

// Element k of an access, as a float (k a compile-time constant after unrolling).
template <class T, int V>
__device__ __forceinline__ float unpack(const Packed<T, V>& u, int k) {
  if constexpr (V == 1) {
    return to_f(u);
  } else {
    constexpr int per = 4 / (int)sizeof(T);  // elements per 32-bit word
    const int wi = k / per;
    const uint32_t w = wi == 0 ? u.x : wi == 1 ? u.y : wi == 2 ? u.z : u.w;
    if constexpr (std::is_same_v<T, float>) {
      return __uint_as_float(w);
    } else {
      // Little-endian: the element at the lower address is the low half (see load_vec).
      return (k % 2) ? __uint_as_float(w & 0xffff0000u) : __uint_as_float(w << 16);
    }
  }
}

// As warp_load_row, packed: accesses past the row are zero (which unpack as 0.f).
template <class T, int V, int IT>
__device__ __forceinline__ void warp_load_packed(const T* row, int L, int lane, Packed<T, V> (&raw)[IT]) {
#pragma unroll
  for (int i = 0; i < IT; ++i) {
    const int j0 = row_j0(i, lane, V);
    if (j0 < L) {
      raw[i] = load_packed<T, V>(row, j0);
    } else {
      if constexpr (V == 1) {
        raw[i] = from_f<T>(0.f);
      } else {
        raw[i] = make_uint4(0, 0, 0, 0);
      }
    }
  }
}

// Largest row a warp holds in registers, and the number of 16-byte (or scalar) accesses per lane:
// calls f(std::integral_constant<int, IT>{}) with IT the smallest power of two >= need, where
// IT * V <= 32 (so at most 32 floats of registers per held row).
constexpr int kWarpRowMax = 1024;
template <int V, class F>
void dispatch_it(int need, F&& f) {
  if (need <= 1) return f(std::integral_constant<int, 1>{});
  if (need <= 2) return f(std::integral_constant<int, 2>{});
  if (need <= 4) return f(std::integral_constant<int, 4>{});
  if constexpr (32 / V >= 8) {
    if (need <= 8) return f(std::integral_constant<int, 8>{});
  }
  if constexpr (32 / V >= 16) {
    if (need <= 16) return f(std::integral_constant<int, 16>{});
  }
  if constexpr (32 / V >= 32) {
    if (need <= 32) return f(std::integral_constant<int, 32>{});
  }
  fail(ErrorKind::Internal, "row kernel: ", need, " accesses per lane exceed the register path (V = ", V, ")");
}

// Accesses per lane needed for a row of L elements at vector width V.
inline int accesses_per_lane(int64_t L, int V) { return (int)(((L + V - 1) / V + 31) / 32); }

// Blocks for a grid-stride loop over `items` with `per_block` items per block: one block per
// `per_block` items (so the ViT shapes get equal blocks and no tail of double-duty warps) up to
// 256 blocks per SM; beyond that the loops stride by the grid. At least 1 block.
inline unsigned blocks_for(int64_t items, int64_t per_block) {
  int64_t b = (items + per_block - 1) / per_block;
  const int64_t cap = (int64_t)sm_count() * 256;
  if (b > cap) b = cap;
  return (unsigned)(b < 1 ? 1 : b);
}

}  // namespace vitrim::cuda
