// Fused multi-head attention on CUDA: attention_forward / attention_backward with the semantics of
// native/cpu/attention.cpp (timm's fused qkv [B, N, 3C], q | k | v each C = H*D head-major; out
// [B, N, C]; DynamicViT's keep mask with the diagonal kept and its eps smoothing; head_gate [B, H]
// scaling each head's output), plus the kernels behind attention_varlen_forward
// (attention_varlen.cu validates and calls attn::varlen_forward below).
//
// ---- stats (opaque; returned by the forward, handed back to the backward) ----
// float32 [B, H, N, 3]: per query row i of head (b, h)
//   [0] m_i   = max_j s_ij in log2 units (s_ij = scale * log2(e) * q_i.k_j; every exp here is exp2)
//   [1] den_i = l_i = sum_j exp2(s_ij - m_i) (plain) or Z_i + eps (keep)
//   [2] the first j with s_ij = m_i, as a float (exact: N < 2^24 is enforced); used only with keep,
//       for the gradient of DynamicViT's non-detached row max. The backward compares it to key
//       indices and never dereferences it, so a tampered stats tensor cannot fault.
// It differs from the CPU's [B, H, N, 2] (natural-log max, denominator); the two are not mixed
// (a cpu stats tensor is rejected by the device check before it reaches this file).
//
// ---- paths ----
// * Tensor cores (bfloat16, D in {32, 64, 128}): mma.sync m16n8k16 bf16 -> fp32 via inline PTX.
//   Forward: one CTA per (b, h, tile of 16*W query rows), W warps of 16 rows each (W <= 8, chosen
//   so tiles are balanced: N = 197 -> 2 CTAs of 7 warps per head). K and V are staged in shared
//   memory in fills of up to 256 rows (128 for D = 128; at ViT lengths a fill holds the whole
//   head: 208 x 72 bf16 each), zero-padded to a multiple of 16 rows; each warp keeps its Q
//   fragments in registers and runs an online softmax (fp32) over 64-key sub-chunks: S = Q K^T
//   (mma), scale/mask (keys >= N get -inf), row max over the quad, rescale O and l, P = exp2(S - m)
//   (times the keep factor), P (bf16, straight from the accumulator registers) @ V (mma, V
//   fragments by ldmatrix.trans). Only 16-key blocks that hold a valid key are computed, so N is
//   effectively padded to a multiple of 16, not of 64.
//   Backward (FlashAttention-2 style, deterministic: no atomics):
//     pre:   D_i = go_i.out_i / g  (= sum_j P_ij go_i.v_j, ungated) per row; for heads whose gate
//            is 0, tiny or not finite (where out carries no information) D_i is recomputed by
//            the forward kernel in a "D" mode (O ungated, dotted with go) that skips other heads.
//            With keep also gvb_i = go_i . mean_j v_j (for the argmax term).
//     dK/dV: one CTA per (b, h, tile of 16*W keys, W <= 4), each warp 16 keys with K and V fragments in
//            registers; Q and dO staged in shared memory (fills of <= 256 rows) with m, 1/den, D,
//            and (keep) the argmax correction and index per query; per 16-query block: S^T = K Q^T,
//            P^T, dV += P^T dO, G^T = V dO^T, dS^T, dK += dS^T Q; gkeep partials per (b, h, key).
//     dQ:    one CTA per (b, h, query tile) as the forward, K and V staged: S, G = dO V^T, dS,
//            dQ += dS K.
//     then gkeep = sum over heads of the partials, ghead_gate = sum_i D_i (fixed-order sums).
// * Tensor cores, float32 with D in {32, 64} (forward and varlen forward): 3xTF32, fp32 accuracy
//   (see fwd_f32tc: each operand split into two tf32 parts, three mma.sync m16n8k8 per product,
//   never plain TF32). The structure of the bf16 forward with W <= 4 warps, K and V staged as fp32
//   (row stride D + 4) in fills of <= 128 rows (256 at D = 32), 8-key blocks. Its stats are those of
//   the SIMT forward (the float32 backward, SIMT, reads them). VITRIM_CUDA_ATTN_F32=simt selects
//   the SIMT forward instead (bench and tests compare the two).
// * SIMT (float32 backward, forward at other head dims: fp32 FMA, never TF32; bfloat16 with other
//   head dims), D <= 128:
//   256 threads as 16 x 16, 64 x 64 tiles, each thread a 4 x 4 micro-tile of S (rows ty + 16r,
//   keys tx + 16c: conflict-free float4 shared loads, broadcast on the row operand) and 4 x DV of
//   the output (DV = 2, 4, 8 dims: D <= 32, 64, 128). Q, K, V (and dO) tiles are staged as fp32 in
//   shared memory, row-padded to 16-row blocks; the S micro-kernel is instantiated for the number
//   of valid 16-row and 16-column blocks (1..4 each), so the padding work is that of 16-blocks.
//   P goes through shared memory (transposed, float4) into the P @ V micro-kernel. The backward
//   has the same three passes as above with these tiles.
// D > 128 is rejected on cuda (ErrorKind::Shape); the CPU handles any D.
//
// Validation mirrors the CPU's check_attention (same error kinds). The keep range check ([0, 1],
// NaN rejected) runs in a small kernel that sets a device flag, read back (one stream sync) after
// the op's kernels are queued: ErrorKind::Argument as on the CPU. keep and head_gate may be
// float32 or the dtype of qkv; their gradients take their dtype. gout and out take qkv's dtype.
// All accumulation is fp32 (the head-gate gradient sums in double).
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "attention.cuh"
#include "mma_bf16.cuh"
#include "mma_tf32.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

namespace {

constexpr double kLog2e = 1.4426950408889634;  // scores are kept in log2 units
constexpr unsigned kFull = 0xffffffffu;

// ============================================================================================
// Parameters and task decoding
// ============================================================================================

struct FwdParams {
  const void* qkv;      // T [rows, 3C]
  void* out;            // T [rows, C] (output mode)
  float* stats;         // [B*H, N, 3] or null (varlen)
  const float* keep;    // [B, N] or null
  const float* gate;    // [B, H] (dense) / [S, H] (varlen) or null
  const void* gout;     // T [rows, C] (D-recompute mode)
  float* dvals;         // [B*H, N] (D-recompute mode)
  const int4* tasks;    // varlen: {sequence, head, first query row, 0} per CTA; null when dense
  const int32_t* cu;    // varlen: cu_seqlens on the device
  int64_t C;            // channels of q (= H*D); qkv rows have 3C
  int H, N, D;          // heads, dense sequence length, head dim
  int ntiles;           // dense: query tiles per (b, h)
  int rows;             // query rows per CTA
  int fill;             // tensor-core kernels: key rows staged per fill
  float scale2;         // scale * log2(e)
  float eps;
};

struct Task {
  int64_t row0;   // first row of the sequence in qkv / out
  int64_t gidx;   // index into the gate (b*H + h or s*H + h)
  int64_t sbase;  // (b*H + h) * N: row base in stats / dvals (dense)
  int n, h, q0;   // sequence length, head, first query row of this CTA (sequence-local)
};

__device__ __forceinline__ Task decode(const FwdParams& p) {
  Task t;
  if (p.tasks) {
    const int4 v = p.tasks[blockIdx.x];
    t.row0 = p.cu[v.x];
    t.n = p.cu[v.x + 1] - p.cu[v.x];
    t.h = v.y;
    t.q0 = v.z;
    t.gidx = (int64_t)v.x * p.H + v.y;
    t.sbase = 0;
  } else {
    const int64_t bid = blockIdx.x;
    const int64_t bh = bid / p.ntiles;
    const int64_t b = bh / p.H;
    t.h = (int)(bh - b * p.H);
    t.q0 = (int)(bid - bh * p.ntiles) * p.rows;
    t.row0 = b * p.N;
    t.n = p.N;
    t.gidx = bh;
    t.sbase = bh * p.N;
  }
  return t;
}

struct BwdParams {
  const void* qkv;         // T [B*N, 3C]
  const void* gout;        // T [B*N, C]
  void* gqkv;              // T [B*N, 3C]
  const float* stats;      // [B*H, N, 3]
  const float* keep;       // [B, N] or null
  const float* gate;       // [B, H] or null
  const float* dvals;      // [B*H, N]: D_i
  const float* gvb;        // [B*H, N]: go_i . mean_j v_j (keep)
  float* gkeep_part;       // [B*H, N] (keep)
  int64_t C;
  int H, N, D;
  int ntiles, rows, fill;  // tiles per (b, h), rows (queries or keys) per CTA, staged rows per fill
  float scale, scale2, eps;
};

// A gate whose output still tells D_i = go.out / g: finite and not tiny. Others recompute D.
__device__ __forceinline__ bool gate_usable(float g) { return isfinite(g) && fabsf(g) >= 1e-30f; }

// Per query row i (sequence-local) of head bh: the saved max (log2), 1/den, D_i, and with keep the
// argmax correction eps*g/den*(D_i - mean_j G_ij) and the argmax index.
struct RowInfo {
  float m2, rden, dv, corr;
  int am;
};
template <bool KEEP>
__device__ __forceinline__ RowInfo row_info(const BwdParams& p, int64_t bh, int i, float g) {
  RowInfo r;
  const int64_t k = bh * p.N + i;
  const float* st = p.stats + k * 3;
  r.m2 = st[0];
  r.rden = 1.f / st[1];
  r.dv = p.dvals[k];
  r.corr = 0.f;
  r.am = -1;
  if (KEEP) {
    r.corr = p.eps * g * r.rden * (r.dv - p.gvb[k]);
    r.am = (int)st[2];
  }
  return r;
}
__device__ __forceinline__ RowInfo row_info_none() { return RowInfo{0.f, 0.f, 0.f, 0.f, -1}; }

// Tensor-core helpers (bf16 m16n8k16, fp32 accumulate): mma_bf16.cuh has the fragment layouts.
// A C tile over keys 16kb..16kb+15 (two n8 blocks) is, packed to bf16, the A fragment of those keys.
__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }
__device__ __forceinline__ void st_bf16x2(bf16* p, float lo, float hi) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(lo, hi);
}
__device__ __forceinline__ float2 ld_bf16x2(const bf16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

// A fragments of 16 rows x D of a row-major bf16 matrix (row stride ld elements), rows >= nvalid
// (counted from `first`) read as 0.
template <int D>
__device__ __forceinline__ void load_a_frags(uint32_t (&fr)[D / 16][4], const bf16* base, int64_t row_ld, int first,
                                             int nvalid, int gr, int tq) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int r = first + gr + (x & 1) * 8, c = 16 * kk + 2 * tq + (x >> 1) * 8;
      fr[kk][x] = r < nvalid ? ld32(base + (int64_t)r * row_ld + c) : 0u;
    }
}

// acc (16 rows x 8 columns) += A (fragments, 16 x D) . Bs[col0 .. col0+7][0 .. D)^T, Bs row-major
// in shared memory with row stride LD: the B operand "k = dim, n = row of Bs".
template <int D, int LD>
__device__ __forceinline__ void mma_rows(float (&acc)[4], const uint32_t (&a)[D / 16][4], const bf16* Bs, int col0,
                                         int gr, int tq) {
  const bf16* p = Bs + (col0 + gr) * LD + 2 * tq;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) mma_bf16(acc, a[kk], ld32(p + 16 * kk), ld32(p + 16 * kk + 8));
}

