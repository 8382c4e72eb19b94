// float32 linear forward on tensor cores with fp32 accuracy (3xTF32, see mma_tf32.cuh):
//   y[M, N] = act(x[M, K] w[N, K]^T + bias[N]) (+ res[M, N]),  act = identity or exact-erf GELU,
// all row-major float32, bias / res optional. An alternative to cuBLASLt's SGEMM (fp32 FMA) for
// linear_fused in float32 with TF32 off, selected by VITRIM_CUDA_GEMM_F32=3xtf32 (read per call)
// until a GPU run has compared the two (bench rows `linear float32 ... (3xTF32 kernel)` and
// `gemm-tune ...`). Its epilogue also applies GELU and the residual from registers, so the fc1
// GELU pass of the cuBLASLt path disappears.
//
// Tiling: a CTA computes a BM x BN tile of y over K in steps of 16: 128 x 128 (8 warps in a 2 (M)
// x 4 (N) grid), or 128 x 64, 64 x 128, 64 x 64 where 128 x 128 tiles would not give every SM a
// CTA (or as VITRIM_CUDA_GEMM_F32_TILE says), and split-K where even 64 x 64 tiles leave SMs idle
// (tc_plan in gemm_tc.cu, as the bf16 linear). Every warp owns a 64 x 32 tile, i.e. 4 x 4 m16n8k8
// tiles of fp32 accumulators (64 registers a thread). x and w tiles are staged in shared memory
// as fp32, row stride 16 + 4 floats: the fragment reads (row g, column t) then hit 32 distinct
// banks. Two buffers: the next K step is loaded into registers (float4, zero outside the
// matrices) while the tensor cores work on the current one, then stored into the other buffer;
// one __syncthreads per step. Each fragment element is split into tf32 hi / lo as it is read (the
// B fragments once per 8-wide k slice, A per m16 tile, so that one A fragment pair is live).
// Grid: x over the N tiles (fast), y over the M tiles, so that the CTAs in flight share their x
// tile through L2 and read it from DRAM about once; w (at most a few MB for a ViT) stays in L2.
//
// Needs K % 4 == 0 and 16-byte aligned x and w (float4 loads): linear_f32tc_fits. Deviation from
// cuBLASLt: the sum over K is in a different order (per 8-wide step, split products small first),
// within fp32 rounding of it (the tests compare both to the CPU at 1e-5).
#include <algorithm>

#include "gemm_tc.cuh"
#include "mma_tf32.cuh"

namespace vitrim::cuda {

namespace {

constexpr int kBK = 16, kLds = kBK + 4;

// One K step of a ROWS x 16 tile of a row-major [rows, K] matrix: ROWS * 4 float4, spread over the
// CTA's THREADS threads.
template <int ROWS, int THREADS>
struct TileRegs {
  static constexpr int kPer = ROWS * 4 / THREADS;
  static_assert(kPer * THREADS == ROWS * 4, "tile loads must divide evenly");
  float4 v[kPer];

