// Launch planning shared by our tensor-core linears (gemm_f32tc.cu, gemm_bf16tc.cu): the CTA tile,
// split-K, and the split-K tile counters. See gemm_tc.cuh.
#include <algorithm>
#include <cstdlib>

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
  const int named = env_choice(env, {"128x128", "128x64", "64x128", "64x64"}, -1);  // kTiles' order
  if (named >= 0) return kTiles[named];
  for (Tile t : kTiles)
    if (tiles_of(t, M, N) >= sm_count()) return t;
  return kTiles[3];
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

}  // namespace

TcPlan tc_plan(int64_t M, int64_t N, int64_t ktiles, const char* tile_env) {
  const Tile t = pick_tile(M, N, tile_env);
  TcPlan p{t.bm, t.bn, 1, ktiles};
  const int want = pick_splits(tiles_of(t, M, N), ktiles);
  const int64_t tiles = tiles_of(kTiles[3], M, N);
  if (want > 1 && ktiles > 1) {
    // Only a forced split can meet this (the plan splits only problems with fewer tiles than SMs).
    VITRIM_CHECK(tiles <= kTcMaxTiles, Argument, "VITRIM_CUDA_GEMM_SPLITK: a split-K linear may have at most ",
                 kTcMaxTiles, " output tiles of 64x64, this one has ", tiles);
    VITRIM_CHECK(tc_counters() != nullptr, Internal, "split-K counters are not allocated");
    p.bm = p.bn = 64;  // split launches use the smallest tile (the only one the plan splits with)
    p.steps = (ktiles + want - 1) / want;
    p.splits = (int)((ktiles + p.steps - 1) / p.steps);  // no empty split
  }
  return p;
}

static int* g_counters = nullptr;

int* tc_counters() { return g_counters; }

std::string gemm_tc_init() {
  if (g_counters) return "";
  cudaError_t e = cudaMalloc(&g_counters, kTcMaxTiles * sizeof(int));
  // on our stream, waited for: the stream is non-blocking, so a plain cudaMemset (legacy default
  // stream) would not be ordered before the first split-K launch
  if (e == cudaSuccess) e = cudaMemsetAsync(g_counters, 0, kTcMaxTiles * sizeof(int), stream());
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream());
  if (e != cudaSuccess) return std::string("cannot allocate the split-K counters: ") + cudaGetErrorString(e);
  return "";
}

}  // namespace vitrim::cuda