// acc[D/8][4] (16 x D) += P (16 x 16, A fragment) . Vs[k0 .. k0+15][0 .. D): the B operand
// "k = row of Vs, n = dim", loaded transposed by ldmatrix.
template <int D, int LD>
__device__ __forceinline__ void mma_pv(float (&acc)[D / 8][4], const uint32_t (&pa)[4], const bf16* Vs, int k0,
                                       int lane) {
  const bf16* p = Vs + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
  for (int dn = 0; dn < D / 16; ++dn) {
    uint32_t b[4];
    ldsm_x4_trans(b, p + 16 * dn);
    mma_bf16(acc[2 * dn], pa, b[0], b[1]);
    mma_bf16(acc[2 * dn + 1], pa, b[2], b[3]);
  }
}

__device__ __forceinline__ void pack_a(uint32_t (&pa)[4], const float (&s0)[4], const float (&s1)[4]) {
  pa[0] = pack_bf16(s0[0], s0[1]);
  pa[1] = pack_bf16(s0[2], s0[3]);
  pa[2] = pack_bf16(s1[0], s1[1]);
  pa[3] = pack_bf16(s1[2], s1[3]);
}

__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFull, v, 1);
  return v + __shfl_xor_sync(kFull, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFull, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFull, v, 2));
}
__device__ __forceinline__ int quad_min(int v) {
  v = min(v, __shfl_xor_sync(kFull, v, 1));
  return min(v, __shfl_xor_sync(kFull, v, 2));
}

// Stage rows [first, first + fpad) of a bf16 matrix (row stride ld) into Ss (row stride LD), rows
// >= fn (relative) as zeros; D/8 uint4 per row (16-byte aligned: D % 16 == 0, ld % 8 == 0).
template <int D, int LD>
__device__ __forceinline__ void stage_rows(bf16* Ss, const bf16* src, int64_t row_ld, int first, int fn, int fpad) {
  for (int e = threadIdx.x; e < fpad * (D / 8); e += blockDim.x) {
    const int r = e / (D / 8), c = (e - r * (D / 8)) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < fn) v = *reinterpret_cast<const uint4*>(src + (int64_t)(first + r) * row_ld + c);
    *reinterpret_cast<uint4*>(Ss + r * LD + c) = v;
  }
}

// Stage rows [first, first + fpad) of a float32 matrix (row stride ld) into Ss (row stride LD), rows
// >= fn (relative) as zeros; D/4 float4 per row (16-byte aligned: D % 4 == 0, ld % 4 == 0).
template <int D, int LD>
__device__ __forceinline__ void stage_rows(float* Ss, const float* src, int64_t row_ld, int first, int fn, int fpad) {
  for (int e = threadIdx.x; e < fpad * (D / 4); e += blockDim.x) {
    const int r = e / (D / 4), c = (e - r * (D / 4)) * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < fn) v = *reinterpret_cast<const float4*>(src + (int64_t)(first + r) * row_ld + c);
    *reinterpret_cast<float4*>(Ss + r * LD + c) = v;
  }
}

// One fill of the tensor-core forwards: K and V rows [f0, f0 + fpad) of the head staged (rows >= fn
// zero), keep's values for them and, with keep, the running column sums of V (the eps/N term;
// column d owned by one thread, summed in key order). Starts and ends with a barrier.
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(float v) { return v; }
template <int D, int LD, bool KEEP, class T>
__device__ __forceinline__ void stage_fill(T* Ks, T* Vs, float* keep_s, float* vsum_s, const FwdParams& p,
                                           const Task& tk, const T* qb, int f0, int fn, int fpad) {
  const int64_t C3 = 3 * p.C;
  __syncthreads();  // the previous fill's readers are done
  stage_rows<D, LD>(Ks, qb + p.C, C3, f0, fn, fpad);
  stage_rows<D, LD>(Vs, qb + 2 * p.C, C3, f0, fn, fpad);
  if (KEEP)
    for (int j = threadIdx.x; j < fpad; j += blockDim.x) keep_s[j] = j < fn ? p.keep[tk.row0 + f0 + j] : 0.f;
  __syncthreads();
  if (KEEP)
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float a = f0 ? vsum_s[d] : 0.f;
      for (int r = 0; r < fn; ++r) a += to_f(Vs[r * LD + d]);
      vsum_s[d] = a;
    }
}

// varlen: the output of a head whose gate is 0 (not computed) is 0, for this CTA's query rows.
template <class T, int D>
__device__ __forceinline__ void zero_head(const FwdParams& p, const Task& tk) {
  T* o = static_cast<T*>(p.out) + tk.row0 * p.C + (int64_t)tk.h * D;
  const int nr = min(p.rows, tk.n - tk.q0);
  for (int e = threadIdx.x; e < nr * D; e += blockDim.x) o[(int64_t)(tk.q0 + e / D) * p.C + e % D] = T(0.f);
}

// The running state of a warp's 16 query rows in the tensor-core forwards: O (C-fragment layout:
// rows gr / gr + 8, dims 8nd + 2tq, +1), the row max (log2 units), the denominator, the first argmax.
template <int ND>
struct RowState {
  float o[ND][4] = {};
  float mrow[2] = {-INFINITY, -INFINITY};
  float lrow[2] = {0.f, 0.f};
  int amax[2] = {0, 0};
};

// One 64-key chunk of the online softmax, shared by the tensor-core forwards (bf16 and 3xTF32):
// s holds raw scores q.k of keys c0 + 8nb + 2tq + (e & 1) (C-fragment layout, rows gr and gr + 8 of
// the warp's 16); keys >= fn (fill-local) are masked. Updates the running max (log2 units), the
// first argmax (KEEP), rescales O and l, and leaves in s the unnormalised P (times keep, off the
// diagonal) that the P @ V step consumes.
template <int ND, bool KEEP>
__device__ __forceinline__ void online_softmax(float (&s)[8][4], RowState<ND>& st, int c0, int fn, int f0, int i0,
                                               int gr, int tq, const float* keep_s, float scale2) {
  float(&o)[ND][4] = st.o;
  float(&mrow)[2] = st.mrow;
  float(&lrow)[2] = st.lrow;
  int(&amax)[2] = st.amax;
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nb = 0; nb < 8; ++nb)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = c0 + 8 * nb + 2 * tq + (e & 1);
      const float v = j < fn ? s[nb][e] * scale2 : -INFINITY;
      s[nb][e] = v;
      mx[e >> 1] = fmaxf(mx[e >> 1], v);
    }
  mx[0] = quad_max(mx[0]);
  mx[1] = quad_max(mx[1]);
  if (KEEP) {  // first argmax: the smallest key index holding the row max
    int ai[2] = {INT_MAX, INT_MAX};
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = c0 + 8 * nb + 2 * tq + (e & 1);
        if (s[nb][e] == mx[e >> 1] && j < ai[e >> 1]) ai[e >> 1] = j;
      }
    ai[0] = quad_min(ai[0]);
    ai[1] = quad_min(ai[1]);
#pragma unroll
    for (int r = 0; r < 2; ++r)
      if (mx[r] > mrow[r]) amax[r] = f0 + ai[r];  // ties keep the earlier index
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float mn = fmaxf(mrow[r], mx[r]);
    const float alpha = exp2f(mrow[r] - mn);  // 0 on the first chunk (mrow = -inf)
    mrow[r] = mn;
    lrow[r] *= alpha;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      o[nd][2 * r] *= alpha;
      o[nd][2 * r + 1] *= alpha;
    }
  }
#pragma unroll
  for (int nb = 0; nb < 8; ++nb)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = c0 + 8 * nb + 2 * tq + (e & 1), r = e >> 1;
      float pv = exp2f(s[nb][e] - mrow[r]);  // masked keys: exp2(-inf) = 0
      if (KEEP && j < fn && f0 + j != i0 + gr + 8 * r) pv *= keep_s[j];
      s[nb][e] = pv;
      lrow[r] += pv;
    }
}

// The output rows of a tensor-core forward (or, DREC, D_i = go_i . O_i / den_i into dvals): O from
// the accumulators (C-fragment layout: dims 8nd + 2tq, +1), the eps/N term (KEEP), the gate, the
// stats row [max, den, first argmax].
__device__ __forceinline__ void st_pair(bf16* p, float lo, float hi) { st_bf16x2(p, lo, hi); }
__device__ __forceinline__ void st_pair(float* p, float lo, float hi) {
  *reinterpret_cast<float2*>(p) = make_float2(lo, hi);
}
__device__ __forceinline__ float2 ld_pair(const bf16* p) { return ld_bf16x2(p); }
__device__ __forceinline__ float2 ld_pair(const float* p) { return *reinterpret_cast<const float2*>(p); }

template <class T, int ND, bool KEEP, bool DREC>
__device__ __forceinline__ void finish_rows(const FwdParams& p, const Task& tk, float g, const RowState<ND>& st,
                                            const float* vsum_s, int i0, int gr, int tq) {
  const float(&o)[ND][4] = st.o;
  const float(&mrow)[2] = st.mrow;
  const float(&lrow)[2] = st.lrow;
  const int(&amax)[2] = st.amax;
  constexpr int D = 8 * ND;
  const int n = tk.n;
  const int64_t C = p.C;
  const float addc = KEEP ? p.eps / (float)n : 0.f;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + gr + 8 * r;
    const float den = quad_sum(lrow[r]) + (KEEP ? p.eps : 0.f);
    const float rden = 1.f / den;
    if (!DREC) {
      if (i < n) {
        T* dst = static_cast<T*>(p.out) + (tk.row0 + i) * C + (int64_t)tk.h * D + 2 * tq;
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
          float v0 = o[nd][2 * r], v1 = o[nd][2 * r + 1];
          if (KEEP) {
            v0 += addc * vsum_s[8 * nd + 2 * tq];
            v1 += addc * vsum_s[8 * nd + 2 * tq + 1];
          }
          st_pair(dst + 8 * nd, g * (v0 * rden), g * (v1 * rden));
        }
        if (p.stats && tq == 0) {
          float* st = p.stats + (tk.sbase + i) * 3;
          st[0] = mrow[r];
          st[1] = den;
          st[2] = (float)amax[r];
        }
      }
    } else {
      float part = 0.f;
      if (i < n) {
        const T* go = static_cast<const T*>(p.gout) + (tk.row0 + i) * C + (int64_t)tk.h * D + 2 * tq;
#pragma unroll
        for (int nd = 0; nd < ND; ++nd) {
          float v0 = o[nd][2 * r], v1 = o[nd][2 * r + 1];
          if (KEEP) {
            v0 += addc * vsum_s[8 * nd + 2 * tq];
            v1 += addc * vsum_s[8 * nd + 2 * tq + 1];
          }
          const float2 gv = ld_pair(go + 8 * nd);
          part += gv.x * (v0 * rden) + gv.y * (v1 * rden);
        }
      }
      part = quad_sum(part);
      if (i < n && tq == 0) p.dvals[tk.sbase + i] = part;
    }
  }
}

// ============================================================================================
// Tensor-core forward (also the D-recompute mode of the backward: DREC)
// ============================================================================================

