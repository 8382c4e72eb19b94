// Fused multi-head self-attention (the part of timm's Attention between qkv and proj) with
// DynamicViT's key keep-mask and a per-head output gate.
//
// Layouts: qkv [B, N, 3C] as timm's qkv(x).reshape(B, N, 3, H, D): q of head h, token i is at
// qkv[b, i, h*D .. h*D+D), k at offset C, v at offset 2C (C = H*D). out [B, N, C] is
// (attn @ v).transpose(1, 2).reshape(B, N, C), i.e. head-major channels, before the projection.
// keep [B, N] (optional) and head_gate [B, H] (optional).
//
// Per (b, h):  s_ij = scale q_i.k_j,  m_i = max_j s_ij (over all j),  e_ij = exp(s_ij - m_i)
//   plain:  P_ij = e_ij / l_i,  l_i = Σ_j e_ij                                  (softmax)
//   keep:   pi_ij = keep_j + (1 - keep_j)[i == j],  A_ij = e_ij pi_ij,  Z_i = Σ_j A_ij,
//           P_ij = (A_ij + eps/N) / (Z_i + eps)          (DynamicViT softmax_with_policy)
//   out_i = g_h Σ_j P_ij v_j  (g_h = head_gate[b, h], 1 without a gate)
// stats [B, H, N, 2] (opaque to callers): (m_i, denominator l_i or Z_i + eps) per row.
//
// Backward recomputes s and P from qkv and stats (nothing N x N is saved). With G_ij = go_i.v_j
// (ungated), D_i = Σ_j P_ij G_ij, and gP = g_h G:
//   gv_j = g_h Σ_i P_ij go_i,  ghead_gate[b, h] = Σ_i D_i  (= Σ_i go_i.(P V)_i),
//   plain: gs_ij = g_h P_ij (G_ij - D_i)
//   keep:  W_ij = (g_h / den_i) e_ij (G_ij - D_i),  gs_ij = pi_ij W_ij,
//          gkeep_j = Σ_h Σ_{i != j} W_ij  (d pi_ij / d keep_j = 1 - [i == j]),
//          and, because softmax_with_policy subtracts a non-detached max and eps makes the result
//          depend on it, gs_{i, argmax_i} -= (eps g_h / den_i)(D_i - mean_j G_ij)  (first argmax,
//          as torch.max routes its gradient). Without keep that term is exactly zero.
//   gq_i = scale Σ_j gs_ij k_j,  gk_j = scale Σ_i gs_ij q_i.
// The `out` argument of the backward is only shape-checked: D_i is recomputed from P and G rather
// than taken as go_i.out_i / g_h, which would fail for a gate of 0 (hard gates).
//
// Work split: the forward runs (b, h, block of <= kMaxRowBlock query rows) tasks in parallel, so a
// batch-1 call still spreads over the cores; the backward runs (b, h) tasks (gk/gv accumulate over
// all query rows). Inside a task every product is one vitrim::cpu::sgemm call on strided views of
// qkv / out / gqkv (serial there when nested in parallel_for; a lone task lets sgemm thread), over
// scratch of at most 3 * kMaxRowBlock * N floats per task chunk, so memory stays O(N) per query row
// rather than O(N^2) per head. The per-row softmax work is the ISA-dispatched rowkernels.h.
// keep with eps = 0 divides by Z_i, which underflows to 0 when every kept score is ~88 below the
// row max: the result is then NaN, as in PyTorch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm_kernel.h"
#include "rowkernels.h"
#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

// Query rows per block: at most kMaxRowBlock, split evenly (197 -> 99 + 98) so that forward tasks
// are balanced and no block is a small remainder (each sgemm call re-packs K or V).
constexpr int64_t kMaxRowBlock = 128;
int64_t row_block(int64_t N) {
  int64_t nblk = (N + kMaxRowBlock - 1) / kMaxRowBlock;
  return nblk ? (N + nblk - 1) / nblk : 1;
}

using AttnDims = AttentionShape;

AttnDims check_attention(const char* op, const Tensor& qkv, int64_t num_heads, double scale,
                         const std::optional<Tensor>& keep, const std::optional<Tensor>& head_gate, double eps) {
  check_f32_cpu(qkv, "qkv");
  AttnDims d = check_attention_shape(op, qkv, num_heads, scale, eps);
  if (keep) {
    check_f32_cpu(*keep, "keep");
    check_shape(*keep, {d.B, d.N}, "keep");
    const float* k = keep->f32();
    for (int64_t i = 0, n = d.B * d.N; i < n; ++i)
      VITRIM_CHECK(k[i] >= 0.f && k[i] <= 1.f, Argument, op, ": keep values must lie in [0, 1], got ", k[i],
                   " at flat index ", i);
  }
  if (head_gate) {
    check_f32_cpu(*head_gate, "head_gate");
    check_shape(*head_gate, {d.B, d.H}, "head_gate");
  }
  return d;
}

}  // namespace

