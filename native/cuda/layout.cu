// Layout ops on CUDA: permute, slice (+ backward) and concat, the same names, signatures, validation
// and messages as native/cpu/layout.cpp. They move bytes, so permute / slice / concat take every dtype
// (float32, bfloat16, int32); slice_backward takes float32 or bfloat16 (a gradient) and returns gy's
// dtype.
//
// permute: the host drops size-1 dims and merges output dims that are consecutive in the input (as
//   the CPU), leaving m dims (size, input stride). Then:
//   - m == 1: the data is already in order: one cudaMemcpyAsync.
//   - innermost output dim contiguous in the input ([B,N,H,D] -> [B,H,N,D]): a thread per output
//     word, the flat output index decomposed over the dims into the input offset; bytes are moved
//     as the widest word (16/8/4/2 bytes) that divides the run length and every stride in bytes and
//     both pointers' alignment, so a run of D = 64 bf16 values moves as 8 16-byte words.
//   - innermost output dim J strided in the input and the input's stride-1 dim Q elsewhere, both at
//     least 16 long (last-two swap, [B,C,H*W] -> [B,H*W,C], K^T in attention): a tiled transpose
//     through shared memory, 32x32 tiles (33-word rows: no bank conflicts), 32x8 threads; reads run
//     along Q and writes along J, so both are coalesced. The remaining dims are a batch index
//     decomposed once per tile. Tiles are a flat grid-stride loop (no gridDim.y/z limits); the loop
//     is uniform over the block, so the barriers in it are too.
//   - otherwise (a strided innermost dim shorter than 16): the general kernel, one element per thread.
//   Up to kMaxDims merged dims (ERR_VITRIM_ARGUMENT beyond: it needs a rank above kMaxDims).
// slice / slice_backward / concat: "rows x contiguous run" copies. A single run (or rows that are
//   contiguous on both sides) is one cudaMemcpyAsync; otherwise a kernel copies words (the widest of
//   16/8/4/2 bytes that divides run, row pitches, offset and pointer alignment), flat index -> (row,
//   word) with one division. slice_backward zero-fills gx (cudaMemsetAsync) and copies gy into it.
// Indices are 32-bit where every offset fits, else 64-bit.
#include <algorithm>
#include <cstring>
#include <vector>

#include "common.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxDims = 12;
constexpr int kTile = 32;
constexpr int kTileRows = 8;
constexpr int64_t kMinTransposeSide = 16;


// Calls f(W{}) with W the widest word type (16, 8, 4 or 2 bytes) dividing every `bytes` value and the
// address of every pointer.
template <class F>
void with_word(std::initializer_list<int64_t> bytes, std::initializer_list<const void*> ptrs, F&& f) {
  int64_t g = 16;
  auto fits = [&](int64_t w) {
    for (int64_t b : bytes)
      if (b % w) return false;
    for (const void* p : ptrs)
      if ((uintptr_t)p % (uintptr_t)w) return false;
    return true;
  };
  while (g > 2 && !fits(g)) g /= 2;
  if (g == 16) return f(uint4{});
  if (g == 8) return f(uint2{});
  if (g == 4) return f(uint32_t{});
  return f(uint16_t{});
}

// ---------------------------------------------------------------- permute
struct PDims {
  int n;
  int64_t size[kMaxDims], stride[kMaxDims];  // output dims outer..inner, input strides (words)
};

template <class W, class I>
__global__ void permute_kernel(const W* __restrict__ x, W* __restrict__ y, I n, PDims d) {
  const I step = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    I rest = i, off = 0;
    for (int k = d.n - 1; k > 0; --k) {
      const I sz = (I)d.size[k];
      const I q = rest / sz;
      off += (rest - q * sz) * (I)d.stride[k];
      rest = q;
    }
    off += rest * (I)d.stride[0];
    y[i] = x[off];
  }
}

struct TDims {
  int64_t SJ, sJ;  // innermost output dim: size, input stride (output stride 1)
  int64_t SQ, oQ;  // the input's stride-1 dim: size, output stride
  int64_t tilesJ, tilesQ, ntiles;
  int nb;          // batch dims (all others), outer..inner
  int64_t bsize[kMaxDims], bin[kMaxDims], bout[kMaxDims];
};