template <int D, bool KEEP, bool DREC>
__global__ void __launch_bounds__(256) fwd_tc(const FwdParams p) {
  constexpr int LD = D + 8, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);
  bf16* Vs = Ks + p.fill * LD;
  float* keep_s = reinterpret_cast<float*>(Vs + p.fill * LD);  // [fill] (keep)
  float* vsum_s = keep_s + p.fill;                              // [D]    (keep)

  const Task tk = decode(p);
  const float g = p.gate ? p.gate[tk.gidx] : 1.f;
  if (DREC && gate_usable(g)) return;  // CTA-uniform
  const int n = tk.n;
  const int64_t C = p.C, C3 = 3 * C;
  const bf16* qb = static_cast<const bf16*>(p.qkv) + tk.row0 * C3 + (int64_t)tk.h * D;
  if (!DREC && p.tasks && g == 0.f) {  // varlen: a dropped head is not computed, its output is 0
    zero_head<bf16, D>(p, tk);
    return;
  }

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int i0 = tk.q0 + 16 * warp;
  const bool active = i0 < n;  // warp-uniform
  uint32_t qa[D / 16][4];
  load_a_frags<D>(qa, qb, C3, i0, active ? n : 0, gr, tq);

  RowState<ND> st;

  for (int f0 = 0; f0 < n; f0 += p.fill) {
    const int fn = min(p.fill, n - f0), fpad = (fn + 15) & ~15;
    stage_fill<D, LD, KEEP>(Ks, Vs, keep_s, vsum_s, p, tk, qb, f0, fn, fpad);
    if (!active) continue;
    for (int c0 = 0; c0 < fn; c0 += 64) {
      const int nkb = min(4, (fn - c0 + 15) >> 4);  // 16-key blocks holding a valid key (>= 1)
      float s[8][4];
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) {
        s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
        if ((nb >> 1) < nkb) mma_rows<D, LD>(s[nb], qa, Ks, c0 + 8 * nb, gr, tq);
      }
      online_softmax<ND, KEEP>(s, st, c0, fn, f0, i0, gr, tq, keep_s, p.scale2);
#pragma unroll
      for (int kb = 0; kb < 4; ++kb)
        if (kb < nkb) {
          uint32_t pa[4];
          pack_a(pa, s[2 * kb], s[2 * kb + 1]);
          mma_pv<D, LD>(st.o, pa, Vs, c0 + 16 * kb, lane);
        }
    }
  }
  if (KEEP) __syncthreads();  // vsum_s complete
  if (active) finish_rows<bf16, ND, KEEP, DREC>(p, tk, g, st, vsum_s, i0, gr, tq);
}

// ============================================================================================
// float32 forward on tensor cores with fp32 accuracy: 3xTF32 (mma.sync m16n8k8 tf32 -> fp32)
// Each fp32 operand x is split into x_hi = tf32(x) (round to nearest, 10-bit mantissa) and
// x_lo = tf32(x - x_hi); a.b is accumulated as a_lo.b_hi + a_hi.b_lo + a_hi.b_hi. The dropped
// a_lo.b_lo and the rounding of x_lo leave a relative error of about 2^-21 per product, the order
// of fp32 FMA's own (plain TF32 would be 2^-11: not fp32 accuracy, so never used alone).
// Fragment layouts: see mma_tf32.cuh.
// P (a C tile over keys 8kb..8kb+7) becomes an A fragment without shuffles by permuting the keys
// inside the 8-key step: k-slot t is key 2t, k-slot t+4 is key 2t+1; V's B fragment reads the
// same keys (rows 2t and 2t+1 of the step). K and V are staged as fp32 with row stride D + 4 so
// that both the K reads (row g, column t) and the V reads (rows 2t / 2t+1, column g) hit 32
// distinct banks.
// ============================================================================================

// c += a . b in 3xTF32, a given split, b as the two fp32 values of this lane's B fragment.
__device__ __forceinline__ void mma_3xtf32(float (&c)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4], float b0,
                                           float b1) {
  uint32_t bh0, bl0, bh1, bl1;
  split_tf32(b0, bh0, bl0);
  split_tf32(b1, bh1, bl1);
  mma_tf32(c, al, bh0, bh1);  // the small terms first, the large last
  mma_tf32(c, ah, bl0, bl1);
  mma_tf32(c, ah, bh0, bh1);
}

// The forward of fwd_tc (same tasks, online softmax, keep factor, argmax, stats and varlen zero
// heads) for float32 qkv, D in {32, 64}: W warps of 16 query rows, Q split in registers, K and V
// staged in fills of fp32 rows zero-padded to a multiple of 8, 8-key blocks computed only where
// they hold a valid key.
template <int D, bool KEEP>
__global__ void __launch_bounds__(128) fwd_f32tc(const FwdParams p) {
  constexpr int LD = D + 4, NK = D / 8, ND = D / 8;
  extern __shared__ __align__(16) float fsm_tf32[];
  float* Ks = fsm_tf32;
  float* Vs = Ks + p.fill * LD;
  float* keep_s = Vs + p.fill * LD;  // [fill] (keep)
  float* vsum_s = keep_s + p.fill;   // [D]    (keep)

  const Task tk = decode(p);
  const float g = p.gate ? p.gate[tk.gidx] : 1.f;
  const int n = tk.n;
  const int64_t C = p.C, C3 = 3 * C;
  const float* qb = static_cast<const float*>(p.qkv) + tk.row0 * C3 + (int64_t)tk.h * D;
  if (p.tasks && g == 0.f) {  // varlen: a dropped head is not computed, its output is 0
    zero_head<float, D>(p, tk);
    return;
  }

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int i0 = tk.q0 + 16 * warp;
  const bool active = i0 < n;  // warp-uniform
  uint32_t qh[NK][4], ql[NK][4];
#pragma unroll
  for (int kk = 0; kk < NK; ++kk)
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int r = i0 + gr + (x & 1) * 8, c = 8 * kk + tq + (x >> 1) * 4;
      split_tf32(active && r < n ? qb[(int64_t)r * C3 + c] : 0.f, qh[kk][x], ql[kk][x]);
    }

  RowState<ND> st;

  for (int f0 = 0; f0 < n; f0 += p.fill) {
    const int fn = min(p.fill, n - f0), fpad = (fn + 7) & ~7;
    stage_fill<D, LD, KEEP>(Ks, Vs, keep_s, vsum_s, p, tk, qb, f0, fn, fpad);
    if (!active) continue;
    for (int c0 = 0; c0 < fn; c0 += 64) {
      const int nkb = min(8, (fn - c0 + 7) >> 3);  // 8-key blocks holding a valid key (>= 1)
      float s[8][4];
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) {
        s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
        if (nb < nkb) {
          const float* kp = Ks + (c0 + 8 * nb + gr) * LD + tq;
#pragma unroll
          for (int kk = 0; kk < NK; ++kk) mma_3xtf32(s[nb], qh[kk], ql[kk], kp[8 * kk], kp[8 * kk + 4]);
        }
      }
      online_softmax<ND, KEEP>(s, st, c0, fn, f0, i0, gr, tq, keep_s, p.scale2);
#pragma unroll
      for (int kb = 0; kb < 8; ++kb)
        if (kb < nkb) {
          uint32_t ph[4], pl[4];  // slot t: key 2t, slot t + 4: key 2t + 1 (see the section header)
          split_tf32(s[kb][0], ph[0], pl[0]);
          split_tf32(s[kb][2], ph[1], pl[1]);
          split_tf32(s[kb][1], ph[2], pl[2]);
          split_tf32(s[kb][3], ph[3], pl[3]);
          const float* vp = Vs + (c0 + 8 * kb + 2 * tq) * LD + gr;
#pragma unroll
          for (int nd = 0; nd < ND; ++nd) mma_3xtf32(st.o[nd], ph, pl, vp[8 * nd], vp[LD + 8 * nd]);
        }
    }
  }
  if (KEEP) __syncthreads();  // vsum_s complete
  if (active) finish_rows<float, ND, KEEP, false>(p, tk, g, st, vsum_s, i0, gr, tq);
}

// ============================================================================================
// Tensor-core backward: dQ pass (per query tile) and dK/dV pass (per key tile)
// ============================================================================================

template <int D, bool KEEP>
__global__ void __launch_bounds__(256) bwd_dq_tc(const BwdParams p) {
  constexpr int LD = D + 8, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);
  bf16* Vs = Ks + p.fill * LD;
  float* keep_s = reinterpret_cast<float*>(Vs + p.fill * LD);

  const int64_t bid = blockIdx.x, bh = bid / p.ntiles, b = bh / p.H;
  const int h = (int)(bh - b * p.H), q0 = (int)(bid - bh * p.ntiles) * p.rows, n = p.N;
  const int64_t C = p.C, C3 = 3 * C, row0 = b * n;
  const float g = p.gate ? p.gate[bh] : 1.f;
  const bf16* qb = static_cast<const bf16*>(p.qkv) + row0 * C3 + (int64_t)h * D;
  const bf16* gob = static_cast<const bf16*>(p.gout) + row0 * C + (int64_t)h * D;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int i0 = q0 + 16 * warp;
  const bool active = i0 < n;
  uint32_t qa[D / 16][4], da[D / 16][4];
  load_a_frags<D>(qa, qb, C3, i0, active ? n : 0, gr, tq);
  load_a_frags<D>(da, gob, C, i0, active ? n : 0, gr, tq);
  RowInfo ri[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + gr + 8 * r;
    ri[r] = (active && i < n) ? row_info<KEEP>(p, bh, i, g) : row_info_none();
  }
  float dq[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.f;

  for (int f0 = 0; f0 < n; f0 += p.fill) {
    const int fn = min(p.fill, n - f0), fpad = (fn + 15) & ~15;
    __syncthreads();
    stage_rows<D, LD>(Ks, qb + C, C3, f0, fn, fpad);
    stage_rows<D, LD>(Vs, qb + 2 * C, C3, f0, fn, fpad);
    if (KEEP)
      for (int j = threadIdx.x; j < fpad; j += blockDim.x) keep_s[j] = j < fn ? p.keep[row0 + f0 + j] : 0.f;
    __syncthreads();
    if (!active) continue;
    for (int k0 = 0; k0 < fpad; k0 += 16) {
      float s[2][4], gg[2][4];
#pragma unroll
      for (int hb = 0; hb < 2; ++hb) {
        s[hb][0] = s[hb][1] = s[hb][2] = s[hb][3] = 0.f;
        gg[hb][0] = gg[hb][1] = gg[hb][2] = gg[hb][3] = 0.f;
        mma_rows<D, LD>(s[hb], qa, Ks, k0 + 8 * hb, gr, tq);   // S = Q K^T
        mma_rows<D, LD>(gg[hb], da, Vs, k0 + 8 * hb, gr, tq);  // G = dO V^T (ungated)
      }
#pragma unroll
      for (int hb = 0; hb < 2; ++hb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = k0 + 8 * hb + 2 * tq + (e & 1), r = e >> 1;
          float ds = 0.f;
          if (j < fn) {
            const float ev = exp2f(s[hb][e] * p.scale2 - ri[r].m2);
            if (KEEP) {
              const float w = g * ri[r].rden * ev * (gg[hb][e] - ri[r].dv);
              const int i = i0 + gr + 8 * r;
              ds = (f0 + j == i) ? w : w * keep_s[j];
              if (f0 + j == ri[r].am) ds -= ri[r].corr;
            } else {
              ds = g * (ev * ri[r].rden) * (gg[hb][e] - ri[r].dv);
            }
          }
          s[hb][e] = ds;
        }
      uint32_t pa[4];
      pack_a(pa, s[0], s[1]);
      mma_pv<D, LD>(dq, pa, Ks, k0, lane);  // dQ += dS K
    }
  }
  if (!active) return;
  bf16* gq = static_cast<bf16*>(p.gqkv) + row0 * C3 + (int64_t)h * D + 2 * tq;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + gr + 8 * r;
    if (i >= n) continue;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd)
      st_bf16x2(gq + (int64_t)i * C3 + 8 * nd, p.scale * dq[nd][2 * r], p.scale * dq[nd][2 * r + 1]);
  }
}