std::tuple<Tensor, Tensor> attention_forward(const Tensor& qkv, int64_t num_heads, double scale,
                                             const std::optional<Tensor>& keep,
                                             const std::optional<Tensor>& head_gate, double eps) {
  const AttnDims d = check_attention("attention", qkv, num_heads, scale, keep, head_gate, eps);
  const int64_t B = d.B, N = d.N, H = d.H, C = d.C, D = d.D, C3 = d.C3;
  Tensor out = empty({B, N, C}, DType::F32);
  Tensor stats = empty({B, H, N, 2}, DType::F32);
  if (out.numel() == 0) return {out, stats};
  const RowKernels& rk = row_kernels();
  const float* x = qkv.f32();
  const float* kp = keep ? keep->f32() : nullptr;
  const float* gp = head_gate ? head_gate->f32() : nullptr;
  float* op = out.f32();
  float* st = stats.f32();
  const float fscale = (float)scale, feps = (float)eps;

  const gemm::Kernel& kr = gemm::active_kernel();
  if (N <= kr.kc && D <= kr.kc) {
    // Panel path: K^T and V of a head are packed once (as the micro-kernel's B panels), then each
    // MR-row panel of queries runs S = scale Q K^T (one micro-kernel call per NR keys, into an
    // MR x N strip), the row kernel, and out = g P V (P packed as an A panel). Everything but the
    // packed K/V stays in L1, and nothing is packed twice.
    const int64_t MR = kr.mr, NR = kr.nr;
    const int64_t panels = (N + MR - 1) / MR, kpan = (N + NR - 1) / NR, vpan = (D + NR - 1) / NR;
    // Tasks are (b, h, run of query panels). Each head is cut into `split` runs, chosen to minimise
    // the estimated time of the busiest thread: ceil(tasks / T) rounds of (panels per run + the K/V
    // packing every task repeats, ~1.5 panels' worth). Batch 1 with 3 heads on 2 threads gives 2
    // runs per head (6 tasks, 3 per thread); 24 heads give whole heads.
    const int64_t T = num_threads(), BH = B * H;
    int64_t split = 1;
    double best = 1e300;
    for (int64_t s = 1; s <= std::min<int64_t>(panels, 8); ++s) {
      const double rounds = (double)((BH * s + T - 1) / T);
      const double cost = rounds * ((double)((panels + s - 1) / s) + 1.5);
      if (cost < best - 1e-9) {
        best = cost;
        split = s;
      }
    }
    const int64_t per = (panels + split - 1) / split;
    split = (panels + per - 1) / per;
    // The score strip has rows of Np >= N floats, a multiple of 16: without a keep mask the row
    // kernel runs over all Np columns, the ones past N set to -inf (probability 0), so its loops
    // have no scalar tail (which cost ~20% of it at N = 197).
    const int64_t Np = kp ? N : (N + 15) / 16 * 16;
    parallel_for(BH * split, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> kpack((size_t)(kpan * NR * D)), vpack((size_t)(vpan * NR * N));
      std::vector<float> qpack((size_t)(MR * D)), S((size_t)(MR * Np)), ppack((size_t)(MR * N));
      int64_t packed = -1;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t bh = t / split, b = bh / H, h = bh % H;
        const float* q = x + b * N * C3 + h * D;
        if (bh != packed) {
          kr.pack_b(true, q + C, C3, N, D, kpack.data());       // op(B)[k, j] = K[j, k]
          kr.pack_b(false, q + 2 * C, C3, D, N, vpack.data());  // op(B)[k, j] = V[k, j]
          packed = bh;
        }
        const float* keep_b = kp ? kp + b * N : nullptr;
        const float g = gp ? gp[bh] : 1.f;
        const int64_t p1 = std::min(panels, (t % split + 1) * per);
        for (int64_t p = (t % split) * per; p < p1; ++p) {
          const int64_t i0 = p * MR;
          const int m = (int)std::min(MR, N - i0);
          kr.pack_a(false, q + i0 * C3, C3, m, D, qpack.data());
          for (int64_t j = 0; j < kpan; ++j)
            kr.micro(D, qpack.data(), kpack.data() + j * NR * D, S.data() + j * NR, Np, fscale, 0.f, nullptr, m,
                     (int)std::min(NR, N - j * NR));
          for (int r = 0; r < m; ++r)
            for (int64_t j = N; j < Np; ++j) S[(size_t)(r * Np + j)] = -INFINITY;
          rk.attn_probs_fwd(S.data(), m, Np, i0, keep_b, feps, st + (bh * N + i0) * 2);
          kr.pack_a(false, S.data(), Np, m, N, ppack.data());
          float* o = op + (b * N + i0) * C + h * D;
          for (int64_t j = 0; j < vpan; ++j)
            kr.micro(N, ppack.data(), vpack.data() + j * NR * N, o + j * NR, C, g, 0.f, nullptr, m,
                     (int)std::min(NR, D - j * NR));
        }
      }
    });
    return {out, stats};
  }

  // Long sequences (N or D beyond the kernel's K block): sgemm on row blocks of each head.
  const int64_t rbk = row_block(N), nblk = (N + rbk - 1) / rbk;
  parallel_for(B * H * nblk, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> S((size_t)(rbk * N));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / (H * nblk), h = (t / nblk) % H, i0 = (t % nblk) * rbk;
      const int64_t rb = std::min(rbk, N - i0);
      const float* q = x + b * N * C3 + h * D;
      const float* k = q + C;
      const float* v = q + 2 * C;
      const float* keep_b = kp ? kp + b * N : nullptr;
      sgemm(false, true, rb, N, D, fscale, q + i0 * C3, C3, k, C3, 0.f, S.data(), N);
      rk.attn_probs_fwd(S.data(), rb, N, i0, keep_b, feps, st + ((b * H + h) * N + i0) * 2);
      const float g = gp ? gp[b * H + h] : 1.f;
      sgemm(false, false, rb, D, N, g, S.data(), N, v, C3, 0.f, op + (b * N + i0) * C + h * D, C);
    }
  });
  return {out, stats};
}