  __device__ __forceinline__ void load(const float* __restrict__ src, int64_t rows, int64_t K, int64_t r0, int64_t k0) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = (int)threadIdx.x + i * THREADS;
      const int64_t gr = r0 + (idx >> 2), gk = k0 + (idx & 3) * 4;
      v[i] = (gr < rows && gk < K) ? *reinterpret_cast<const float4*>(src + gr * K + gk) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
  __device__ __forceinline__ void store(float* __restrict__ dst) const {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = (int)threadIdx.x + i * THREADS;
      *reinterpret_cast<float4*>(dst + (idx >> 2) * kLds + (idx & 3) * 4) = v[i];
    }
  }
};

// BM x BN CTA tile of (BM / 64) x (BN / 32) warps, each 64 x 32.
// Registers: 64 accumulators, the fragments and the prefetch (more per thread in the smaller CTAs).
// 256-thread CTAs are held to 128 a thread (2 CTAs an SM), the smaller ones to about 170.
template <int BM, int BN>
constexpr int f32tc_min_blocks() {
  constexpr int threads = (BM / 64) * (BN / 32) * 32;
  return threads >= 256 ? 2 : 384 / threads;
}

// SPLIT: a split-K launch (its own instantiation, so the others carry none of its registers).
template <int BM, int BN, bool GELU, bool SPLIT>
__global__ void __launch_bounds__((BM / 64) * (BN / 32) * 32, f32tc_min_blocks<BM, BN>())
    linear_f32tc_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                        const float* __restrict__ res, float* __restrict__ y, int64_t M, int64_t N, int64_t K,
                        int64_t steps, float* __restrict__ part, int* __restrict__ counters) {
  constexpr int kBM = BM, kBN = BN, WN = BN / 32, kThreads = (BM / 64) * WN * 32;
  __shared__ __align__(16) float As[2][kBM * kLds];
  __shared__ __align__(16) float Bs[2][kBN * kLds];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wm = (warp / WN) * 64, wn = (warp % WN) * 32;
  const int64_t n0 = (int64_t)blockIdx.x * kBN;
  const int64_t ktiles = (K + kBK - 1) / kBK;
  const int64_t mtiles = (M + kBM - 1) / kBM;
  // This CTA's K steps [kt0, kt1) (split-K: blockIdx.z of gridDim.z splits; else all of them).
  const int64_t kt0 = (int64_t)blockIdx.z * steps, kt1 = min(ktiles, kt0 + steps), nk = kt1 - kt0;

  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {  // uniform over the CTA
    const int64_t m0 = mt * kBM;
    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    TileRegs<kBM, kThreads> ra;
    TileRegs<kBN, kThreads> rb;
    ra.load(x, M, K, m0, kt0 * kBK);
    rb.load(w, N, K, n0, kt0 * kBK);
    ra.store(As[0]);
    rb.store(Bs[0]);
    __syncthreads();
    for (int64_t kt = 0; kt < nk; ++kt) {
      const int buf = (int)(kt & 1);
      const bool more = kt + 1 < nk;
      if (more) {
        ra.load(x, M, K, m0, (kt0 + kt + 1) * kBK);
        rb.load(w, N, K, n0, (kt0 + kt + 1) * kBK);
      }
      const float* as = As[buf];
      const float* bs = Bs[buf];
#pragma unroll
      for (int kk = 0; kk < kBK; kk += 8) {
        uint32_t bh[4][2], bl[4][2];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float* bp = bs + (wn + 8 * j + g) * kLds + kk + t;
          split_tf32(bp[0], bh[j][0], bl[j][0]);
          split_tf32(bp[4], bh[j][1], bl[j][1]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float* ap = as + (wm + 16 * i + g) * kLds + kk + t;
          uint32_t ah[4], al[4];
          split_tf32(ap[0], ah[0], al[0]);
          split_tf32(ap[8 * kLds], ah[1], al[1]);
          split_tf32(ap[4], ah[2], al[2]);
          split_tf32(ap[8 * kLds + 4], ah[3], al[3]);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            mma_tf32(acc[i][j], al, bh[j][0], bh[j][1]);  // the small terms first, the large last
            mma_tf32(acc[i][j], ah, bl[j][0], bl[j][1]);
            mma_tf32(acc[i][j], ah, bh[j][0], bh[j][1]);
          }
        }
      }
      if (more) {
        // The other buffer was last read in step kt - 1, which every warp finished before the
        // __syncthreads that ended it.
        ra.store(As[buf ^ 1]);
        rb.store(Bs[buf ^ 1]);
      }
      __syncthreads();
    }

    // Split-K: the tile's last CTA carries on with the sum of every split (gemm_tc.cuh).
    if (SPLIT && !splitk_finish(acc, part, counters + mt * gridDim.x + blockIdx.x, M, N, m0 + wm + g, n0 + wn + 2 * t))
      continue;
    // Epilogue from registers (c0, c1 at row g, columns 2t, 2t + 1; c2, c3 at row g + 8).
    for_each_acc(acc, M, N, m0 + wm + g, n0 + wn + 2 * t, [&](float v, int64_t row, int64_t c) {
      if (bias) v += bias[c];
      if (GELU) v = gelu_exact(v);
      if (res) v += res[row * N + c];
      y[row * N + c] = v;
    });
  }
}

}  // namespace

// cuBLASLt's SGEMM stays the default until a GPU run has compared the two ("(3xTF32 kernel)" rows).
bool linear_f32tc_selected() { return env_choice("VITRIM_CUDA_GEMM_F32", {"cublaslt", "3xtf32"}, 0) == 1; }

namespace {
template <int BM, int BN, bool SPLIT = false>
void launch_tile(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t M, int64_t N,
                 int64_t K, bool gelu, const TcPlan& plan, float* part) {
  constexpr int threads = (BM / 64) * (BN / 32) * 32;
  const int64_t ntiles = (N + BN - 1) / BN, mtiles = (M + BM - 1) / BM;
  VITRIM_CHECK(ntiles <= 0x7fffffff, Shape, "linear: N = ", N, " exceeds the cuda grid");
  const dim3 grid((unsigned)ntiles, (unsigned)std::min<int64_t>(mtiles, 65535), (unsigned)plan.splits);
  if (gelu)
    linear_f32tc_kernel<BM, BN, true, SPLIT><<<grid, threads, 0, stream()>>>(x, w, bias, res, y, M, N, K, plan.steps, part,
                                                                       part ? tc_counters() : nullptr);
  else
    linear_f32tc_kernel<BM, BN, false, SPLIT><<<grid, threads, 0, stream()>>>(x, w, bias, res, y, M, N, K, plan.steps, part,
                                                                       part ? tc_counters() : nullptr);
  VITRIM_CUDA_LAUNCHED();
}
}  // namespace

bool linear_f32tc_fits(const void* x, const void* w, int64_t K) {
  return K > 0 && K % 4 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)w % 16 == 0;
}

void linear_f32tc(const float* x, const float* w, const float* bias, const float* res, float* y, int64_t M, int64_t N,
                  int64_t K, bool gelu) {
  if (M == 0 || N == 0) return;
  const TcPlan p = tc_plan(M, N, (K + kBK - 1) / kBK, "VITRIM_CUDA_GEMM_F32_TILE");
  Tensor ws;
  if (p.splits > 1) ws = alloc({p.splits, M, N}, DType::F32);
  float* part = p.splits > 1 ? ptr<float>(ws) : nullptr;
  if (part) launch_tile<64, 64, true>(x, w, bias, res, y, M, N, K, gelu, p, part);  // split-K
  else if (p.bm == 128 && p.bn == 128) launch_tile<128, 128>(x, w, bias, res, y, M, N, K, gelu, p, part);
  else if (p.bm == 128) launch_tile<128, 64>(x, w, bias, res, y, M, N, K, gelu, p, part);
  else if (p.bn == 128) launch_tile<64, 128>(x, w, bias, res, y, M, N, K, gelu, p, part);
  else launch_tile<64, 64>(x, w, bias, res, y, M, N, K, gelu, p, part);
}

}  // namespace vitrim::cuda