template <int D, bool KEEP>
__global__ void __launch_bounds__(256) bwd_dkdv_tc(const BwdParams p) {
  constexpr int LD = D + 8, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* Os = Qs + p.fill * LD;  // dO
  float* m2_s = reinterpret_cast<float*>(Os + p.fill * LD);
  float* rden_s = m2_s + p.fill;
  float* dv_s = rden_s + p.fill;
  float* corr_s = dv_s + p.fill;                            // keep
  int* am_s = reinterpret_cast<int*>(corr_s + p.fill);     // keep

  const int64_t bid = blockIdx.x, bh = bid / p.ntiles, b = bh / p.H;
  const int h = (int)(bh - b * p.H), k0 = (int)(bid - bh * p.ntiles) * p.rows, n = p.N;
  const int64_t C = p.C, C3 = 3 * C, row0 = b * n;
  const float g = p.gate ? p.gate[bh] : 1.f;
  const bf16* qb = static_cast<const bf16*>(p.qkv) + row0 * C3 + (int64_t)h * D;
  const bf16* gob = static_cast<const bf16*>(p.gout) + row0 * C + (int64_t)h * D;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int j0 = k0 + 16 * warp;  // this warp's first key
  const bool active = j0 < n;
  uint32_t ka[D / 16][4], va[D / 16][4];
  load_a_frags<D>(ka, qb + C, C3, j0, active ? n : 0, gr, tq);
  load_a_frags<D>(va, qb + 2 * C, C3, j0, active ? n : 0, gr, tq);
  float keepj[2] = {0.f, 0.f}, gk_acc[2] = {0.f, 0.f};
  if (KEEP)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int j = j0 + gr + 8 * r;
      keepj[r] = (active && j < n) ? p.keep[row0 + j] : 0.f;
    }
  float dk[ND][4], dv[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) {
    dk[nd][0] = dk[nd][1] = dk[nd][2] = dk[nd][3] = 0.f;
    dv[nd][0] = dv[nd][1] = dv[nd][2] = dv[nd][3] = 0.f;
  }
  const float addc = KEEP ? p.eps / (float)n : 0.f;

  for (int f0 = 0; f0 < n; f0 += p.fill) {
    const int fn = min(p.fill, n - f0), fpad = (fn + 15) & ~15;
    __syncthreads();
    stage_rows<D, LD>(Qs, qb, C3, f0, fn, fpad);
    stage_rows<D, LD>(Os, gob, C, f0, fn, fpad);
    for (int i = threadIdx.x; i < fpad; i += blockDim.x) {
      const RowInfo ri = i < fn ? row_info<KEEP>(p, bh, f0 + i, g) : row_info_none();
      m2_s[i] = ri.m2;
      rden_s[i] = ri.rden;
      dv_s[i] = ri.dv;
      if (KEEP) {
        corr_s[i] = ri.corr;
        am_s[i] = ri.am;
      }
    }
    __syncthreads();
    if (!active) continue;
    for (int c0 = 0; c0 < fpad; c0 += 16) {  // 16 queries per step
      float s[2][4], ev[2][4], gg[2][4];
#pragma unroll
      for (int hb = 0; hb < 2; ++hb) {
        s[hb][0] = s[hb][1] = s[hb][2] = s[hb][3] = 0.f;
        mma_rows<D, LD>(s[hb], ka, Qs, c0 + 8 * hb, gr, tq);  // S^T = K Q^T
      }
#pragma unroll
      for (int hb = 0; hb < 2; ++hb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = c0 + 8 * hb + 2 * tq + (e & 1), r = e >> 1;  // fill-local query
          float pe = 0.f, pp = 0.f;
          if (i < fn) {
            pe = exp2f(s[hb][e] * p.scale2 - m2_s[i]);
            if (KEEP) {
              const float pi = (f0 + i == j0 + gr + 8 * r) ? 1.f : keepj[r];
              pp = (pe * pi + addc) * rden_s[i];
            } else {
              pp = pe * rden_s[i];
            }
          }
          ev[hb][e] = pe;
          s[hb][e] = pp;
        }
      uint32_t pa[4];
      pack_a(pa, s[0], s[1]);
      mma_pv<D, LD>(dv, pa, Os, c0, lane);  // dV += P^T dO (ungated; times g at the end)
#pragma unroll
      for (int hb = 0; hb < 2; ++hb) {
        gg[hb][0] = gg[hb][1] = gg[hb][2] = gg[hb][3] = 0.f;
        mma_rows<D, LD>(gg[hb], va, Os, c0 + 8 * hb, gr, tq);  // G^T = V dO^T
      }
#pragma unroll
      for (int hb = 0; hb < 2; ++hb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = c0 + 8 * hb + 2 * tq + (e & 1), r = e >> 1;
          float ds = 0.f;
          if (i < fn) {
            if (KEEP) {
              const int j = j0 + gr + 8 * r;
              const float w = g * rden_s[i] * ev[hb][e] * (gg[hb][e] - dv_s[i]);
              const bool diag = f0 + i == j;
              if (!diag) gk_acc[r] += w;
              ds = diag ? w : w * keepj[r];
              if (am_s[i] == j) ds -= corr_s[i];
            } else {
              ds = g * s[hb][e] * (gg[hb][e] - dv_s[i]);
            }
          }
          s[hb][e] = ds;
        }
      pack_a(pa, s[0], s[1]);
      mma_pv<D, LD>(dk, pa, Qs, c0, lane);  // dK += dS^T Q
    }
  }
  if (!active) return;
  bf16* gkb = static_cast<bf16*>(p.gqkv) + row0 * C3 + C + (int64_t)h * D + 2 * tq;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int j = j0 + gr + 8 * r;
    const float gsum = KEEP ? quad_sum(gk_acc[r]) : 0.f;
    if (j >= n) continue;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      bf16* d = gkb + (int64_t)j * C3 + 8 * nd;
      st_bf16x2(d, p.scale * dk[nd][2 * r], p.scale * dk[nd][2 * r + 1]);
      st_bf16x2(d + C, g * dv[nd][2 * r], g * dv[nd][2 * r + 1]);
    }
    if (KEEP && tq == 0) p.gkeep_part[bh * n + j] = gsum;
  }
}

// ============================================================================================
// SIMT kernels (fp32 FMA): 256 threads = 16 (ty) x 16 (tx), 64 x 64 tiles in shared memory
// ============================================================================================

constexpr int kPLD = 68;  // row stride of the transposed probability tile Pt[64][68]

// Rows [first, first + 64) of src (row stride ld, D columns) into dst (row stride lds) as fp32;
// rows >= nvalid (relative) and columns in [D, DP) are zero.
template <class T, int DP>
__device__ __forceinline__ void stage_f32(float* dst, int lds, const T* src, int64_t src_ld, int first, int nvalid,
                                          int D) {
  for (int e = threadIdx.x; e < 64 * DP; e += blockDim.x) {
    const int r = e / DP, d = e - r * DP;
    float v = 0.f;
    if (r < nvalid && d < D) v = ld(src, (int64_t)(first + r) * src_ld + d);
    dst[r * lds + d] = v;
  }
}

// acc[r][c] = A[ty + 16r][0 .. d4) . B[tx + 16c][0 .. d4) for r < NR, c < NC (others 0).
template <int NR, int NC>
__device__ __forceinline__ void s_tile_nc(const float* __restrict__ A, const float* __restrict__ Bm, int lds, int d4,
                                          int ty, int tx, float (&acc)[4][4]) {
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[r][c] = 0.f;
#pragma unroll 2
  for (int d = 0; d < d4; d += 4) {
    float4 a[NR], b[NC];
#pragma unroll
    for (int r = 0; r < NR; ++r) a[r] = *reinterpret_cast<const float4*>(A + (ty + 16 * r) * lds + d);
#pragma unroll
    for (int c = 0; c < NC; ++c) b[c] = *reinterpret_cast<const float4*>(Bm + (tx + 16 * c) * lds + d);
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        float x = acc[r][c];
        x = fmaf(a[r].x, b[c].x, x);
        x = fmaf(a[r].y, b[c].y, x);
        x = fmaf(a[r].z, b[c].z, x);
        acc[r][c] = fmaf(a[r].w, b[c].w, x);
      }
  }
}

// The same with the numbers of valid 16-row / 16-column blocks (1..4 each) known at run time.
__device__ __forceinline__ void s_tile(int nr, int nc, const float* A, const float* Bm, int lds, int d4, int ty, int tx,
                                       float (&acc)[4][4]) {
  switch (nr * 4 + nc) {
#define VITRIM_ST_CASE(R, K) \
  case R * 4 + K:            \
    s_tile_nc<R, K>(A, Bm, lds, d4, ty, tx, acc); \
    break;
    VITRIM_ST_CASE(1, 1) VITRIM_ST_CASE(1, 2) VITRIM_ST_CASE(1, 3) VITRIM_ST_CASE(1, 4)
    VITRIM_ST_CASE(2, 1) VITRIM_ST_CASE(2, 2) VITRIM_ST_CASE(2, 3) VITRIM_ST_CASE(2, 4)
    VITRIM_ST_CASE(3, 1) VITRIM_ST_CASE(3, 2) VITRIM_ST_CASE(3, 3) VITRIM_ST_CASE(3, 4)
    VITRIM_ST_CASE(4, 1) VITRIM_ST_CASE(4, 2) VITRIM_ST_CASE(4, 3)
#undef VITRIM_ST_CASE
    default:
      s_tile_nc<4, 4>(A, Bm, lds, d4, ty, tx, acc);
  }
}

// The output dims of thread tx: DV = 2: 2tx, 2tx+1; 4: 4tx..4tx+3; 8: 4tx..4tx+3 and 64+4tx..64+4tx+3.
template <int DV>
__device__ __forceinline__ int dv_dim(int tx, int u) {
  return DV == 8 ? (u >> 2) * 64 + 4 * tx + (u & 3) : DV * tx + u;
}
template <int DV>
__device__ __forceinline__ void load_dv(const float* row, int tx, float (&v)[DV]) {
  if constexpr (DV == 2) {
    const float2 x = *reinterpret_cast<const float2*>(row + 2 * tx);
    v[0] = x.x;
    v[1] = x.y;
  } else {
#pragma unroll
    for (int q = 0; q < DV / 4; ++q) {
      const float4 x = *reinterpret_cast<const float4*>(row + 64 * q + 4 * tx);
      v[4 * q] = x.x;
      v[4 * q + 1] = x.y;
      v[4 * q + 2] = x.z;
      v[4 * q + 3] = x.w;
    }
  }
}

