// bf16 linear forward on tensor cores, with bias, exact-erf GELU and the residual in its epilogue:
//   y[M, N] = act(x[M, K] w[N, K]^T + bias[N]) (+ res[M, N]),  act = identity or GELU (erf),
// x and w bf16 row-major, fp32 accumulation, y bf16 (res bf16) or float32 (res float32: autocast's
// residual stream); bias bf16 or float32, optional. An alternative to cuBLASLt for linear_fused on
// bf16, selected by VITRIM_CUDA_GEMM_BF16=mma (read per call) until a GPU run has compared the two
// (bench rows `linear bf16 ... (mma kernel)`, `gemm-tune bf16 ...`). Why it exists: cuBLASLt's
// GELU epilogue is the tanh approximation, so on its path the MLP's fc1 is a GEMM, then a separate
// pass reading and writing its [M, 4C] output again (at DeiT-S batch 256: ~0.1 ms a block on an
// H100, against ~0.1 ms for the GEMM itself). Here GELU is applied to the fp32 accumulators before
// the one rounding to bf16, so that pass disappears (and y is rounded once instead of twice).
//
// Tiling: a CTA computes a BM x BN tile of y over K in steps of 32: 128 x 128 (8 warps, 2 (M) x 4
// (N)), or 128 x 64, 64 x 128, 64 x 64 where 128 x 128 tiles would not give every SM a CTA (or as
// VITRIM_CUDA_GEMM_BF16_TILE says), and split-K where even 64 x 64 tiles leave SMs idle (tc_plan
// in gemm_tc.cu: grid z shares out the K steps, each CTA writes its fp32 partial sums, and the
// tile's last CTA adds them up in split order and runs the epilogue: splitk_finish, gemm_tc.cuh). Every warp owns a 64 x 32
// tile: 4 x 4 m16n8k16 tiles, 64 fp32 accumulators a thread. x and w tiles go global -> shared by cp.async
// (16-byte chunks, zero-filled outside the matrices) through kStages buffers, kStages - 1 K steps
// ahead of the tensor cores; one __syncthreads per step. Shared rows are 32 + 8 bf16 (80 bytes):
// the 8 row addresses of an ldmatrix then fall in 8 distinct 16-byte bank groups. Fragments come
// from ldmatrix.x4: A (x rows) plain, B (w rows = columns of x w^T) plain too, since w[N, K]
// row-major is the "col" B operand mma wants. Grid: x over the N tiles (fast), y over the M tiles,
// so the CTAs in flight share their x tile through L2; w (a few MB for a ViT) stays in L2.
//
// Needs K % 8 == 0 and 16-byte aligned x and w (linear_bf16tc_fits). Deviations from the cuBLASLt
// path: the sum over K runs in another order (within fp32 rounding); with GELU, y = bf16(gelu(acc +
// b)) where cuBLASLt + the GELU pass gives bf16(gelu(bf16(acc + b))) (eager PyTorch's numerics);
// the float32-y form matches cuBLASLt's mixed-type GEMM (one rounding).
#include <algorithm>

#include "gemm_tc.cuh"
#include "mma_bf16.cuh"

namespace vitrim::cuda {

namespace {

constexpr int kBK = 32, kLds = kBK + 8, kStages = 3;

template <int BM, int BN>
__host__ __device__ constexpr int bf16tc_threads() {
  return (BM / 64) * (BN / 32) * 32;
}
// 256-thread CTAs are held to 128 registers a thread (2 CTAs an SM), smaller ones likewise.
template <int BM, int BN>
__host__ __device__ constexpr int bf16tc_min_blocks() {
  return bf16tc_threads<BM, BN>() >= 256 ? 2 : 512 / bf16tc_threads<BM, BN>();
}
template <int BM, int BN>
constexpr size_t bf16tc_smem() {
  return (size_t)kStages * (BM + BN) * kLds * sizeof(bf16);
}

// Queues one K step of a ROWS x 32 tile of a row-major [rows, K] bf16 matrix: ROWS * 4 chunks of
// 16 bytes, spread over the CTA's THREADS threads. K % 8 == 0, so a chunk is wholly inside or outside.
template <int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* __restrict__ src, int64_t rows, int64_t K,
                                                int64_t r0, int64_t k0) {
  constexpr int kPer = ROWS * 4 / THREADS;
  static_assert(kPer * THREADS == ROWS * 4, "tile loads must divide evenly");
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int idx = (int)threadIdx.x + i * THREADS;
    const int r = idx >> 2, c = (idx & 3) * 8;
    const int64_t gr = r0 + r, gk = k0 + c;
    const bool ok = gr < rows && gk < K;
    cp_async16(dst + r * kLds + c, ok ? src + gr * K + gk : src, ok ? 16 : 0);
  }
}

