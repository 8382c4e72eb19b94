// Token gather/scatter on CUDA: the same names, signatures and semantics as native/cpu/gather.cpp.
//
// gather_tokens: x [B, N, C] (float32 or bfloat16), idx [B, K] int32 -> y [B, K, C] of x's dtype,
//   y[b, k] = x[b, idx[b, k]]. A pure byte copy of rows, so it does not depend on the dtype: each
//   output row is copied by a group of G lanes (G = 1..32, a power of two, sized so that each lane
//   moves about 4 units of the row), grid-stride over the B*K rows. The unit is the widest of 16, 8,
//   4, 2 bytes that divides the row length and the alignment of both base pointers (checked at run
//   time; the caching allocator's blocks are 256-byte aligned, so rows of C*elem_size % 16 == 0 move
//   as uint4). Each lane issues its (up to 4) loads before its stores. One read and one write per
//   byte: the kernel is bandwidth-bound.
// scatter_tokens: g [B, K, C], idx [B, K], n -> gx [B, n, C], gx[b, j] = sum over k with idx[b, k] = j
//   of g[b, k] (zero when no k hits j). Repeated indices are allowed and accumulate, as on the CPU.
//   One warp per OUTPUT row (b, j): it scans idx[b, :] 32 entries at a time (a ballot of the lanes
//   whose index equals j) and adds the hit rows of g in increasing k, in fp32 registers, then writes
//   the row once (zeros included, so there is no separate memset and no atomics). The sum therefore
//   runs in the CPU's order (0 + g[k1] + g[k2] + ...): float32 results equal the CPU's bit for bit,
//   and they are deterministic. The scan costs O(n*K/32) warp steps per sample on L1-resident
//   indices: negligible at ViT sizes (n ~ 200), fine up to thousands of tokens.
//
// Index validation: the indices live on the device, so they are checked in the kernels, never
// dereferenced out of range, and reported through a fresh device flag (new_flag): the kernel
// atomically keeps the largest INT32_MAX - position among the bad entries (so 0 = all good and the
// flag names the first bad position); check_flag throws ErrorKind::Index with the CPU's message
// ("idx[b, k] = v is out of range [0, n)"), reading the bad value from the device: at once by
// default (a stream sync per call), or at the next synchronising call in deferred mode (no sync per
// call; the error still comes before any result can be read). A failed call's output holds no
// data from out-of-range rows. Index tensors whose bounds are known to lie in range (known_in_range:
// host uploads, topk) launch without a flag: no check, no sync; the kernel still skips bad entries.
#include <climits>
#include <cstdint>

#include "common.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

// ---- shared with pack.cu (gather_rows reuses the row-copy kernel) ----

// Flags `pos` as an out-of-range entry: the flag keeps the smallest position (encoded as
// INT32_MAX - pos, so 0 means "none"); positions past INT32_MAX - 2 all encode as 1.
// A null flag: the indices were known to be in range (known_in_range), and the entry is only skipped.
__device__ __forceinline__ void flag_bad_position(int32_t* flag, int64_t pos) {
  const int32_t v = pos < (int64_t)INT32_MAX - 1 ? (int32_t)((int64_t)INT32_MAX - pos) : 1;
  if (flag) atomicMax(flag, v);
}

// Throws ErrorKind::Index for a flag value h != 0 set by flag_bad_position over the int32 tensor
// `idx` (1-D: "name[i]", 2-D: "name[b, k]"), reading the bad value back from the device.
[[noreturn]] void fail_index_flag(int32_t h, const Tensor& idx, int64_t limit, const char* op, const char* name) {
  if (h == 1)
    fail(ErrorKind::Index, op, ": an entry of ", name, " at flat position >= ", (int64_t)INT32_MAX - 1,
         " is out of range [0, ", limit, ")");
  const int64_t pos = (int64_t)INT32_MAX - (int64_t)h;
  int32_t v = 0;
  VITRIM_CUDA_CHECK(
      cudaMemcpyAsync(&v, ptr<int32_t>(idx) + pos, sizeof v, cudaMemcpyDeviceToHost, stream()));
  VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (idx.dim() == 2) {
    const int64_t K = idx.size(1);
    fail(ErrorKind::Index, op, ": ", name, "[", pos / K, ", ", pos % K, "] = ", v, " is out of range [0, ", limit,
         ")");
  }
  fail(ErrorKind::Index, op, ": ", name, "[", pos, "] = ", v, " is out of range [0, ", limit, ")");
}