// acc[r][u] += sum_{k < nk} Pt[k][4ty + r] * Bm[k][dv_dim(tx, u)] for r < NR.
template <int NR, int DV>
__device__ __forceinline__ void pv_tile_nr(const float* __restrict__ Pt, const float* __restrict__ Bm, int lds, int nk,
                                           int ty, int tx, float (&acc)[4][DV]) {
#pragma unroll 4
  for (int k = 0; k < nk; ++k) {
    const float4 pp = *reinterpret_cast<const float4*>(Pt + k * kPLD + 4 * ty);
    const float pr[4] = {pp.x, pp.y, pp.z, pp.w};
    float v[DV];
    load_dv<DV>(Bm + k * lds, tx, v);
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
      for (int u = 0; u < DV; ++u) acc[r][u] = fmaf(pr[r], v[u], acc[r][u]);
  }
}
template <int DV>
__device__ __forceinline__ void pv_tile(int nr, const float* Pt, const float* Bm, int lds, int nk, int ty, int tx,
                                        float (&acc)[4][DV]) {
  switch (nr) {
    case 1: pv_tile_nr<1, DV>(Pt, Bm, lds, nk, ty, tx, acc); break;
    case 2: pv_tile_nr<2, DV>(Pt, Bm, lds, nk, ty, tx, acc); break;
    case 3: pv_tile_nr<3, DV>(Pt, Bm, lds, nk, ty, tx, acc); break;
    default: pv_tile_nr<4, DV>(Pt, Bm, lds, nk, ty, tx, acc); break;
  }
}

// Pt[tx + 16c][4ty + r] = s[r][c]: the tile transposed, so pv_tile reads 4 rows as one float4.
__device__ __forceinline__ void store_pt(float* Pt, const float (&s)[4][4], int ty, int tx) {
#pragma unroll
  for (int c = 0; c < 4; ++c)
    *reinterpret_cast<float4*>(Pt + (tx + 16 * c) * kPLD + 4 * ty) = make_float4(s[0][c], s[1][c], s[2][c], s[3][c]);
}

// Reductions over the 16 lanes that share ty (lanes 0-15 or 16-31 of a warp).
__device__ __forceinline__ float hsum16(float v) {
#pragma unroll
  for (int o = 1; o < 16; o <<= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float hmax16(float v) {
#pragma unroll
  for (int o = 1; o < 16; o <<= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ int hmin16(int v) {
#pragma unroll
  for (int o = 1; o < 16; o <<= 1) v = min(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

template <int DV>
constexpr size_t simt_tile_bytes() {
  return (size_t)64 * (16 * DV + 4) * sizeof(float);
}

template <class T, int DV, bool KEEP, bool DREC>
__global__ void __launch_bounds__(256) fwd_simt(const FwdParams p) {
  constexpr int DP = 16 * DV, LDS = DP + 4;
  extern __shared__ __align__(16) float fsm[];
  float* Qs = fsm;
  float* Ks = Qs + 64 * LDS;
  float* Vs = Ks + 64 * LDS;
  float* Pt = Vs + 64 * LDS;
  float* keep_s = Pt + 64 * kPLD;  // [64]  (keep)
  float* vsum_s = keep_s + 64;     // [DP]  (keep)

  const Task tk = decode(p);
  const float g = p.gate ? p.gate[tk.gidx] : 1.f;
  if (DREC && gate_usable(g)) return;
  const int n = tk.n, D = p.D, d4 = (D + 3) & ~3;
  const int64_t C = p.C, C3 = 3 * C;
  const T* qb = static_cast<const T*>(p.qkv) + tk.row0 * C3 + (int64_t)tk.h * D;
  if (!DREC && p.tasks && g == 0.f) {
    T* o = static_cast<T*>(p.out) + tk.row0 * C + (int64_t)tk.h * D;
    const int nr = min(p.rows, n - tk.q0);
    for (int e = threadIdx.x; e < nr * D; e += blockDim.x) st(o, (int64_t)(tk.q0 + e / D) * C + e % D, 0.f);
    return;
  }
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const int nq = min(64, n - tk.q0), nrb = (nq + 15) >> 4;
  stage_f32<T, DP>(Qs, LDS, qb, C3, tk.q0, nq, D);

  float o[4][DV], m[4], l[4];
  int am[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
    am[r] = 0;
#pragma unroll
    for (int u = 0; u < DV; ++u) o[r][u] = 0.f;
  }
  float vs = 0.f;  // keep: column sum of V for dim tid (< D)

  for (int c0 = 0; c0 < n; c0 += 64) {
    const int nk = min(64, n - c0), ncb = (nk + 15) >> 4;
    __syncthreads();  // previous chunk's readers of Ks / Vs / Pt are done (and Qs is staged)
    stage_f32<T, DP>(Ks, LDS, qb + C, C3, c0, nk, D);
    stage_f32<T, DP>(Vs, LDS, qb + 2 * C, C3, c0, nk, D);
    if (KEEP && tid < 64) keep_s[tid] = tid < nk ? p.keep[tk.row0 + c0 + tid] : 0.f;
    __syncthreads();
    if (KEEP && tid < D)
      for (int r = 0; r < nk; ++r) vs += Vs[r * LDS + tid];
    float s[4][4];
    s_tile(nrb, ncb, Qs, Ks, LDS, d4, ty, tx, s);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float v = tx + 16 * c < nk ? s[r][c] * p.scale2 : -INFINITY;
        s[r][c] = v;
        mx = fmaxf(mx, v);
      }
      mx = hmax16(mx);
      if (KEEP) {
        int ai = INT_MAX;
#pragma unroll
        for (int c = 0; c < 4; ++c)
          if (s[r][c] == mx && tx + 16 * c < ai) ai = tx + 16 * c;
        ai = hmin16(ai);
        if (mx > m[r]) am[r] = c0 + ai;
      }
      const float mn = fmaxf(m[r], mx), alpha = exp2f(m[r] - mn);
      m[r] = mn;
      l[r] *= alpha;
#pragma unroll
      for (int u = 0; u < DV; ++u) o[r][u] *= alpha;
      const int i = tk.q0 + ty + 16 * r;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int j = tx + 16 * c;
        float pv = exp2f(s[r][c] - mn);
        if (KEEP && j < nk && c0 + j != i) pv *= keep_s[j];
        s[r][c] = pv;
        l[r] += pv;
      }
    }
    store_pt(Pt, s, ty, tx);
    __syncthreads();
    pv_tile<DV>(nrb, Pt, Vs, LDS, 16 * ncb, ty, tx, o);
  }
  if (KEEP) {
    if (tid < D) vsum_s[tid] = vs;
    __syncthreads();
  }
  const float addc = KEEP ? p.eps / (float)n : 0.f;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = tk.q0 + ty + 16 * r;
    const float den = hsum16(l[r]) + (KEEP ? p.eps : 0.f), rden = 1.f / den;
    if (!DREC) {
      if (i < n) {
        T* dst = static_cast<T*>(p.out) + (tk.row0 + i) * C + (int64_t)tk.h * D;
#pragma unroll
        for (int u = 0; u < DV; ++u) {
          const int d = dv_dim<DV>(tx, u);
          if (d < D) st(dst, d, g * ((o[r][u] + (KEEP ? addc * vsum_s[d] : 0.f)) * rden));
        }
        if (p.stats && tx == 0) {
          float* stp = p.stats + (tk.sbase + i) * 3;
          stp[0] = m[r];
          stp[1] = den;
          stp[2] = (float)am[r];
        }
      }
    } else {
      float part = 0.f;
      if (i < n) {
        const T* go = static_cast<const T*>(p.gout) + (tk.row0 + i) * C + (int64_t)tk.h * D;
#pragma unroll
        for (int u = 0; u < DV; ++u) {
          const int d = dv_dim<DV>(tx, u);
          if (d < D) part += ld(go, d) * ((o[r][u] + (KEEP ? addc * vsum_s[d] : 0.f)) * rden);
        }
      }
      part = hsum16(part);
      if (i < n && tx == 0) p.dvals[tk.sbase + i] = part;
    }
  }
}

template <class T, int DV, bool KEEP>
__global__ void __launch_bounds__(256) bwd_dq_simt(const BwdParams p) {
  constexpr int DP = 16 * DV, LDS = DP + 4;
  extern __shared__ __align__(16) float fsm[];
  float* Qs = fsm;
  float* Os = Qs + 64 * LDS;
  float* Ks = Os + 64 * LDS;
  float* Vs = Ks + 64 * LDS;
  float* Pt = Vs + 64 * LDS;
  float* keep_s = Pt + 64 * kPLD;

  const int64_t bid = blockIdx.x, bh = bid / p.ntiles, b = bh / p.H;
  const int h = (int)(bh - b * p.H), q0 = (int)(bid - bh * p.ntiles) * 64, n = p.N, D = p.D, d4 = (D + 3) & ~3;
  const int64_t C = p.C, C3 = 3 * C, row0 = b * n;
  const float g = p.gate ? p.gate[bh] : 1.f;
  const T* qb = static_cast<const T*>(p.qkv) + row0 * C3 + (int64_t)h * D;
  const T* gob = static_cast<const T*>(p.gout) + row0 * C + (int64_t)h * D;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const int nq = min(64, n - q0), nrb = (nq + 15) >> 4;
  stage_f32<T, DP>(Qs, LDS, qb, C3, q0, nq, D);
  stage_f32<T, DP>(Os, LDS, gob, C, q0, nq, D);
  RowInfo ri[4];
  float dq[4][DV];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = q0 + ty + 16 * r;
    ri[r] = i < n ? row_info<KEEP>(p, bh, i, g) : row_info_none();
#pragma unroll
    for (int u = 0; u < DV; ++u) dq[r][u] = 0.f;
  }
  for (int c0 = 0; c0 < n; c0 += 64) {
    const int nk = min(64, n - c0), ncb = (nk + 15) >> 4;
    __syncthreads();
    stage_f32<T, DP>(Ks, LDS, qb + C, C3, c0, nk, D);
    stage_f32<T, DP>(Vs, LDS, qb + 2 * C, C3, c0, nk, D);
    if (KEEP && tid < 64) keep_s[tid] = tid < nk ? p.keep[row0 + c0 + tid] : 0.f;
    __syncthreads();
    float s[4][4], gg[4][4];
    s_tile(nrb, ncb, Qs, Ks, LDS, d4, ty, tx, s);   // S = Q K^T
    s_tile(nrb, ncb, Os, Vs, LDS, d4, ty, tx, gg);  // G = dO V^T
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int j = tx + 16 * c;
        float ds = 0.f;
        if (j < nk) {
          const float ev = exp2f(s[r][c] * p.scale2 - ri[r].m2);
          if (KEEP) {
            const float w = g * ri[r].rden * ev * (gg[r][c] - ri[r].dv);
            ds = (c0 + j == q0 + ty + 16 * r) ? w : w * keep_s[j];
            if (c0 + j == ri[r].am) ds -= ri[r].corr;
          } else {
            ds = g * (ev * ri[r].rden) * (gg[r][c] - ri[r].dv);
          }
        }
        s[r][c] = ds;
      }
    store_pt(Pt, s, ty, tx);
    __syncthreads();
    pv_tile<DV>(nrb, Pt, Ks, LDS, 16 * ncb, ty, tx, dq);  // dQ += dS K
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = q0 + ty + 16 * r;
    if (i >= n) continue;
    T* gq = static_cast<T*>(p.gqkv) + (row0 + i) * C3 + (int64_t)h * D;
#pragma unroll
    for (int u = 0; u < DV; ++u) {
      const int d = dv_dim<DV>(tx, u);
      if (d < D) st(gq, d, p.scale * dq[r][u]);
    }
  }
}

