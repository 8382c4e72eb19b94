// Token gather/scatter on the CPU (inference token dropping and its training-time backward).
//
// gather_tokens: x [B, N, C] float32, idx [B, K] int32 -> y [B, K, C], y[b, k] = x[b, idx[b, k]].
//   Every index is checked to lie in [0, N) before anything is written; the error names the first
//   bad value and its position. Rows are copied with memcpy, threaded over the B*K output rows.
// scatter_tokens: g [B, K, C], idx [B, K], n -> gx [B, n, C], zero-filled, gx[b, idx[b, k]] += g[b, k]
//   (accumulating when an index repeats): the adjoint of gather, so it is gather's backward.
//   Repeated indices would race if rows were split across threads, so work is split over
//   (batch, channel block) instead: each task owns a disjoint slice of the output and adds the rows
//   in k order, which also makes the result independent of the thread count.
#include <cstring>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

void check_indices(const Tensor& idx, int64_t n, const char* op) {
  const int32_t* ip = idx.i32();
  const int64_t B = idx.shape[0], K = idx.shape[1];
  for (int64_t i = 0; i < B * K; ++i) {
    const int64_t v = ip[i];
    if (v < 0 || v >= n)
      fail(ErrorKind::Index, op, ": idx[", i / K, ", ", i % K, "] = ", v, " is out of range [0, ", n, ")");
  }
}

void check_idx(const Tensor& idx, int64_t B, const char* op) { check_token_index(idx, B, Device::CPU, op); }

}  // namespace

Tensor gather_tokens(const Tensor& x, const Tensor& idx) {
  check_f32_cpu(x, "x");
  check_rank(x, 3, "x");
  const int64_t B = x.shape[0], N = x.shape[1], C = x.shape[2];
  check_idx(idx, B, "gather_tokens");
  const int64_t K = idx.shape[1];
  check_indices(idx, N, "gather_tokens");
  Tensor y = empty({B, K, C}, DType::F32);
  if (y.numel() == 0) return y;
  const float* xp = x.f32();
  const int32_t* ip = idx.i32();
  float* yp = y.f32();
  parallel_for(B * K, std::max<int64_t>(1, 8192 / C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / K;
      std::memcpy(yp + r * C, xp + (b * N + ip[r]) * C, sizeof(float) * (size_t)C);
    }
  });
  return y;
}

Tensor scatter_tokens(const Tensor& g, const Tensor& idx, int64_t n) {
  check_f32_cpu(g, "g");
  check_scatter_tokens(g, idx, n, Device::CPU);
  const int64_t B = g.shape[0], K = g.shape[1], C = g.shape[2];
  check_indices(idx, n, "scatter_tokens");
  Tensor gx = zeros({B, n, C}, DType::F32);
  if (g.numel() == 0) return gx;
  const float* gp = g.f32();
  const int32_t* ip = idx.i32();
  float* op = gx.f32();
  constexpr int64_t kBlk = 256;
  const int64_t nblk = (C + kBlk - 1) / kBlk;
  parallel_for(B * nblk, std::max<int64_t>(1, 8192 / (K * kBlk)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nblk, c0 = (t % nblk) * kBlk, len = std::min(kBlk, C - c0);
      for (int64_t k = 0; k < K; ++k) {
        const float* __restrict src = gp + (b * K + k) * C + c0;
        float* __restrict dst = op + (b * n + ip[b * K + k]) * C + c0;
        for (int64_t i = 0; i < len; ++i) dst[i] += src[i];
      }
    }
  });
  return gx;
}

}  // namespace vitrim::cpu
