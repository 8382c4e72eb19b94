// Row packing on CUDA for inference that skips dropped tokens: the same names, signatures and
// semantics as native/cpu/pack.cpp.
//
// gather_rows: x [R0, C] (float32 or bfloat16), rows [R] int32 -> [R, C], y[i] = x[rows[i]]. The
//   row-copy kernel of gather.cu (vectorised byte copy, G lanes per row), with B = 1.
// index_add_rows: dst[rows[i]] += src[i] in place (fp32 math, rounded once to dst's dtype; a bfloat16
//   src may be added into a float32 dst, the same as casting it first: packed bf16 inference). As on the
//   CPU, rows must lie in [0, R0) and be distinct, and nothing is written when they are not: a first
//   kernel checks the range and marks each destination row in a zeroed [R0] int32 buffer with
//   atomicAdd (a second hit on a row is a duplicate), the host reads the two flags back (one stream
//   sync), and only then the add kernel runs (one warp per source row, 16-byte vectors when C and the
//   pointers allow; rows are distinct, so no two warps touch one destination row). MarkWritten(dst)
//   like the CPU.
//
// Index validation: device-side (see gather.cu: the flag keeps INT32_MAX - the first bad position).
// gather_rows reports through check_flag (immediate or deferred); index_add_rows checks at once,
// before it writes, because it writes dst in place (so it cannot be captured in a graph), unless the
// rows are known to be in range and strictly increasing (a host upload recorded it:
// known_increasing_in_range), as packed inference's are: then no check kernel and no sync.
// Out-of-range entries are never dereferenced, neither as a row of x or dst nor as a slot of the
// duplicate marker.
#include <climits>
#include <cstdint>
#include <string>

#include "common.cuh"

namespace vitrim::cuda {

// Defined in gather.cu.
void launch_gather_rows(const Tensor& x, const int32_t* idx, const Tensor& y, int64_t rows, int64_t K, int64_t N,
                        int64_t row_bytes, int32_t* flag);
[[noreturn]] void fail_index_flag(int32_t h, const Tensor& idx, int64_t limit, const char* op, const char* name);

namespace {

void check_rows(const Tensor& rows) {
  check_cuda(rows, "rows");
  check_dtype(rows, DType::I32, "rows");
  check_rank(rows, 1, "rows");
}

__device__ __forceinline__ void flag_min(int32_t* flag, int64_t v) {
  atomicMax(flag, v < (int64_t)INT32_MAX - 1 ? (int32_t)((int64_t)INT32_MAX - v) : 1);
}

// flags[0]: first out-of-range position; flags[1]: the smallest row value that appears twice (both
// encoded as INT32_MAX - value; 0 = none). seen[R0] must be zero on entry.
__global__ void check_rows_kernel(const int32_t* __restrict__ rows, int64_t R, int64_t limit, int32_t* seen,
                                  int32_t* flags) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < R; i += (int64_t)gridDim.x * blockDim.x) {
    const int32_t r = rows[i];
    if (r < 0 || (int64_t)r >= limit) {
      flag_min(flags, i);
      continue;
    }
    if (atomicAdd(seen + r, 1) > 0) flag_min(flags + 1, r);
  }
}

template <class T, int VEC>
struct Vec;
template <>
struct Vec<float, 1> {
  __device__ static void add(float* d, const float* s) { d[0] += s[0]; }
};
template <>
struct Vec<float, 4> {
  __device__ static void add(float* d, const float* s) {
    float4 a = *reinterpret_cast<const float4*>(d);
    const float4 b = *reinterpret_cast<const float4*>(s);
    a.x += b.x;
    a.y += b.y;
    a.z += b.z;
    a.w += b.w;
    *reinterpret_cast<float4*>(d) = a;
  }
};
template <>
struct Vec<bf16, 1> {
  __device__ static void add(bf16* d, const bf16* s) {
    d[0] = __float2bfloat16_rn(__bfloat162float(d[0]) + __bfloat162float(s[0]));
  }
};
template <>
struct Vec<bf16, 8> {
  __device__ static void add(bf16* d, const bf16* s) {
    uint4 a = *reinterpret_cast<const uint4*>(d);
    const uint4 b = *reinterpret_cast<const uint4*>(s);
    __nv_bfloat162* ha = reinterpret_cast<__nv_bfloat162*>(&a);
    const __nv_bfloat162* hb = reinterpret_cast<const __nv_bfloat162*>(&b);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 x = __bfloat1622float2(ha[i]), y = __bfloat1622float2(hb[i]);
      ha[i] = __floats2bfloat162_rn(x.x + y.x, x.y + y.y);
    }
    *reinterpret_cast<uint4*>(d) = a;
  }
};

// float32 dst += bfloat16 src (the bf16 output of a packed Linear added into the float32 residual
// stream): VEC floats of dst and VEC bf16 of src, widened, one fp32 add, as the cast-then-add.
template <int VEC>
struct VecMixed;
template <>
struct VecMixed<1> {
  __device__ static void add(float* d, const bf16* s) { d[0] += __bfloat162float(s[0]); }
};
template <>
struct VecMixed<4> {  // d 16-byte, s 8-byte aligned
  __device__ static void add(float* d, const bf16* s) {
    float4 a = *reinterpret_cast<const float4*>(d);
    const uint2 u = *reinterpret_cast<const uint2*>(s);
    const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
    const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    a.x += lo.x;
    a.y += lo.y;
    a.z += hi.x;
    a.w += hi.y;
    *reinterpret_cast<float4*>(d) = a;
  }
};