template <class T, int DV, bool KEEP>
__global__ void __launch_bounds__(256) bwd_dkdv_simt(const BwdParams p) {
  constexpr int DP = 16 * DV, LDS = DP + 4;
  extern __shared__ __align__(16) float fsm[];
  float* Ks = fsm;
  float* Vs = Ks + 64 * LDS;
  float* Qs = Vs + 64 * LDS;
  float* Os = Qs + 64 * LDS;
  float* Pt = Os + 64 * LDS;
  float* m2_s = Pt + 64 * kPLD;
  float* rden_s = m2_s + 64;
  float* dv_s = rden_s + 64;
  float* corr_s = dv_s + 64;
  int* am_s = reinterpret_cast<int*>(corr_s + 64);

  const int64_t bid = blockIdx.x, bh = bid / p.ntiles, b = bh / p.H;
  const int h = (int)(bh - b * p.H), k0 = (int)(bid - bh * p.ntiles) * 64, n = p.N, D = p.D, d4 = (D + 3) & ~3;
  const int64_t C = p.C, C3 = 3 * C, row0 = b * n;
  const float g = p.gate ? p.gate[bh] : 1.f;
  const T* qb = static_cast<const T*>(p.qkv) + row0 * C3 + (int64_t)h * D;
  const T* gob = static_cast<const T*>(p.gout) + row0 * C + (int64_t)h * D;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const int nkv = min(64, n - k0), nrb = (nkv + 15) >> 4;
  stage_f32<T, DP>(Ks, LDS, qb + C, C3, k0, nkv, D);
  stage_f32<T, DP>(Vs, LDS, qb + 2 * C, C3, k0, nkv, D);
  float keepj[4], gk_acc[4], dk[4][DV], dv[4][DV];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int j = k0 + ty + 16 * r;
    keepj[r] = (KEEP && j < n) ? p.keep[row0 + j] : 0.f;
    gk_acc[r] = 0.f;
#pragma unroll
    for (int u = 0; u < DV; ++u) dk[r][u] = dv[r][u] = 0.f;
  }
  const float addc = KEEP ? p.eps / (float)n : 0.f;
  for (int c0 = 0; c0 < n; c0 += 64) {
    const int nqv = min(64, n - c0), ncb = (nqv + 15) >> 4;
    __syncthreads();
    stage_f32<T, DP>(Qs, LDS, qb, C3, c0, nqv, D);
    stage_f32<T, DP>(Os, LDS, gob, C, c0, nqv, D);
    if (tid < 64) {
      const RowInfo ri = tid < nqv ? row_info<KEEP>(p, bh, c0 + tid, g) : row_info_none();
      m2_s[tid] = ri.m2;
      rden_s[tid] = ri.rden;
      dv_s[tid] = ri.dv;
      corr_s[tid] = ri.corr;
      am_s[tid] = ri.am;
    }
    __syncthreads();
    float s[4][4], ev[4][4], gg[4][4];
    s_tile(nrb, ncb, Ks, Qs, LDS, d4, ty, tx, s);  // S^T = K Q^T (rows: keys, columns: queries)
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int i = tx + 16 * c;
        float pe = 0.f, pp = 0.f;
        if (i < nqv) {
          pe = exp2f(s[r][c] * p.scale2 - m2_s[i]);
          if (KEEP) {
            const float pi = (c0 + i == k0 + ty + 16 * r) ? 1.f : keepj[r];
            pp = (pe * pi + addc) * rden_s[i];
          } else {
            pp = pe * rden_s[i];
          }
        }
        ev[r][c] = pe;
        s[r][c] = pp;
      }
    store_pt(Pt, s, ty, tx);
    __syncthreads();
    pv_tile<DV>(nrb, Pt, Os, LDS, 16 * ncb, ty, tx, dv);  // dV += P^T dO
    s_tile(nrb, ncb, Vs, Os, LDS, d4, ty, tx, gg);        // G^T = V dO^T
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int i = tx + 16 * c, j = k0 + ty + 16 * r;
        float ds = 0.f;
        if (i < nqv) {
          if (KEEP) {
            const float w = g * rden_s[i] * ev[r][c] * (gg[r][c] - dv_s[i]);
            const bool diag = c0 + i == j;
            if (!diag) gk_acc[r] += w;
            ds = diag ? w : w * keepj[r];
            if (am_s[i] == j) ds -= corr_s[i];
          } else {
            ds = g * s[r][c] * (gg[r][c] - dv_s[i]);
          }
        }
        s[r][c] = ds;
      }
    __syncthreads();  // every thread is done reading Pt (P^T)
    store_pt(Pt, s, ty, tx);
    __syncthreads();
    pv_tile<DV>(nrb, Pt, Qs, LDS, 16 * ncb, ty, tx, dk);  // dK += dS^T Q
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int j = k0 + ty + 16 * r;
    const float gsum = KEEP ? hsum16(gk_acc[r]) : 0.f;
    if (j >= n) continue;
    T* gk = static_cast<T*>(p.gqkv) + (row0 + j) * C3 + C + (int64_t)h * D;
#pragma unroll
    for (int u = 0; u < DV; ++u) {
      const int d = dv_dim<DV>(tx, u);
      if (d < D) {
        st(gk, d, p.scale * dk[r][u]);
        st(gk + C, d, g * dv[r][u]);
      }
    }
    if (KEEP && tx == 0) p.gkeep_part[bh * n + j] = gsum;
  }
}

// ============================================================================================
// Small kernels of the backward and of argument preparation
// ============================================================================================

// keep (T) -> float copy (when kf != null), with a flag for values outside [0, 1] (or NaN).
template <class T>
__global__ void keep_prep_kernel(const T* keep, float* kf, int64_t n, int32_t* flag) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float v = to_f(keep[i]);
    // no flag: the values are known to lie in [0, 1]. Atomic: threads that find bad values at once
    // would otherwise write the flag concurrently, a data race under the CUDA memory model.
    if (flag && !(v >= 0.f && v <= 1.f)) atomicOr(flag, 1);
    if (kf) kf[i] = v;
  }
}
template <class T>
__global__ void to_float_kernel(const T* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = to_f(x[i]);
}

// vsum[bh][d] = sum_j v[b, j, h, d]  (keep: the eps/N term's column sums), fixed order.
template <class T>
__global__ void vsum_kernel(const T* qkv, float* vsum, int64_t BH, int N, int H, int D, int64_t C) {
  for (int64_t bh = blockIdx.x; bh < BH; bh += gridDim.x) {
    const int64_t b = bh / H, h = bh - b * H;
    const T* v = qkv + b * N * 3 * C + 2 * C + h * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float a = 0.f;
      for (int j = 0; j < N; ++j) a += ld(v, (int64_t)j * 3 * C + d);
      vsum[bh * D + d] = a;
    }
  }
}

// One warp per (b, i, h) row: D_i = go.out / g where the gate allows (else left for the
// D-recompute pass), and with keep gvb_i = go . vsum / N.
template <class T, bool KEEP>
__global__ void bwd_pre_kernel(const T* gout, const T* out, const float* gate, const float* vsum, float* dvals,
                               float* gvb, int64_t rows, int N, int H, int D) {
  const int lane = threadIdx.x & 31;
  const int64_t w0 = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t q = w0; q < rows; q += nw) {  // q = (b*N + i)*H + h
    const int64_t bi = q / H, h = q - bi * H, b = bi / N, i = bi - b * N, bh = b * H + h;
    const T* go = gout + q * D;  // (b*N + i)*C + h*D with C = H*D
    const T* ou = out + q * D;
    float so = 0.f, sv = 0.f;
    for (int d = lane; d < D; d += 32) {
      const float x = ld(go, d);
      so += x * ld(ou, d);
      if (KEEP) sv += x * vsum[bh * D + d];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      so += __shfl_xor_sync(kFull, so, o);
      if (KEEP) sv += __shfl_xor_sync(kFull, sv, o);
    }
    if (lane == 0) {
      const float g = gate ? gate[bh] : 1.f;
      dvals[bh * N + i] = gate_usable(g) ? so / g : 0.f;
      if (KEEP) gvb[bh * N + i] = sv / (float)N;
    }
  }
}

// gkeep[b, j] = sum_h part[(b*H + h)*N + j] (heads in order).
template <class T>
__global__ void gkeep_reduce_kernel(const float* part, T* gkeep, int64_t BN, int N, int H) {
  for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < BN; x += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = x / N, j = x - b * N;
    float s = 0.f;
    for (int h = 0; h < H; ++h) s += part[(b * H + h) * N + j];
    gkeep[x] = from_f<T>(s);
  }
}

// ggate[bh] = sum_i D_i, one warp per (b, h), in double (a sum that can cancel).
template <class T>
__global__ void ggate_reduce_kernel(const float* dvals, T* ggate, int64_t BH, int N) {
  const int lane = threadIdx.x & 31;
  const int64_t w0 = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t bh = w0; bh < BH; bh += nw) {
    double s = 0.0;
    for (int i = lane; i < N; i += 32) s += dvals[bh * N + i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(kFull, s, o);
    if (lane == 0) ggate[bh] = from_f<T>((float)s);
  }
}

// ============================================================================================
// Host side: validation, configuration, launches
// ============================================================================================

using Dims = AttentionShape;

// keep / head_gate: float32 or the dtype of qkv.
void check_aux(const Tensor& t, DType dt, const char* what) {
  check_cuda(t, what);
  VITRIM_CHECK(t.dtype == DType::F32 || t.dtype == dt, DType, what, " must be float32 or ", dtype_name(dt),
               " (the dtype of qkv), got ", dtype_name(t.dtype));
}

// The CPU's check_attention (same order, kinds and messages) plus the cuda kernels' limits.
// keep's values are checked on the device (keep_prep).
Dims check_attention(const char* op, const Tensor& qkv, int64_t num_heads, double scale,
                     const std::optional<Tensor>& keep, const std::optional<Tensor>& head_gate, double eps) {
  check_float_cuda(qkv, "qkv");
  Dims d = check_attention_shape(op, qkv, num_heads, scale, eps);
  VITRIM_CHECK(d.D <= 128, Shape, op, ": head_dim ", d.D, " (", d.C, " channels / ", d.H,
               " heads) is above 128, the largest the cuda kernels support");
  VITRIM_CHECK(d.N < (int64_t(1) << 24), Shape, op, ": sequence length ", d.N,
               " is above the cuda kernels' limit of 2^24 - 1");
  VITRIM_CHECK(d.C3 <= INT_MAX, Shape, op, ": qkv rows of ", d.C3, " values are above the cuda kernels' limit");
  if (keep) {
    check_aux(*keep, qkv.dtype, "keep");
    check_shape(*keep, {d.B, d.N}, "keep");
  }
  if (head_gate) {
    check_aux(*head_gate, qkv.dtype, "head_gate");
    check_shape(*head_gate, {d.B, d.H}, "head_gate");
  }
  return d;
}

// A float32 device view of keep / head_gate (a converted copy when it is bfloat16).
struct Aux {
  Tensor holder;
  const float* ptr = nullptr;
};