// E: element type (uint16_t or uint32_t); the tile holds 32-bit slots either way.
template <class E>
__global__ void __launch_bounds__(kTile* kTileRows) transpose_kernel(const E* __restrict__ x, E* __restrict__ y,
                                                                     TDims t) {
  __shared__ uint32_t tile[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t tl = blockIdx.x; tl < t.ntiles; tl += gridDim.x) {
    const int64_t tj = tl % t.tilesJ, t2 = tl / t.tilesJ;
    const int64_t tq = t2 % t.tilesQ;
    int64_t b = t2 / t.tilesQ, in_off = 0, out_off = 0;
    for (int k = t.nb - 1; k >= 0; --k) {
      const int64_t c = b % t.bsize[k];
      b /= t.bsize[k];
      in_off += c * t.bin[k];
      out_off += c * t.bout[k];
    }
    const int64_t j0 = tj * kTile, q0 = tq * kTile;
    // Load: threads along q (input stride 1), rows along j. tile[j - j0][q - q0].
    for (int r = ty; r < kTile; r += kTileRows) {
      const int64_t j = j0 + r, q = q0 + tx;
      if (j < t.SJ && q < t.SQ) tile[r][tx] = (uint32_t)x[in_off + q + j * t.sJ];
    }
    __syncthreads();
    // Store: threads along j (output stride 1), rows along q.
    for (int r = ty; r < kTile; r += kTileRows) {
      const int64_t q = q0 + r, j = j0 + tx;
      if (q < t.SQ && j < t.SJ) y[out_off + q * t.oQ + j] = (E)tile[tx][r];
    }
    __syncthreads();  // the tile is rewritten by the next iteration
  }
}

// ---------------------------------------------------------------- row copies
// dst[r*dst_row + dst_off + c] = src[r*src_row + c] for r < rows, c < run (all in words W).
template <class W, class I>
__global__ void copy_rows_kernel(const W* __restrict__ src, I src_row, W* __restrict__ dst, I dst_row, I dst_off,
                                 I run, I n) {
  const I step = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    const I r = i / run, c = i - r * run;
    dst[r * dst_row + dst_off + c] = src[r * src_row + c];
  }
}

// Byte-level: rows of n bytes from src (pitch src_row) to dst (pitch dst_row) at byte offset dst_off.
void copy_rows(int64_t rows, const uint8_t* src, int64_t src_row, uint8_t* dst, int64_t dst_row, int64_t dst_off,
               int64_t n) {
  if (n == 0 || rows == 0) return;
  if (rows == 1 || (n == src_row && n == dst_row)) {
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(dst + dst_off, src, (size_t)(rows * n), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  with_word({src_row, dst_row, dst_off, n}, {src, dst}, [&](auto tag) {
    using W = decltype(tag);
    constexpr int64_t w = sizeof(W);
    const int64_t run = n / w, total = rows * run;
    // Largest offset touched, in words: the last row's end on either side.
    const int64_t hi = std::max((rows - 1) * (src_row / w) + run, (rows - 1) * (dst_row / w) + dst_off / w + run);
    if (index32(hi)) {
      copy_rows_kernel<W, uint32_t><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
          reinterpret_cast<const W*>(src), (uint32_t)(src_row / w), reinterpret_cast<W*>(dst),
          (uint32_t)(dst_row / w), (uint32_t)(dst_off / w), (uint32_t)run, (uint32_t)total);
    } else {
      copy_rows_kernel<W, int64_t><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
          reinterpret_cast<const W*>(src), src_row / w, reinterpret_cast<W*>(dst), dst_row / w, dst_off / w, run,
          total);
    }
    VITRIM_CUDA_LAUNCHED();
  });
}


template <class E>
void launch_transpose(const std::vector<PDim>& dims, const Tensor& x, const Tensor& y) {
  const int m = (int)dims.size();
  TDims t{};
  int q = -1;
  for (int k = 0; k < m; ++k)
    if (dims[k].stride == 1) q = k;
  t.SJ = dims[m - 1].size;
  t.sJ = dims[m - 1].stride;
  t.SQ = dims[q].size;
  std::vector<int64_t> ostride(m);
  int64_t s = 1;
  for (int k = m - 1; k >= 0; --k) {
    ostride[k] = s;
    s *= dims[k].size;
  }
  t.oQ = ostride[q];
  t.nb = 0;
  int64_t nb = 1;
  for (int k = 0; k < m - 1; ++k) {
    if (k == q) continue;
    t.bsize[t.nb] = dims[k].size;
    t.bin[t.nb] = dims[k].stride;
    t.bout[t.nb] = ostride[k];
    nb *= dims[k].size;
    ++t.nb;
  }
  t.tilesJ = (t.SJ + kTile - 1) / kTile;
  t.tilesQ = (t.SQ + kTile - 1) / kTile;
  t.ntiles = t.tilesJ * t.tilesQ * nb;
  const unsigned blocks = (unsigned)std::min<int64_t>(t.ntiles, (int64_t)sm_count() * 16);
  transpose_kernel<E><<<blocks, dim3(kTile, kTileRows), 0, stream()>>>(static_cast<const E*>(x.raw()),
                                                                       static_cast<E*>(y.raw()), t);
  VITRIM_CUDA_LAUNCHED();
}