std::tuple<Tensor, std::optional<Tensor>, std::optional<Tensor>> attention_backward(
    const Tensor& gout, const Tensor& qkv, int64_t num_heads, double scale, const std::optional<Tensor>& keep,
    const std::optional<Tensor>& head_gate, double eps, const Tensor& out, const Tensor& stats) {
  const AttnDims d = check_attention("attention_backward", qkv, num_heads, scale, keep, head_gate, eps);
  const int64_t B = d.B, N = d.N, H = d.H, C = d.C, D = d.D, C3 = d.C3;
  check_f32_cpu(gout, "gout");
  check_shape(gout, {B, N, C}, "gout");
  check_f32_cpu(out, "out");
  check_shape(out, {B, N, C}, "out");
  check_f32_cpu(stats, "stats");
  check_shape(stats, {B, H, N, 2}, "stats");

  Tensor gqkv = empty(qkv.shape, DType::F32);
  std::optional<Tensor> gkeep, ggate;
  std::vector<float> gkeep_part;  // [B, H, N]: per-head column sums, reduced over heads below
  if (keep) {
    gkeep = empty({B, N}, DType::F32);
    gkeep_part.assign((size_t)(B * H * N), 0.f);
  }
  if (head_gate) ggate = empty({B, H}, DType::F32);

  const float* x = qkv.f32();
  const float* go_all = gout.f32();
  const float* kp = keep ? keep->f32() : nullptr;
  const float* gp = head_gate ? head_gate->f32() : nullptr;
  const float* st = stats.f32();
  float* gx = gqkv.f32();
  float* ggp = head_gate ? ggate->f32() : nullptr;
  const float fscale = (float)scale, feps = (float)eps;
  const int64_t rbk = row_block(N);
  const RowKernels& rk = row_kernels();

  parallel_for(B * H, 1, [&](int64_t t0, int64_t t1) {
    const size_t blk = (size_t)(rbk * N);
    std::vector<float> E(blk), P(blk), G(blk);
    std::vector<int64_t> amax((size_t)rbk);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / H, h = t % H;
      const float* q = x + b * N * C3 + h * D;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* gq = gx + b * N * C3 + h * D;
      float* gk = gq + C;
      float* gv = gq + 2 * C;
      const float* go = go_all + b * N * C + h * D;
      const float* keep_b = kp ? kp + b * N : nullptr;
      float* colsum = keep_b ? gkeep_part.data() + t * N : nullptr;
      const float g = gp ? gp[t] : 1.f;
      double gate_acc = 0;
      for (int64_t i0 = 0; i0 < N; i0 += rbk) {
        const int64_t rb = std::min(rbk, N - i0);
        const float beta = i0 == 0 ? 0.f : 1.f;
        sgemm(false, true, rb, N, D, fscale, q + i0 * C3, C3, k, C3, 0.f, E.data(), N);
        // e (in E) and P from the saved row max and denominator.
        rk.attn_probs_bwd(E.data(), P.data(), rb, N, i0, keep_b, feps, st + (t * N + i0) * 2, amax.data());
        // gv += g P^T go  (rows i0 .. i0+rb of go)
        sgemm(true, false, N, D, rb, g, P.data(), N, go + i0 * C, C, beta, gv, C3);
        // G = go v^T (ungated)
        sgemm(false, true, rb, N, D, 1.f, go + i0 * C, C, v, C3, 0.f, G.data(), N);
        gate_acc += rk.attn_grad_scores(G.data(), P.data(), E.data(), rb, N, i0, keep_b, feps, g,
                                        st + (t * N + i0) * 2, amax.data(), colsum);
        // gq = scale gs k (rows of this block), gk += scale gs^T q
        sgemm(false, false, rb, D, N, fscale, G.data(), N, k, C3, 0.f, gq + i0 * C3, C3);
        sgemm(true, false, N, D, rb, fscale, G.data(), N, q + i0 * C3, C3, beta, gk, C3);
      }
      if (ggp) ggp[t] = (float)gate_acc;
    }
  });

  if (keep) {
    float* gkp = gkeep->f32();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t h = 0; h < H; ++h) s += gkeep_part[(b * H + h) * N + j];
        gkp[b * N + j] = (float)s;
      }
  }
  return {gqkv, gkeep, ggate};
}

}  // namespace vitrim::cpu