namespace {

// y[r] = x[(r / K) * N + idx[r]] for r in [0, rows): rows of V units of type U, G = 1 << gshift
// lanes per row (blockDim.x must be a multiple of G, which it is: 256 threads).
template <class U>
__global__ void __launch_bounds__(256, 6) gather_rows_kernel(const U* __restrict__ x, const int32_t* __restrict__ idx,
                                                          U* __restrict__ y, int64_t rows, int64_t K, int64_t N,
                                                          int64_t V, int gshift, int32_t* flag) {
  const int G = 1 << gshift;
  const int lane = (int)(threadIdx.x & (unsigned)(G - 1));
  const int64_t stride = ((int64_t)gridDim.x * blockDim.x) >> gshift;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> gshift; r < rows; r += stride) {
    const int32_t j = __ldg(idx + r);
    if (j < 0 || (int64_t)j >= N) {
      if (lane == 0) flag_bad_position(flag, r);
      continue;
    }
    const int64_t b = r < 0x100000000ll && K < 0x100000000ll ? (int64_t)((uint32_t)r / (uint32_t)K) : r / K;
    const U* __restrict__ s = x + (b * N + j) * V + lane;
    U* __restrict__ d = y + r * V + lane;
    // `left` = units of the row from this lane's current one on; 4 strided units per iteration,
    // all loads before the stores.
    for (int64_t left = V - lane; left > 0; left -= 4 * G, s += 4 * G, d += 4 * G) {
      const bool h1 = left > G, h2 = left > 2 * G, h3 = left > 3 * G;
      const U a0 = s[0];
      const U a1 = h1 ? s[G] : a0;
      const U a2 = h2 ? s[2 * G] : a0;
      const U a3 = h3 ? s[3 * G] : a0;
      d[0] = a0;
      if (h1) d[G] = a1;
      if (h2) d[2 * G] = a2;
      if (h3) d[3 * G] = a3;
    }
  }
}

template <class U>
void launch_gather_as(const void* x, const int32_t* idx, void* y, int64_t rows, int64_t K, int64_t N,
                      int64_t row_bytes, int32_t* flag) {
  const int64_t V = row_bytes / (int64_t)sizeof(U);
  // About 4 units per lane: G = the power of two >= ceil(V / 4), at most a warp.
  int gshift = 0;
  while (gshift < 5 && ((int64_t)1 << gshift) * 4 < V) ++gshift;
  gather_rows_kernel<U><<<grid_for(rows << gshift, 256), 256, 0, stream()>>>(
      static_cast<const U*>(x), idx, static_cast<U*>(y), rows, K, N, V, gshift, flag);
  VITRIM_CUDA_LAUNCHED();
}

}  // namespace

// Row gather shared with gather_rows: y row r (of `rows`) = x row (r / K) * N + idx[r]; rows of x and
// y have the same length (x.nbytes() / (B * N) bytes). Out-of-range entries set *flag and are skipped.
void launch_gather_rows(const Tensor& x, const int32_t* idx, const Tensor& y, int64_t rows, int64_t K, int64_t N,
                        int64_t row_bytes, int32_t* flag) {
  if (rows == 0) return;
  const uintptr_t a = (uintptr_t)x.raw() | (uintptr_t)y.raw() | (uintptr_t)row_bytes;
  if (a % 16 == 0) launch_gather_as<uint4>(x.raw(), idx, y.raw(), rows, K, N, row_bytes, flag);
  else if (a % 8 == 0) launch_gather_as<uint2>(x.raw(), idx, y.raw(), rows, K, N, row_bytes, flag);
  else if (a % 4 == 0) launch_gather_as<uint32_t>(x.raw(), idx, y.raw(), rows, K, N, row_bytes, flag);
  else launch_gather_as<uint16_t>(x.raw(), idx, y.raw(), rows, K, N, row_bytes, flag);
}

namespace {

// fp32 <-> storage for VEC consecutive elements (VEC * sizeof(T) = 16 bytes, or VEC = 1).
template <class T, int VEC>
struct Vec;
template <>
struct Vec<float, 1> {
  __device__ static void add(float* acc, const float* p) { acc[0] += p[0]; }
  __device__ static void store(float* p, const float* v) { p[0] = v[0]; }
};
template <>
struct Vec<float, 4> {
  __device__ static void add(float* acc, const float* p) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    acc[0] += v.x;
    acc[1] += v.y;
    acc[2] += v.z;
    acc[3] += v.w;
  }
  __device__ static void store(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};
template <>
struct Vec<bf16, 1> {
  __device__ static void add(float* acc, const bf16* p) { acc[0] += __bfloat162float(p[0]); }
  __device__ static void store(bf16* p, const float* v) { p[0] = __float2bfloat16_rn(v[0]); }
};
template <>
struct Vec<bf16, 8> {
  __device__ static void add(float* acc, const bf16* p) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      acc[2 * i] += f.x;
      acc[2 * i + 1] += f.y;
    }
  }
  __device__ static void store(bf16* p, const float* v) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = u;
  }
};