__device__ __forceinline__ float2 ld_pair(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 ld_pair(const bf16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ void st_pair(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
__device__ __forceinline__ void st_pair(bf16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}

// SPLIT: a split-K launch (its own instantiation, so the others carry none of its registers).
template <int BM, int BN, bool GELU, class TY, class TB, bool SPLIT>
__global__ void __launch_bounds__(bf16tc_threads<BM, BN>(), bf16tc_min_blocks<BM, BN>())
    linear_bf16tc_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const TB* __restrict__ bias,
                         const TY* __restrict__ res, TY* __restrict__ y, int64_t M, int64_t N, int64_t K,
                         int64_t steps, float* __restrict__ part, int* __restrict__ counters) {
  constexpr int WN = BN / 32, kThreads = bf16tc_threads<BM, BN>(), kStageElems = (BM + BN) * kLds;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* smem = reinterpret_cast<bf16*>(smem_raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wm = (warp / WN) * 64, wn = (warp % WN) * 32;
  // ldmatrix row addresses: A matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in a0..a3 order; B
  // matrices (n 0-7, k 0-7 | 8-15), then (n 8-15, ...): b0, b1 of two n8 tiles.
  const int a_off = (wm + (lane & 15)) * kLds + (lane >> 4) * 8;
  const int b_off = (wn + (lane >> 4) * 8 + (lane & 7)) * kLds + ((lane >> 3) & 1) * 8;
  const int64_t n0 = (int64_t)blockIdx.x * BN;
  const int64_t ktiles = (K + kBK - 1) / kBK;
  const int64_t mtiles = (M + BM - 1) / BM;
  // This CTA's K steps [kt0, kt1) (split-K: blockIdx.z of gridDim.z splits; else all of them).
  const int64_t kt0 = (int64_t)blockIdx.z * steps, kt1 = min(ktiles, kt0 + steps), nk = kt1 - kt0;

  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {  // uniform over the CTA
    const int64_t m0 = mt * BM;
    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    // Prologue: K steps 0 .. kStages - 2 in flight, one commit group each (empty past the end, so
    // that step kt is always group kt).
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < nk) {
        bf16* st = smem + s * kStageElems;
        load_tile_async<BM, kThreads>(st, x, M, K, m0, (kt0 + s) * kBK);
        load_tile_async<BN, kThreads>(st + BM * kLds, w, N, K, n0, (kt0 + s) * kBK);
      }
      cp_async_commit();
    }
    for (int64_t kt = 0; kt < nk; ++kt) {
      cp_async_wait<kStages - 2>();  // this thread's copies of step kt have landed ...
      __syncthreads();               // ... and everyone's; and step kt - 1's buffer is free
      const int64_t pf = kt + kStages - 1;
      if (pf < nk) {
        bf16* st = smem + (int)(pf % kStages) * kStageElems;
        load_tile_async<BM, kThreads>(st, x, M, K, m0, (kt0 + pf) * kBK);
        load_tile_async<BN, kThreads>(st + BM * kLds, w, N, K, n0, (kt0 + pf) * kBK);
      }
      cp_async_commit();
      const bf16* as = smem + (int)(kt % kStages) * kStageElems;
      const bf16* bs = as + BM * kLds;
#pragma unroll
      for (int kk = 0; kk < kBK; kk += 16) {
        uint32_t b[4][2];
#pragma unroll
        for (int jp = 0; jp < 2; ++jp) {
          uint32_t r[4];
          ldsm_x4(r, bs + b_off + 16 * jp * kLds + kk);
          b[2 * jp][0] = r[0];
          b[2 * jp][1] = r[1];
          b[2 * jp + 1][0] = r[2];
          b[2 * jp + 1][1] = r[3];
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t a[4];
          ldsm_x4(a, as + a_off + 16 * i * kLds + kk);
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_bf16(acc[i][j], a, b[j][0], b[j][1]);
        }
      }
    }
    cp_async_wait<0>();  // only empty groups are left; the next tile's prologue starts from none
    __syncthreads();     // every warp is done reading the buffers the next prologue overwrites

    // Epilogue from registers: c0, c1 at (row g, columns 2t, 2t + 1), c2, c3 at row g + 8. Pairs
    // are stored as one 4-byte (bf16) or 8-byte (float32) access where N is even.
    const bool pairs = (N & 1) == 0;
    // Split-K: the tile's last CTA carries on with the sum of every split (gemm_tc.cuh).
    if (SPLIT && !splitk_finish(acc, part, counters + mt * gridDim.x + blockIdx.x, M, N, m0 + wm + g, n0 + wn + 2 * t))
      continue;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t col = n0 + wn + 8 * j + 2 * t;
        if (col >= N) continue;
        float b0 = 0.f, b1 = 0.f;
        if (bias) {
          b0 = to_f(bias[col]);
          if (col + 1 < N) b1 = to_f(bias[col + 1]);
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = m0 + wm + 16 * i + g + 8 * h;
          if (row >= M) continue;
          float v0 = acc[i][j][2 * h] + b0, v1 = acc[i][j][2 * h + 1] + b1;
          if (GELU) {
            v0 = gelu_exact(v0);
            v1 = gelu_exact(v1);
          }
          const int64_t o = row * N + col;
          if (pairs) {  // col is even, so col + 1 < N
            if (res) {
              const float2 r = ld_pair(res + o);
              v0 += r.x;
              v1 += r.y;
            }
            st_pair(y + o, v0, v1);
          } else {
            if (res) v0 += to_f(res[o]);
            y[o] = from_f<TY>(v0);
            if (col + 1 < N) {
              if (res) v1 += to_f(res[o + 1]);
              y[o + 1] = from_f<TY>(v1);
            }
          }
        }
      }
  }
}