// keep as float32, with its [0, 1] check queued (flag set by the kernel; read by the caller; a null
// flag: known to be in range, not checked).
Aux keep_prep(const std::optional<Tensor>& keep, int32_t* flag) {
  Aux a;
  if (!keep) return a;
  const int64_t n = keep->numel();
  if (keep->dtype == DType::F32) {
    a.ptr = ptr<float>(*keep);
    if (!flag) return a;  // nothing to check, nothing to convert
    if (n) keep_prep_kernel<float><<<grid_for(n, 256), 256, 0, stream()>>>(a.ptr, nullptr, n, flag);
  } else {
    a.holder = alloc(keep->shape, DType::F32);
    a.ptr = ptr<float>(a.holder);
    if (n) keep_prep_kernel<bf16><<<grid_for(n, 256), 256, 0, stream()>>>(ptr<bf16>(*keep), ptr<float>(a.holder), n, flag);
  }
  if (n) VITRIM_CUDA_LAUNCHED();
  return a;
}

Aux gate_prep(const std::optional<Tensor>& gate) {
  Aux a;
  if (!gate) return a;
  if (gate->dtype == DType::F32) {
    a.ptr = ptr<float>(*gate);
    return a;
  }
  const int64_t n = gate->numel();
  a.holder = alloc(gate->shape, DType::F32);
  a.ptr = ptr<float>(a.holder);
  if (n) {
    to_float_kernel<bf16><<<grid_for(n, 256), 256, 0, stream()>>>(ptr<bf16>(*gate), ptr<float>(a.holder), n);
    VITRIM_CUDA_LAUNCHED();
  }
  return a;
}

bool use_tc(DType dt, int64_t D) { return dt == DType::BF16 && (D == 32 || D == 64 || D == 128); }
int simt_dv(int64_t D) { return D <= 32 ? 2 : D <= 64 ? 4 : 8; }

// The forward's kernel family. float32 with D in {32, 64} runs 3xTF32 on tensor cores unless
// VITRIM_CUDA_ATTN_F32=simt asks for the SIMT kernel (3xtf32 or unset: tensor cores; read at each
// call: the bench times both, the tests check both). D = 128 would need ~250 registers for the split Q fragments and O: SIMT.
enum class Path { Simt, Bf16Tc, F32Tc };
Path fwd_path(DType dt, int64_t D) {
  if (use_tc(dt, D)) return Path::Bf16Tc;
  if (dt == DType::F32 && (D == 32 || D == 64) && env_choice("VITRIM_CUDA_ATTN_F32", {"3xtf32", "simt"}, 0) == 0)
    return Path::F32Tc;
  return Path::Simt;
}

// Rows per CTA / threads / staged rows per fill for sequences of length up to nmax.
// Tensor cores: W warps of 16 rows, the 16-row blocks of a sequence split into balanced tiles of
// at most max_warps warps (8: 197 -> 13 blocks -> 2 tiles of 7 warps); fills of at most 256 rows
// (128 at D = 128). The dK/dV kernel (~165 registers at D = 64) takes at most 4 warps, so that
// 3 CTAs fit an SM and one CTA's staging overlaps another's math.
// 3xTF32 (~170 registers, fp32 staging): at most 4 warps, fills of at most 128 rows at D = 64
// (70 KiB of K and V: 3 CTAs an SM), 256 at D = 32.
// SIMT: 64 rows, 256 threads.
struct Config {
  int threads, rows, fill;
  Path path;  // the kernel family these figures are for (launch_fwd dispatches on it)
};
Config make_config(Path path, int64_t D, int64_t nmax, int max_warps = 8) {
  if (path == Path::Simt) return {256, 64, 0, path};
  if (path == Path::F32Tc) max_warps = std::min(max_warps, 4);
  const int64_t nblk = std::max<int64_t>(1, (nmax + 15) / 16);
  const int64_t tiles = (nblk + max_warps - 1) / max_warps;
  const int w = (int)((nblk + tiles - 1) / tiles);
  const int64_t fill_max = path == Path::F32Tc ? (D <= 32 ? 256 : 128) : D <= 64 ? 256 : 128;
  return {32 * w, 16 * w, (int)std::min<int64_t>(nblk * 16, fill_max), path};
}
// The forward's configuration, with the bench's tuning knob VITRIM_CUDA_ATTN_FWD="warps=W,fill=F"
// for the tensor-core paths (W <= 8 warps, <= 4 for 3xTF32; F a multiple of 16 within shared
// memory; out-of-range values are ignored): the bench sweeps them on the GPU, the defaults above
// are what a sweep should confirm or replace.
Config fwd_config(Path path, int64_t D, int64_t nmax) {
  const char* e = std::getenv("VITRIM_CUDA_ATTN_FWD");
  int warps = 8, fill = 0;
  if (path != Path::Simt && e) {
    for (const char* q = e; *q;) {
      int v = 0;
      if (std::sscanf(q, "warps=%d", &v) == 1 && v >= 1 && v <= (path == Path::F32Tc ? 4 : 8)) warps = v;
      else if (std::sscanf(q, "fill=%d", &v) == 1 && v >= 16 && v % 16 == 0 && v <= 256) fill = v;
      const char* c = std::strchr(q, ',');
      if (!c) break;
      q = c + 1;
    }
  }
  Config cfg = make_config(path, D, nmax, warps);
  if (fill) cfg.fill = (int)std::min<int64_t>(std::max<int64_t>(1, (nmax + 15) / 16) * 16, fill);
  return cfg;
}
Config make_config(bool tc, int64_t D, int64_t nmax, int max_warps = 8) {
  return make_config(tc ? Path::Bf16Tc : Path::Simt, D, nmax, max_warps);
}

// Launch with `smem` dynamic shared bytes (raising the kernel's opt-in limit once when above 48 KiB).
template <class P>
void launch_kernel(void (*k)(P), int64_t blocks, int threads, size_t smem, const P& p) {
  VITRIM_CHECK(blocks <= INT_MAX, Shape, "attention: ", blocks, " thread blocks exceed the cuda grid limit");
  if (blocks <= 0) return;
  if (smem > 48 * 1024) {
    static std::mutex mu;
    static std::unordered_map<const void*, size_t> raised;
    std::lock_guard<std::mutex> lk(mu);
    size_t& have = raised[(const void*)k];
    if (have < smem) {
      VITRIM_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
      have = smem;
    }
  }
  k<<<(unsigned)blocks, threads, smem, stream()>>>(p);
  VITRIM_CUDA_LAUNCHED();
}

size_t simt_smem(int dv, int tiles, size_t extra_floats) {
  return (size_t)tiles * 64 * (16 * dv + 4) * sizeof(float) + (size_t)64 * kPLD * sizeof(float) +
         extra_floats * sizeof(float);
}

// Forward (DREC = false) or the D-recompute pass (DREC = true) over `blocks` CTAs.
template <bool KEEP, bool DREC>
void launch_fwd(DType dt, int D, const FwdParams& p, int64_t blocks, const Config& cfg) {
  if constexpr (!DREC) {  // the D-recompute mode runs the bf16 or SIMT kernels only (make_config(bool))
    if (cfg.path == Path::F32Tc) {
      const size_t smem = (size_t)2 * cfg.fill * (D + 4) * sizeof(float) + (KEEP ? (size_t)(cfg.fill + D) * 4 : 0);
      if (D == 32) launch_kernel(fwd_f32tc<32, KEEP>, blocks, cfg.threads, smem, p);
      else launch_kernel(fwd_f32tc<64, KEEP>, blocks, cfg.threads, smem, p);
      return;
    }
  }
  if (cfg.path == Path::Bf16Tc) {
    const size_t smem = (size_t)2 * cfg.fill * (D + 8) * sizeof(bf16) + (KEEP ? (size_t)(cfg.fill + D) * 4 : 0);
    if (D == 32) launch_kernel(fwd_tc<32, KEEP, DREC>, blocks, cfg.threads, smem, p);
    else if (D == 64) launch_kernel(fwd_tc<64, KEEP, DREC>, blocks, cfg.threads, smem, p);
    else launch_kernel(fwd_tc<128, KEEP, DREC>, blocks, cfg.threads, smem, p);
    return;
  }
  const int dv = simt_dv(D);
  const size_t smem = simt_smem(dv, 3, KEEP ? 64 + 16 * dv : 0);
  dispatch_float(dt, "qkv", [&](auto tag) {
    using T = decltype(tag);
    if (dv == 2) launch_kernel(fwd_simt<T, 2, KEEP, DREC>, blocks, 256, smem, p);
    else if (dv == 4) launch_kernel(fwd_simt<T, 4, KEEP, DREC>, blocks, 256, smem, p);
    else launch_kernel(fwd_simt<T, 8, KEEP, DREC>, blocks, 256, smem, p);
  });
}

// The dK/dV pass (params pk: key tiles) and the dQ pass (pq: query tiles).
template <bool KEEP>
void launch_bwd(DType dt, int D, const BwdParams& pk, const Config& ck, const BwdParams& pq, const Config& cq,
                int64_t BH) {
  const int64_t bk = BH * pk.ntiles, bq = BH * pq.ntiles;
  if (use_tc(dt, D)) {
    const size_t smem_kv = (size_t)2 * ck.fill * (D + 8) * sizeof(bf16) + (size_t)ck.fill * 4 * (KEEP ? 5 : 3);
    const size_t smem_dq = (size_t)2 * cq.fill * (D + 8) * sizeof(bf16) + (KEEP ? (size_t)cq.fill * 4 : 0);
    if (D == 32) {
      launch_kernel(bwd_dkdv_tc<32, KEEP>, bk, ck.threads, smem_kv, pk);
      launch_kernel(bwd_dq_tc<32, KEEP>, bq, cq.threads, smem_dq, pq);
    } else if (D == 64) {
      launch_kernel(bwd_dkdv_tc<64, KEEP>, bk, ck.threads, smem_kv, pk);
      launch_kernel(bwd_dq_tc<64, KEEP>, bq, cq.threads, smem_dq, pq);
    } else {
      launch_kernel(bwd_dkdv_tc<128, KEEP>, bk, ck.threads, smem_kv, pk);
      launch_kernel(bwd_dq_tc<128, KEEP>, bq, cq.threads, smem_dq, pq);
    }
    return;
  }
  const int dv = simt_dv(D);
  const size_t smem_kv = simt_smem(dv, 4, 5 * 64), smem_dq = simt_smem(dv, 4, KEEP ? 64 : 0);
  dispatch_float(dt, "qkv", [&](auto tag) {
    using T = decltype(tag);
    if (dv == 2) {
      launch_kernel(bwd_dkdv_simt<T, 2, KEEP>, bk, 256, smem_kv, pk);
      launch_kernel(bwd_dq_simt<T, 2, KEEP>, bq, 256, smem_dq, pq);
    } else if (dv == 4) {
      launch_kernel(bwd_dkdv_simt<T, 4, KEEP>, bk, 256, smem_kv, pk);
      launch_kernel(bwd_dq_simt<T, 4, KEEP>, bq, 256, smem_dq, pq);
    } else {
      launch_kernel(bwd_dkdv_simt<T, 8, KEEP>, bk, 256, smem_kv, pk);
      launch_kernel(bwd_dq_simt<T, 8, KEEP>, bq, 256, smem_dq, pq);
    }
  });
}