// One warp per source row i (grid-stride): dst[rows[i], :] += src[i, :]. Requires C % VEC == 0.
// Rows were validated (range, distinct) before the launch; the range test here is a guard only.
template <class T, int VEC, class TS = T, class OP = Vec<T, VEC>>
__global__ void __launch_bounds__(256) index_add_rows_kernel(T* __restrict__ dst, const int32_t* __restrict__ rows,
                                                             const TS* __restrict__ src, int64_t R, int64_t R0,
                                                             int64_t C) {
  const int lane = (int)(threadIdx.x & 31u);
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < R; i += nwarps) {
    const int32_t r = __ldg(rows + i);
    if (r < 0 || (int64_t)r >= R0) continue;
    T* __restrict__ d = dst + (int64_t)r * C;
    const TS* __restrict__ s = src + i * C;
    for (int64_t c = (int64_t)lane * VEC; c < C; c += 32 * VEC) OP::add(d + c, s + c);
  }
}

}  // namespace

// Range and distinctness of index_add_rows' rows, before anything is written (one stream sync).
static void check_add_rows(const Tensor& rows, int64_t R, int64_t R0) {
  const DeviceFlag dflags = new_flag(2);
  int32_t* flags = dflags.ptr();
  Tensor seen = alloc({R0}, DType::I32);
  if (R0) VITRIM_CUDA_CHECK(cudaMemsetAsync(seen.raw(), 0, seen.nbytes(), stream()));
  check_rows_kernel<<<grid_for(R, 256), 256, 0, stream()>>>(ptr<int32_t>(rows), R, R0, ptr<int32_t>(seen), flags);
  VITRIM_CUDA_LAUNCHED();
  check_flag_now(dflags, [rows, R0](const int32_t* h) {
    if (h[0]) fail_index_flag(h[0], rows, R0, "index_add_rows", "rows");
    fail(ErrorKind::Index, "index_add_rows: row ",
         h[1] == 1 ? std::string(">= 2147483646") : std::to_string((int64_t)INT32_MAX - h[1]), " appears twice");
  });
}

Tensor gather_rows(const Tensor& x, const Tensor& rows) {
  check_float_cuda(x, "x");
  check_rank(x, 2, "x");
  check_rows(rows);
  const int64_t R0 = x.size(0), R = rows.numel(), C = x.size(1);
  Tensor y = alloc({R, C}, x.dtype);
  if (R == 0) return y;
  // B = 1: row i of y = row rows[i] of x (K = R, so i / K = 0). Rows uploaded from the host (packed
  // inference) have known bounds: then no check and no sync.
  const int64_t row_bytes = C * (int64_t)dtype_size(x.dtype);
  if (known_in_range(rows, 0, R0 - 1)) {
    launch_gather_rows(x, ptr<int32_t>(rows), y, R, R, R0, row_bytes, nullptr);
    return y;
  }
  DeviceFlag flag = new_flag();
  launch_gather_rows(x, ptr<int32_t>(rows), y, R, R, R0, row_bytes, flag.ptr());
  check_flag(flag, [rows, R0](const int32_t* h) { fail_index_flag(h[0], rows, R0, "gather_rows", "rows"); });
  return y;
}

void index_add_rows(Tensor& dst, const Tensor& rows, const Tensor& src) {
  check_float_cuda(dst, "dst");
  check_float_cuda(src, "src");
  const bool mixed = dst.dtype == DType::F32 && src.dtype == DType::BF16;
  VITRIM_CHECK(src.dtype == dst.dtype || mixed, DType, "index_add_rows: src is ", dtype_name(src.dtype),
               " but dst is ", dtype_name(dst.dtype), " (bfloat16 src into float32 dst is the one mix)");
  check_rank(dst, 2, "dst");
  check_rank(src, 2, "src");
  check_rows(rows);
  VITRIM_CHECK(src.size(0) == rows.numel() && src.size(1) == dst.size(1), Shape, "index_add_rows: src ",
               shape_str(src.shape), " must be [rows, ", dst.size(1), "]");
  const int64_t R = rows.numel(), R0 = dst.size(0), C = dst.size(1);
  if (R == 0) return;
  if (!known_increasing_in_range(rows, 0, R0 - 1)) check_add_rows(rows, R, R0);
  if (C == 0) return;
  const MarkWritten written(dst);
  const unsigned grid = grid_for(R * 32, 256);
  if (mixed) {
    // 4 floats of dst (16 bytes) with 4 bf16 of src (8 bytes) per access when both allow it
    const bool vec = C % 4 == 0 && (uintptr_t)dst.raw() % 16 == 0 && (uintptr_t)src.raw() % 8 == 0;
    if (vec)
      index_add_rows_kernel<float, 4, bf16, VecMixed<4>><<<grid, 256, 0, stream()>>>(
          ptr<float>(dst), ptr<int32_t>(rows), ptr<bf16>(src), R, R0, C);
    else
      index_add_rows_kernel<float, 1, bf16, VecMixed<1>><<<grid, 256, 0, stream()>>>(
          ptr<float>(dst), ptr<int32_t>(rows), ptr<bf16>(src), R, R0, C);
    VITRIM_CUDA_LAUNCHED();
    return;
  }
  dispatch_float(dst.dtype, "dst", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const bool vec = C % kVec == 0 && ((uintptr_t)dst.raw() | (uintptr_t)src.raw()) % 16 == 0;
    if (vec)
      index_add_rows_kernel<T, kVec><<<grid, 256, 0, stream()>>>(ptr<T>(dst), ptr<int32_t>(rows), ptr<T>(src), R, R0,
                                                                  C);
    else
      index_add_rows_kernel<T, 1><<<grid, 256, 0, stream()>>>(ptr<T>(dst), ptr<int32_t>(rows), ptr<T>(src), R, R0, C);
    VITRIM_CUDA_LAUNCHED();
  });
}

VITRIM_CUDA_OP(gather_rows);
VITRIM_CUDA_OP(index_add_rows);

}  // namespace vitrim::cuda