template <int BM, int BN, bool GELU, class TY, class TB, bool SPLIT = false>
void launch_bf16tc(const bf16* x, const bf16* w, const TB* bias, const TY* res, TY* y, int64_t M, int64_t N,
                   int64_t K, const TcPlan& plan, float* part) {
  constexpr int threads = bf16tc_threads<BM, BN>();
  constexpr size_t smem = bf16tc_smem<BM, BN>();
  auto kernel = linear_bf16tc_kernel<BM, BN, GELU, TY, TB, SPLIT>;
  if (smem > 48 * 1024) {
    // Once per instantiation (a throw leaves it unset, so the next call tries again).
    static const bool raised = [&] {
      VITRIM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
      return true;
    }();
    (void)raised;
  }
  const int64_t ntiles = (N + BN - 1) / BN, mtiles = (M + BM - 1) / BM;
  VITRIM_CHECK(ntiles <= 0x7fffffff, Shape, "linear: N = ", N, " exceeds the cuda grid");
  const dim3 grid((unsigned)ntiles, (unsigned)std::min<int64_t>(mtiles, 65535), (unsigned)plan.splits);
  kernel<<<grid, threads, smem, stream()>>>(x, w, bias, res, y, M, N, K, plan.steps, part,
                                            part ? tc_counters() : nullptr);
  VITRIM_CUDA_LAUNCHED();
}

template <bool GELU, class TY, class TB>
void launch_tiled(const bf16* x, const bf16* w, const TB* bias, const TY* res, TY* y, int64_t M, int64_t N,
                  int64_t K, const TcPlan& p, float* part) {
  if (part) launch_bf16tc<64, 64, GELU, TY, TB, true>(x, w, bias, res, y, M, N, K, p, part);  // split-K
  else if (p.bm == 128 && p.bn == 128) launch_bf16tc<128, 128, GELU>(x, w, bias, res, y, M, N, K, p, part);
  else if (p.bm == 128) launch_bf16tc<128, 64, GELU>(x, w, bias, res, y, M, N, K, p, part);
  else if (p.bn == 128) launch_bf16tc<64, 128, GELU>(x, w, bias, res, y, M, N, K, p, part);
  else launch_bf16tc<64, 64, GELU>(x, w, bias, res, y, M, N, K, p, part);
}

template <class TY, class TB>
void launch_typed(const bf16* x, const bf16* w, const void* bias, const void* res, void* y, int64_t M, int64_t N,
                  int64_t K, bool gelu, const TcPlan& p, float* part) {
  const TB* b = static_cast<const TB*>(bias);
  const TY* r = static_cast<const TY*>(res);
  TY* o = static_cast<TY*>(y);
  if (gelu) launch_tiled<true>(x, w, b, r, o, M, N, K, p, part);
  else launch_tiled<false>(x, w, b, r, o, M, N, K, p, part);
}

}  // namespace

// cuBLASLt stays the default until a GPU run has compared the two (the bench's "(mma kernel)" rows).
bool linear_bf16tc_selected() { return env_choice("VITRIM_CUDA_GEMM_BF16", {"cublaslt", "mma"}, 0) == 1; }

bool linear_bf16tc_fits(const void* x, const void* w, int64_t K) {
  return K > 0 && K % 8 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)w % 16 == 0;
}

void linear_bf16tc(const bf16* x, const bf16* w, const void* bias, DType bt, const void* res, void* y, DType yt,
                   int64_t M, int64_t N, int64_t K, bool gelu) {
  if (M == 0 || N == 0) return;
  VITRIM_CHECK(yt == DType::F32 || bt == DType::BF16 || !bias, Internal,
               "linear_bf16tc: a float32 bias needs a float32 y");
  const TcPlan p = tc_plan(M, N, (K + kBK - 1) / kBK, "VITRIM_CUDA_GEMM_BF16_TILE");
  Tensor ws;
  if (p.splits > 1) ws = alloc({p.splits, M, N}, DType::F32);
  float* part = p.splits > 1 ? ptr<float>(ws) : nullptr;
  if (yt == DType::BF16) launch_typed<bf16, bf16>(x, w, bias, res, y, M, N, K, gelu, p, part);
  else if (bt == DType::F32 && bias) launch_typed<float, float>(x, w, bias, res, y, M, N, K, gelu, p, part);
  else launch_typed<float, bf16>(x, w, bias, res, y, M, N, K, gelu, p, part);
}

}  // namespace vitrim::cuda