// One warp per output row r = (b, j) of [B, n, C] (grid-stride over warps; every loop bound below is
// uniform across the warp, so the full-mask ballot is safe). Requires C % VEC == 0. With C == 0 only
// the rows j = 0 have work (the index check), so only those B rows run: a scatter of empty rows to a
// huge n would otherwise walk B·n idle rows.
template <class T, int VEC>
__global__ void __launch_bounds__(256) scatter_tokens_kernel(const T* __restrict__ g, const int32_t* __restrict__ idx,
                                                             T* __restrict__ out, int64_t B, int64_t K, int64_t n,
                                                             int64_t C, int32_t* flag) {
  constexpr int U = 4;                     // vectors per lane per chunk
  constexpr int64_t kChunk = 32 * VEC * U;  // channels per pass over idx
  const int lane = (int)(threadIdx.x & 31u);
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  const int64_t rows = C ? B * n : B;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nwarps) {
    const int64_t b = C ? r / n : r, j = C ? r - b * n : 0;
    const int32_t* __restrict__ ib = idx + b * K;
    if (j == 0)  // one warp per sample validates its indices (also when C == 0)
      for (int64_t k = lane; k < K; k += 32) {
        const int32_t v = ib[k];
        if (v < 0 || (int64_t)v >= n) flag_bad_position(flag, b * K + k);
      }
    T* __restrict__ orow = out + r * C;
    for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
      float acc[U][VEC];
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[u][e] = 0.f;
      for (int64_t k0 = 0; k0 < K; k0 += 32) {
        const int64_t k = k0 + lane;
        const bool hit = k < K && (int64_t)ib[k] == j;
        unsigned m = __ballot_sync(0xffffffffu, hit);
        while (m) {  // hits in increasing k: the CPU's summation order
          const int t = __ffs((int)m) - 1;
          m &= m - 1;
          const T* __restrict__ grow = g + (b * K + k0 + t) * C;
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const int64_t c = c0 + ((int64_t)u * 32 + lane) * VEC;
            if (c < C) Vec<T, VEC>::add(acc[u], grow + c);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t c = c0 + ((int64_t)u * 32 + lane) * VEC;
        if (c < C) Vec<T, VEC>::store(orow + c, acc[u]);
      }
    }
  }
}

void check_idx(const Tensor& idx, int64_t B, const char* op) { check_token_index(idx, B, Device::CUDA, op); }

}  // namespace

Tensor gather_tokens(const Tensor& x, const Tensor& idx) {
  check_float_cuda(x, "x");
  check_rank(x, 3, "x");
  const int64_t B = x.shape[0], N = x.shape[1], C = x.shape[2];
  check_idx(idx, B, "gather_tokens");
  const int64_t K = idx.shape[1];
  Tensor y = alloc({B, K, C}, x.dtype);
  if (B * K == 0) return y;  // no index to check, nothing to copy
  // C == 0 still launches: the kernel then only checks the indices, as the CPU does.
  if (known_in_range(idx, 0, N - 1)) {  // e.g. topk's indices or a host upload: no check, no sync
    launch_gather_rows(x, ptr<int32_t>(idx), y, B * K, K, N, C * (int64_t)dtype_size(x.dtype), nullptr);
    return y;
  }
  DeviceFlag flag = new_flag();
  launch_gather_rows(x, ptr<int32_t>(idx), y, B * K, K, N, C * (int64_t)dtype_size(x.dtype), flag.ptr());
  check_flag(flag, [idx, N](const int32_t* h) { fail_index_flag(h[0], idx, N, "gather_tokens", "idx"); });
  return y;
}

Tensor scatter_tokens(const Tensor& g, const Tensor& idx, int64_t n) {
  check_float_cuda(g, "g");
  check_scatter_tokens(g, idx, n, Device::CUDA);
  const int64_t B = g.shape[0], K = g.shape[1], C = g.shape[2];
  Tensor gx = alloc({B, n, C}, g.dtype);
  if (B * K == 0) {  // nothing to check; the output is all zeros
    if (gx.nbytes()) VITRIM_CUDA_CHECK(cudaMemsetAsync(gx.raw(), 0, gx.nbytes(), stream()));
    return gx;
  }
  if (n == 0)  // every index is out of range [0, 0): the first one is reported, as on the CPU
    fail_index_flag(INT32_MAX, idx, n, "scatter_tokens", "idx");
  const bool checked = !known_in_range(idx, 0, n - 1);
  DeviceFlag dflag;
  if (checked) dflag = new_flag();
  int32_t* flag = checked ? dflag.ptr() : nullptr;
  dispatch_float(g.dtype, "g", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const bool vec = C % kVec == 0 && ((uintptr_t)g.raw() | (uintptr_t)gx.raw()) % 16 == 0;
    const unsigned grid = grid_for((C ? B * n : B) * 32, 256);
    if (vec)
      scatter_tokens_kernel<T, kVec><<<grid, 256, 0, stream()>>>(ptr<T>(g), ptr<int32_t>(idx), ptr<T>(gx), B, K, n,
                                                                  C, flag);
    else
      scatter_tokens_kernel<T, 1><<<grid, 256, 0, stream()>>>(ptr<T>(g), ptr<int32_t>(idx), ptr<T>(gx), B, K, n, C,
                                                               flag);
    VITRIM_CUDA_LAUNCHED();
  });
  if (checked)
    check_flag(dflag, [idx, n](const int32_t* h) { fail_index_flag(h[0], idx, n, "scatter_tokens", "idx"); });
  return gx;
}

VITRIM_CUDA_OP(gather_tokens);
VITRIM_CUDA_OP(scatter_tokens);

}  // namespace vitrim::cuda
