// Launch planning shared by our tensor-core linears (gemm_f32tc.cu, gemm_bf16tc.cu): the CTA tile,
// split-K, and the split-K epilogue kernel. See gemm_tc.cuh.
//
// Split-K epilogue: one thread per 4 outputs of a row where N % 4 == 0 (float4 reads of every
// split's partial), else one per output; the partials are summed in split order, then bias, GELU
// (exact erf) and the residual are applied in fp32 and y is rounded once. It reads splits * M * N
// floats: small where split-K is chosen (only problems too small to fill the GPU).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gemm_tc.cuh"

namespace vitrim::cuda {

namespace {

constexpr int kMinStepsPerSplit = 4;
constexpr int kMaxSplits = 64;

struct Tile {
  int bm, bn;
};
constexpr Tile kTiles[] = {{128, 128}, {128, 64}, {64, 128}, {64, 64}};

int64_t tiles_of(Tile t, int64_t M, int64_t N) { return ((M + t.bm - 1) / t.bm) * ((N + t.bn - 1) / t.bn); }

Tile pick_tile(int64_t M, int64_t N, const char* env) {
  const char* e = std::getenv(env);
  if (!e || !*e) {
    for (Tile t : kTiles)
      if (tiles_of(t, M, N) >= sm_count()) return t;
    return kTiles[3];
  }
  for (Tile t : kTiles) {
    char name[16];
    std::snprintf(name, sizeof name, "%dx%d", t.bm, t.bn);
    if (std::strcmp(e, name) == 0) return t;
  }
  fail(ErrorKind::Argument, env, " must be 128x128, 128x64, 64x128 or 64x64, got '", e, "'");
}

int pick_splits(int64_t tiles, int64_t ktiles) {
  const char* e = std::getenv("VITRIM_CUDA_GEMM_SPLITK");
  if (e && *e) {
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    VITRIM_CHECK(*end == 0 && v >= 1 && v <= kMaxSplits, Argument, "VITRIM_CUDA_GEMM_SPLITK must be an integer in [1, ",
                 kMaxSplits, "], got '", e, "'");
    return (int)v;
  }
  if (tiles >= sm_count()) return 1;
  const int64_t want = (sm_count() + tiles - 1) / tiles;
  return (int)std::max<int64_t>(1, std::min<int64_t>({want, ktiles / kMinStepsPerSplit, kMaxSplits}));
}

template <class T>
__device__ __forceinline__ float ld_opt(const T* p, int64_t i) {
  return p ? to_f(p[i]) : 0.f;
}

template <class TY, class TB, bool GELU>
__global__ void splitk_epilogue_kernel(const float* __restrict__ part, int splits, const TB* __restrict__ bias,
                                       const TY* __restrict__ res, TY* __restrict__ y, int64_t M, int64_t N) {
  const int64_t MN = M * N;
  const bool quads = (N & 3) == 0;
  const int64_t n_items = quads ? MN / 4 : MN;
  for (int64_t it = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; it < n_items; it += (int64_t)gridDim.x * blockDim.x) {
    if (quads) {
      const int64_t o = it * 4;
      float4 s = reinterpret_cast<const float4*>(part)[it];
      for (int z = 1; z < splits; ++z) {
        const float4 p = reinterpret_cast<const float4*>(part + z * MN)[it];
        s.x += p.x;
        s.y += p.y;
        s.z += p.z;
        s.w += p.w;
      }
      float v[4] = {s.x, s.y, s.z, s.w};
      const int64_t col = o % N;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        v[k] += ld_opt(bias, col + k);
        if (GELU) v[k] = gelu_exact(v[k]);
        v[k] += ld_opt(res, o + k);
        y[o + k] = from_f<TY>(v[k]);
      }
    } else {
      float v = part[it];
      for (int z = 1; z < splits; ++z) v += part[z * MN + it];
      v += ld_opt(bias, it % N);
      if (GELU) v = gelu_exact(v);
      v += ld_opt(res, it);
      y[it] = from_f<TY>(v);
    }
  }
}

template <class TY, class TB>
void launch_epilogue(const float* part, int splits, const void* bias, const void* res, void* y, int64_t M, int64_t N,
                     bool gelu) {
  const int64_t items = (N % 4 == 0) ? M * N / 4 : M * N;
  const TB* b = static_cast<const TB*>(bias);
  const TY* r = static_cast<const TY*>(res);
  TY* o = static_cast<TY*>(y);
  if (gelu) splitk_epilogue_kernel<TY, TB, true><<<grid_for(items, 256), 256, 0, stream()>>>(part, splits, b, r, o, M, N);
  else splitk_epilogue_kernel<TY, TB, false><<<grid_for(items, 256), 256, 0, stream()>>>(part, splits, b, r, o, M, N);
  VITRIM_CUDA_LAUNCHED();
}

}  // namespace

TcPlan tc_plan(int64_t M, int64_t N, int64_t ktiles, const char* tile_env) {
  const Tile t = pick_tile(M, N, tile_env);
  TcPlan p{t.bm, t.bn, 1, ktiles};
  const int want = pick_splits(tiles_of(t, M, N), ktiles);
  if (want > 1 && ktiles > 1) {
    p.steps = (ktiles + want - 1) / want;
    p.splits = (int)((ktiles + p.steps - 1) / p.steps);  // no empty split
  }
  return p;
}

void tc_splitk_epilogue(const float* part, int splits, const void* bias, DType bt, const void* res, void* y, DType yt,
                        int64_t M, int64_t N, bool gelu) {
  if (M == 0 || N == 0) return;
  if (yt == DType::BF16) launch_epilogue<bf16, bf16>(part, splits, bias, res, y, M, N, gelu);
  else if (bias && bt == DType::BF16) launch_epilogue<float, bf16>(part, splits, bias, res, y, M, N, gelu);
  else launch_epilogue<float, float>(part, splits, bias, res, y, M, N, gelu);
}

}  // namespace vitrim::cuda
