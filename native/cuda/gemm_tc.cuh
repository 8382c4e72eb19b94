// Internal interface between gemm.cu (linear_fused) and our tensor-core linear forwards:
// gemm_f32tc.cu (float32 in 3xTF32) and gemm_bf16tc.cu (bf16, fp32 accumulate). Both take
// y[M, N] = act(x[M, K] w[N, K]^T + bias) (+ res), act = exact-erf GELU or identity, row-major, and
// are alternatives to cuBLASLt chosen by an environment variable read per call, until a GPU run has
// compared them (bench rows `... (3xTF32 kernel)`, `... (mma kernel)`, `gemm-tune ...`).
#pragma once
#include <cstdint>
#include <string>

#include "common.cuh"

namespace vitrim::cuda {

// How a tensor-core linear is launched (gemm_tc.cu):
// - the CTA tile: the one `tile_env` names (128x128, 128x64, 64x128 or 64x64; anything else is an
//   ArgumentError naming the choices), else the largest that still gives every SM a CTA;
// - split-K: where even 64 x 64 tiles leave SMs idle (batch 1: M = 197 gives 24 tiles for a
//   384-wide output on 132 SMs), the K steps of each tile are shared out over `splits` CTAs (grid
//   z; at least 4 K steps each). They write fp32 partial sums to a workspace; the CTA that finishes
//   a tile last (a per-tile counter) adds them up in split order (deterministic) and runs the
//   epilogue (splitk_finish below): no second kernel. VITRIM_CUDA_GEMM_SPLITK=n forces n (1 = off;
//   1..64, else an ArgumentError; a split problem may have at most kTcMaxTiles output tiles).
//   A split launch uses 64 x 64 tiles, whatever the tile variable says.
// `steps` = K steps per split; splits * steps covers every K step, the last split may have fewer.
struct TcPlan {
  int bm, bn;
  int splits;
  int64_t steps;
};
TcPlan tc_plan(int64_t M, int64_t N, int64_t ktiles, const char* tile_env);

// Per-tile arrival counters for split-K, zero between launches (the last CTA of a tile resets its
// own): allocated and zeroed by gemm_init (not during a graph capture), kTcMaxTiles of them.
constexpr int64_t kTcMaxTiles = 4096;
int* tc_counters();
std::string gemm_tc_init();

// The warp-tile fragment layout of both tensor-core linears (64 x 32 per warp, m16n8 MMA tiles):
// acc[i][j][2h + e] is the element at row row0 + 16i + 8h, column col0 + 8j + e (row0, col0: this
// lane's first row and column). Calls f(acc element, row, col) for each one inside [M, N].
template <class F>
__device__ __forceinline__ void for_each_acc(float (&acc)[4][4][4], int64_t M, int64_t N, int64_t row0, int64_t col0,
                                             F&& f) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = row0 + 16 * i + 8 * h;
        if (row >= M) continue;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t col = col0 + 8 * j + e;
          if (col < N) f(acc[i][j][2 * h + e], row, col);
        }
      }
}

// Split-K, at the end of a CTA's K range: stores this CTA's sums (acc, for_each_acc's layout) to
// its slice part[blockIdx.z] of the [splits, M, N] workspace, then counts itself in on `counter`.
// Returns true in the tile's last CTA, with acc holding the sum over every split in split order
// (bitwise the same whichever CTA is last); the others return false and are done.
__device__ __forceinline__ bool splitk_finish(float (&acc)[4][4][4], float* __restrict__ part, int* counter,
                                              int64_t M, int64_t N, int64_t row0, int64_t col0) {
  __shared__ int s_last;
  const int64_t z = blockIdx.z;
  const int S = (int)gridDim.z;
  const int64_t MN = M * N;
  for_each_acc(acc, M, N, row0, col0, [&](float& v, int64_t row, int64_t col) { part[z * MN + row * N + col] = v; });
  __threadfence();  // this thread's partials are visible device-wide before the count below
  __syncthreads();
  if (threadIdx.x == 0) {
    const int before = atomicAdd(counter, 1);
    s_last = before == S - 1;
    if (s_last) *counter = 0;  // ready for the next launch (stream order)
  }
  __syncthreads();
  if (!s_last) return false;
  __threadfence();
  // every split from memory, this one's included (this thread wrote it): the same additions in the
  // same order whichever CTA is last; L2 reads (__ldcg), other SMs wrote
  for_each_acc(acc, M, N, row0, col0, [&](float& v, int64_t row, int64_t col) {
    const float* q = part + row * N + col;
    float s = 0.f;
    for (int zz = 0; zz < S; ++zz) s += __ldcg(q + zz * MN);
    v = s;
  });
  return true;
}

// VITRIM_CUDA_GEMM_F32=3xtf32: float32 linear forwards use linear_f32tc where it fits.
bool linear_f32tc_selected();
// K > 0, K % 4 == 0, x and w 16-byte aligned.
bool linear_f32tc_fits(const void* x, const void* w, int64_t K);
// bias, res may be null.
void linear_f32tc(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t M, int64_t N,
                  int64_t K, bool gelu);

// VITRIM_CUDA_GEMM_BF16=mma: bf16 linear forwards use linear_bf16tc where it fits.
bool linear_bf16tc_selected();
// K > 0, K % 8 == 0, x and w 16-byte aligned.
bool linear_bf16tc_fits(const void* x, const void* w, int64_t K);
// x, w bf16; y of dtype `yt` (bf16, or float32 for autocast's residual stream), res (optional) of
// y's dtype, bias (optional) of dtype `bt` (bf16 or float32).
void linear_bf16tc(const bf16* x, const bf16* w, const void* bias, DType bt, const void* res, void* y, DType yt,
                   int64_t M, int64_t N, int64_t K, bool gelu);

}  // namespace vitrim::cuda
