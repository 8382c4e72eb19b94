// Patch extraction on CUDA: patchify / unpatchify with the names, signatures, checks and layout of
// native/cpu/patch.cpp:
//   patchify   x [B, C, H, W] -> [B, (H/p)*(W/p), C*p*p],
//              out[b, gy*(W/p) + gx, (c*p + py)*p + px] = x[b, c, gy*p + py, gx*p + px]
//   unpatchify its adjoint (the inverse permutation: no sums), [B, L, C*p*p] -> [B, C, H, W].
// dtypes: float32 or bfloat16, output in the input's dtype (a pure copy: bits are moved, not
// converted). One grid-stride kernel over the patch-layout index o (coalesced on the patch side; on
// the image side a warp touches runs of p contiguous elements). The index is decomposed in 32-bit
// arithmetic when the tensor is small enough that no index (or index + grid stride) can pass 2^31,
// in 64-bit otherwise.
#include <climits>

#include "common.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

namespace {

PatchGeom geometry(const Shape& s, int64_t p, const char* op) { return patch_geometry(s, p, op); }

// o = (((b*L + l)*C + c)*p + py)*p + px in patch layout; img = ((b*C + c)*H + gy*p + py)*W + gx*p + px.
template <class T, class I, bool TO_PATCHES>
__global__ void __launch_bounds__(256) patch_kernel(const T* __restrict__ src, T* __restrict__ dst, I n, I C, I H,
                                                    I W, I p, I gw, I L) {
  const I stride = (I)gridDim.x * (I)blockDim.x;
  for (I o = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; o < n; o += stride) {
    I q = o / p;
    const I px = o - q * p;
    I t = q / p;
    const I py = q - t * p;
    q = t / C;
    const I c = t - q * C;
    const I b = q / L;
    const I l = q - b * L;
    const I gy = l / gw, gx = l - gy * gw;
    const I img = ((b * C + c) * H + gy * p + py) * W + gx * p + px;
    if constexpr (TO_PATCHES) {
      dst[o] = src[img];
    } else {
      dst[img] = src[o];
    }
  }
}

template <bool TO_PATCHES>
void patch_launch(const Tensor& src, Tensor& dst, const PatchGeom& g) {
  const int64_t n = src.numel();
  const unsigned grid = grid_for(n, 256);
  // 32-bit indices when o + stride cannot overflow (the grid is capped far below 2^30 threads).
  const bool small = index32(2 * n);  // n < 2^30
  dispatch_float(src.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    if (small) {
      patch_kernel<T, int32_t, TO_PATCHES><<<grid, 256, 0, stream()>>>(
          ptr<T>(src), ptr<T>(dst), (int32_t)n, (int32_t)g.C, (int32_t)g.H, (int32_t)g.W, (int32_t)g.p,
          (int32_t)g.gw, (int32_t)(g.gh * g.gw));
    } else {
      patch_kernel<T, int64_t, TO_PATCHES>
          <<<grid, 256, 0, stream()>>>(ptr<T>(src), ptr<T>(dst), n, g.C, g.H, g.W, g.p, g.gw, g.gh * g.gw);
    }
    VITRIM_CUDA_LAUNCHED();
  });
}

}  // namespace

Tensor patchify(const Tensor& x, int64_t p) {
  check_float_cuda(x, "x");
  check_rank(x, 4, "x");
  const PatchGeom g = geometry(x.shape, p, "patchify");
  Tensor y = alloc({g.B, g.gh * g.gw, g.C * p * p}, x.dtype);
  if (y.numel() == 0) return y;
  patch_launch<true>(x, y, g);
  return y;
}

Tensor unpatchify(const Tensor& gp, const Shape& image_shape, int64_t p) {
  check_float_cuda(gp, "g");
  shape_numel(image_shape);
  const PatchGeom g = geometry(image_shape, p, "unpatchify");
  check_shape(gp, {g.B, g.gh * g.gw, g.C * p * p}, "g");
  Tensor x = alloc(image_shape, gp.dtype);
  if (x.numel() == 0) return x;
  patch_launch<false>(gp, x, g);
  return x;
}

VITRIM_CUDA_OP(patchify);
VITRIM_CUDA_OP(unpatchify);

}  // namespace vitrim::cuda
