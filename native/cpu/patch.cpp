// Patch extraction on the CPU: the unfold half of a ViT patch embedding (the GEMM half is linear).
//
// patchify: x [B, C, H, W] float32 -> [B, (H/p)*(W/p), C*p*p] with
//   out[b, gy*(W/p) + gx, (c*p + py)*p + px] = x[b, c, gy*p + py, gx*p + px],
// i.e. patches in row-major grid order, each flattened (c, py, px) so that a Conv2d(k=p, s=p) weight
// [E, C, p, p] reshaped to [E, C*p*p] applied with linear() gives the convolution. H and W must be
// divisible by p (timm's default strict_img_size; no padding is implied).
// unpatchify: the adjoint, [B, L, C*p*p] -> image_shape [B, C, H, W]. Patchify is a permutation of
//   the elements (non-overlapping patches), so its adjoint is the inverse permutation: no sums.
// Both copy runs of p contiguous floats per (patch, c, py); threaded over (b, grid row).
#include <cstring>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

PatchGeom geometry(const Shape& s, int64_t p, const char* op) { return patch_geometry(s, p, op); }

// to_patches: image -> patches when true, patches -> image when false.
void patch_copy(const PatchGeom& g, float* img, float* pat, bool to_patches) {
  const int64_t P = g.C * g.p * g.p, L = g.gh * g.gw;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.gw * P));
  parallel_for(g.B * g.gh, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / g.gh, gy = t % g.gh;
      for (int64_t gx = 0; gx < g.gw; ++gx) {
        float* prow = pat + (b * L + gy * g.gw + gx) * P;
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t py = 0; py < g.p; ++py) {
            float* ip = img + ((b * g.C + c) * g.H + gy * g.p + py) * g.W + gx * g.p;
            float* pp = prow + (c * g.p + py) * g.p;
            if (to_patches) std::memcpy(pp, ip, sizeof(float) * (size_t)g.p);
            else std::memcpy(ip, pp, sizeof(float) * (size_t)g.p);
          }
      }
    }
  });
}

}  // namespace

Tensor patchify(const Tensor& x, int64_t p) {
  check_f32_cpu(x, "x");
  check_rank(x, 4, "x");
  const PatchGeom g = geometry(x.shape, p, "patchify");
  Tensor y = empty({g.B, g.gh * g.gw, g.C * p * p}, DType::F32);
  if (y.numel() == 0) return y;
  patch_copy(g, x.f32(), y.f32(), true);
  return y;
}

Tensor unpatchify(const Tensor& gp, const Shape& image_shape, int64_t p) {
  check_f32_cpu(gp, "g");
  shape_numel(image_shape);
  const PatchGeom g = geometry(image_shape, p, "unpatchify");
  check_shape(gp, {g.B, g.gh * g.gw, g.C * p * p}, "g");
  Tensor x = empty(image_shape, DType::F32);
  if (x.numel() == 0) return x;
  patch_copy(g, x.f32(), gp.f32(), false);
  return x;
}

}  // namespace vitrim::cpu