// keep's range is checked on the device (keep_prep); reported like every device-side check
// (check_flag: at once, or deferred / inside a graph).
struct KeepFlag {
  DeviceFlag f;
  int32_t* ptr() const { return f.words ? f.ptr() : nullptr; }
};
// No flag (and no check, no sync) when keep's values are known to lie in [0, 1] (known_unit_range:
// hard Gumbel decisions, step(), and concat / cast / copy of such tensors, unchanged since).
KeepFlag keep_flag(const std::optional<Tensor>& keep) {
  return keep && !known_unit_range(*keep) ? KeepFlag{new_flag()} : KeepFlag{};
}
void check_keep_flag(const KeepFlag& k, const char* op) {
  if (!k.f.words) return;
  check_flag(k.f, [op](const int32_t*) {
    fail(ErrorKind::Argument, op, ": keep values must lie in [0, 1] (a value outside it, or NaN, is in keep)");
  });
}

}  // namespace

std::tuple<Tensor, Tensor> attention_forward(const Tensor& qkv, int64_t num_heads, double scale,
                                             const std::optional<Tensor>& keep,
                                             const std::optional<Tensor>& head_gate, double eps) {
  const Dims d = check_attention("attention", qkv, num_heads, scale, keep, head_gate, eps);
  Tensor out = alloc({d.B, d.N, d.C}, qkv.dtype);
  Tensor stats = alloc({d.B, d.H, d.N, 3}, DType::F32);
  if (out.numel() == 0) return {out, stats};
  const KeepFlag flag = keep_flag(keep);
  const Aux kf = keep_prep(keep, flag.ptr());
  const Aux gf = gate_prep(head_gate);
  const Config cfg = fwd_config(fwd_path(qkv.dtype, d.D), d.D, d.N);
  FwdParams p{};
  p.qkv = qkv.raw();
  p.out = out.raw();
  p.stats = ptr<float>(stats);
  p.keep = kf.ptr;
  p.gate = gf.ptr;
  p.C = d.C;
  p.H = (int)d.H;
  p.N = (int)d.N;
  p.D = (int)d.D;
  p.rows = cfg.rows;
  p.fill = cfg.fill;
  p.ntiles = (int)((d.N + cfg.rows - 1) / cfg.rows);
  p.scale2 = (float)(scale * kLog2e);
  p.eps = (float)eps;
  const int64_t blocks = d.B * d.H * p.ntiles;
  if (keep) launch_fwd<true, false>(qkv.dtype, p.D, p, blocks, cfg);
  else launch_fwd<false, false>(qkv.dtype, p.D, p, blocks, cfg);
  check_keep_flag(flag, "attention");
  return {out, stats};
}

std::tuple<Tensor, std::optional<Tensor>, std::optional<Tensor>> attention_backward(
    const Tensor& gout, const Tensor& qkv, int64_t num_heads, double scale, const std::optional<Tensor>& keep,
    const std::optional<Tensor>& head_gate, double eps, const Tensor& out, const Tensor& stats) {
  const Dims d = check_attention("attention_backward", qkv, num_heads, scale, keep, head_gate, eps);
  const int64_t B = d.B, N = d.N, H = d.H, C = d.C, D = d.D;
  check_float_cuda(gout, "gout");
  VITRIM_CHECK(gout.dtype == qkv.dtype, DType, "attention_backward: gout is ", dtype_name(gout.dtype),
               " but qkv is ", dtype_name(qkv.dtype));
  check_shape(gout, {B, N, C}, "gout");
  check_float_cuda(out, "out");
  VITRIM_CHECK(out.dtype == qkv.dtype, DType, "attention_backward: out is ", dtype_name(out.dtype), " but qkv is ",
               dtype_name(qkv.dtype));
  check_shape(out, {B, N, C}, "out");
  check_cuda(stats, "stats");
  check_dtype(stats, DType::F32, "stats");
  check_shape(stats, {B, H, N, 3}, "stats");

  Tensor gqkv = alloc(qkv.shape, qkv.dtype);
  std::optional<Tensor> gkeep, ggate;
  if (keep) gkeep = alloc({B, N}, keep->dtype);
  if (head_gate) ggate = alloc({B, H}, head_gate->dtype);
  if (gqkv.numel() == 0) {  // B = 0 or N = 0: the gate gradient is an empty sum
    if (ggate && ggate->numel()) VITRIM_CUDA_CHECK(cudaMemsetAsync(ggate->raw(), 0, ggate->nbytes(), stream()));
    return {gqkv, gkeep, ggate};
  }
  const KeepFlag flag = keep_flag(keep);
  const Aux kf = keep_prep(keep, flag.ptr());
  const Aux gf = gate_prep(head_gate);
  const int64_t BH = B * H;
  Tensor dvals = alloc({BH * N}, DType::F32);
  Tensor vsum, gvb, gpart;
  if (keep) {
    vsum = alloc({BH * D}, DType::F32);
    gvb = alloc({BH * N}, DType::F32);
    gpart = alloc({BH * N}, DType::F32);
  }
  // D_i (and gvb_i) per row.
  dispatch_float(qkv.dtype, "qkv", [&](auto tag) {
    using T = decltype(tag);
    if (keep) {
      vsum_kernel<T><<<(unsigned)std::min<int64_t>(BH, 65535), 128, 0, stream()>>>(ptr<T>(qkv), ptr<float>(vsum), BH,
                                                                                  (int)N, (int)H, (int)D, C);
      VITRIM_CUDA_LAUNCHED();
      bwd_pre_kernel<T, true><<<grid_for(BH * N * 32, 256), 256, 0, stream()>>>(
          ptr<T>(gout), ptr<T>(out), gf.ptr, ptr<float>(vsum), ptr<float>(dvals), ptr<float>(gvb), BH * N, (int)N,
          (int)H, (int)D);
    } else {
      bwd_pre_kernel<T, false><<<grid_for(BH * N * 32, 256), 256, 0, stream()>>>(
          ptr<T>(gout), ptr<T>(out), gf.ptr, nullptr, ptr<float>(dvals), nullptr, BH * N, (int)N, (int)H, (int)D);
    }
    VITRIM_CUDA_LAUNCHED();
  });
  const bool tc = use_tc(qkv.dtype, D);
  const Config cfg = make_config(tc, D, N);
  const int ntiles = (int)((N + cfg.rows - 1) / cfg.rows);
  const int64_t blocks = BH * ntiles;
  if (head_gate) {  // heads whose gate hides D_i in out: recompute it from q, k, v and gout
    FwdParams f{};
    f.qkv = qkv.raw();
    f.keep = kf.ptr;
    f.gate = gf.ptr;
    f.gout = gout.raw();
    f.dvals = ptr<float>(dvals);
    f.C = C;
    f.H = (int)H;
    f.N = (int)N;
    f.D = (int)D;
    f.rows = cfg.rows;
    f.fill = cfg.fill;
    f.ntiles = ntiles;
    f.scale2 = (float)(scale * kLog2e);
    f.eps = (float)eps;
    if (keep) launch_fwd<true, true>(qkv.dtype, (int)D, f, blocks, cfg);
    else launch_fwd<false, true>(qkv.dtype, (int)D, f, blocks, cfg);
  }
  BwdParams p{};
  p.qkv = qkv.raw();
  p.gout = gout.raw();
  p.gqkv = gqkv.raw();
  p.stats = ptr<float>(stats);
  p.keep = kf.ptr;
  p.gate = gf.ptr;
  p.dvals = ptr<float>(dvals);
  p.gvb = keep ? ptr<float>(gvb) : nullptr;
  p.gkeep_part = keep ? ptr<float>(gpart) : nullptr;
  p.C = C;
  p.H = (int)H;
  p.N = (int)N;
  p.D = (int)D;
  p.scale = (float)scale;
  p.scale2 = (float)(scale * kLog2e);
  p.eps = (float)eps;
  BwdParams pq = p, pk = p;
  pq.ntiles = ntiles;
  pq.rows = cfg.rows;
  pq.fill = cfg.fill;
  const Config ck = make_config(tc, D, N, 4);
  pk.ntiles = (int)((N + ck.rows - 1) / ck.rows);
  pk.rows = ck.rows;
  pk.fill = ck.fill;
  if (keep) launch_bwd<true>(qkv.dtype, (int)D, pk, ck, pq, cfg, BH);
  else launch_bwd<false>(qkv.dtype, (int)D, pk, ck, pq, cfg, BH);
  if (keep) {
    dispatch_float(keep->dtype, "keep", [&](auto tag) {
      using T = decltype(tag);
      gkeep_reduce_kernel<T><<<grid_for(B * N, 256), 256, 0, stream()>>>(ptr<float>(gpart), ptr<T>(*gkeep), B * N,
                                                                         (int)N, (int)H);
      VITRIM_CUDA_LAUNCHED();
    });
  }
  if (head_gate) {
    dispatch_float(head_gate->dtype, "head_gate", [&](auto tag) {
      using T = decltype(tag);
      ggate_reduce_kernel<T><<<grid_for(BH * 32, 256), 256, 0, stream()>>>(ptr<float>(dvals), ptr<T>(*ggate), BH,
                                                                           (int)N);
      VITRIM_CUDA_LAUNCHED();
    });
  }
  check_keep_flag(flag, "attention_backward");
  return {gqkv, gkeep, ggate};
}

namespace attn {

Tensor varlen_forward(const Tensor& qkv, const Tensor& cu_dev, const std::vector<int32_t>& cu, int64_t num_heads,
                      double scale, const std::optional<Tensor>& head_gate) {
  const int64_t R = qkv.size(0), C = qkv.size(1) / 3, H = num_heads, D = C / H;
  Tensor out = alloc({R, C}, qkv.dtype);
  if (out.numel() == 0) return out;
  const int64_t S = (int64_t)cu.size() - 1;
  int64_t nmax = 0;
  for (int64_t s = 0; s < S; ++s) nmax = std::max<int64_t>(nmax, (int64_t)cu[s + 1] - cu[s]);
  const Config cfg = fwd_config(fwd_path(qkv.dtype, D), D, nmax);
  std::vector<int4> tasks;
  for (int64_t s = 0; s < S; ++s) {
    const int n = cu[s + 1] - cu[s];
    for (int64_t h = 0; h < H; ++h)
      for (int q0 = 0; q0 < n; q0 += cfg.rows) tasks.push_back(make_int4((int)s, (int)h, q0, 0));
  }
  if (tasks.empty()) return out;  // unreachable with R > 0; kept for safety
  const Aux gf = gate_prep(head_gate);
  Tensor tdev = alloc({(int64_t)tasks.size(), 4}, DType::I32);
  // From pageable memory: returns once the data is staged, so `tasks` may go out of scope after.
  VITRIM_CUDA_CHECK(cudaMemcpyAsync(tdev.raw(), tasks.data(), tasks.size() * sizeof(int4), cudaMemcpyHostToDevice,
                                    stream()));
  FwdParams p{};
  p.qkv = qkv.raw();
  p.out = out.raw();
  p.gate = gf.ptr;
  p.tasks = static_cast<const int4*>(tdev.raw());
  p.cu = ptr<int32_t>(cu_dev);
  p.C = C;
  p.H = (int)H;
  p.N = 0;
  p.D = (int)D;
  p.ntiles = 1;
  p.rows = cfg.rows;
  p.fill = cfg.fill;
  p.scale2 = (float)(scale * kLog2e);
  p.eps = 0.f;
  launch_fwd<false, false>(qkv.dtype, (int)D, p, (int64_t)tasks.size(), cfg);
  return out;
}

}  // namespace attn

VITRIM_CUDA_OP(attention_forward);
VITRIM_CUDA_OP(attention_backward);

}  // namespace vitrim::cuda