void launch_permute_general(std::vector<PDim> dims, const Tensor& x, const Tensor& y) {
  const int64_t es = (int64_t)dtype_size(x.dtype);
  const int m = (int)dims.size();
  // Word width: the inner run in bytes and every outer stride in bytes must be multiples of it; only
  // when the innermost dim is contiguous in the input (else words would straddle elements).
  int64_t w = es;
  if (dims[m - 1].stride == 1) {
    w = 16;
    auto ok = [&](int64_t ww) {
      if ((dims[m - 1].size * es) % ww) return false;
      for (int k = 0; k < m - 1; ++k)
        if ((dims[k].stride * es) % ww) return false;
      return (uintptr_t)x.raw() % (uintptr_t)ww == 0 && (uintptr_t)y.raw() % (uintptr_t)ww == 0;
    };
    while (w > es && !ok(w)) w /= 2;
  }
  if (w != es) {
    dims[m - 1].size = dims[m - 1].size * es / w;
    for (int k = 0; k < m - 1; ++k) dims[k].stride = dims[k].stride * es / w;
  }
  PDims d{};
  d.n = m;
  int64_t n = 1;
  for (int k = 0; k < m; ++k) {
    d.size[k] = dims[k].size;
    d.stride[k] = dims[k].stride;
    n *= dims[k].size;
  }
  // n words in each tensor; every input offset is below n.
  auto go = [&](auto tag) {
    using W = decltype(tag);
    const W* xp = static_cast<const W*>(x.raw());
    W* yp = static_cast<W*>(y.raw());
    if (index32(n))
      permute_kernel<W, uint32_t><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(xp, yp, (uint32_t)n, d);
    else
      permute_kernel<W, int64_t><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(xp, yp, n, d);
    VITRIM_CUDA_LAUNCHED();
  };
  switch (w) {
    case 16: go(uint4{}); break;
    case 8: go(uint2{}); break;
    case 4: go(uint32_t{}); break;
    default: go(uint16_t{}); break;
  }
}

}  // namespace

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  check_cuda(x, "x");
  PermutePlan plan = plan_permute(x, perm);
  Tensor y = alloc(plan.out, x.dtype);
  if (y.numel() == 0) return y;
  std::vector<PDim>& dims = plan.dims;
  if (dims.size() <= 1) {  // in input order already
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(y.raw(), x.raw(), y.nbytes(), cudaMemcpyDeviceToDevice, stream()));
    return y;
  }
  VITRIM_CHECK((int)dims.size() <= kMaxDims, Argument, "permute: ", shape_str(x.shape), " permuted needs ",
               dims.size(), " strided dimensions; cuda supports ", kMaxDims);
  const PDim last = dims.back();
  int64_t sq = 0;
  for (const PDim& d : dims)
    if (d.stride == 1) sq = d.size;
  if (last.stride != 1 && last.size >= kMinTransposeSide && sq >= kMinTransposeSide) {
    if (dtype_size(x.dtype) == 2) launch_transpose<uint16_t>(dims, x, y);
    else launch_transpose<uint32_t>(dims, x, y);
  } else {
    launch_permute_general(dims, x, y);
  }
  return y;
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  check_cuda(x, "x");
  const SlicePlan p = plan_slice(x.shape, axis, start, end);
  Tensor y = alloc(p.out, x.dtype);
  const int64_t es = (int64_t)dtype_size(x.dtype);
  copy_rows(p.outer, static_cast<const uint8_t*>(x.raw()) + start * p.inner * es, p.d * p.inner * es,
            static_cast<uint8_t*>(y.raw()), p.len * p.inner * es, 0, p.len * p.inner * es);
  return y;
}

Tensor slice_backward(const Tensor& gy, const Shape& shape, int64_t axis, int64_t start) {
  check_float_cuda(gy, "gy");
  const SlicePlan p = plan_slice_backward(gy.shape, shape, axis, start);
  Tensor gx = alloc(shape, gy.dtype);
  if (gx.nbytes() == 0) return gx;
  VITRIM_CUDA_CHECK(cudaMemsetAsync(gx.raw(), 0, gx.nbytes(), stream()));  // +0.0 in float32 and bfloat16
  const int64_t es = (int64_t)dtype_size(gy.dtype);
  copy_rows(p.outer, static_cast<const uint8_t*>(gy.raw()), p.len * p.inner * es, static_cast<uint8_t*>(gx.raw()),
            p.d * p.inner * es, start * p.inner * es, p.len * p.inner * es);
  return gx;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  VITRIM_CHECK(!xs.empty(), Argument, "concat: needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k) check_cuda(xs[k], "concat input");
  const ConcatPlan plan = plan_concat(xs, axis);
  Tensor y = alloc(plan.out, xs[0].dtype);
  concat_rows(xs, plan, y, &copy_rows);
  return y;
}

VITRIM_CUDA_OP(permute);
VITRIM_CUDA_OP(slice);
VITRIM_CUDA_OP(slice_backward);
VITRIM_CUDA_OP(concat);

}  // namespace vitrim::cuda
