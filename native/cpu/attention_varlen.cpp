// Varlen attention forward for inference on packed sequences (AdaViT / token-dropping inference).
//
// Layout: qkv [R, 3C] holds S sequences back to back; sequence s owns rows [cu[s], cu[s+1]) with
// cu = cu_seqlens (int32 [S+1]). Within a row, q | k | v each hold H heads of D = C/H channels
// (timm's fused qkv). out [R, C], head-major channels as timm's (attn @ v).transpose(1,2).
// Per (sequence, head): P = softmax(scale·Q Kᵀ) over the sequence's own keys, out = g·P V.
// head_gate [S, H] (optional): a head with gate 0 is skipped entirely (its output channels are 0),
// which is how dropped heads save their work; other gates scale the output.
//
// Work split: tasks are (sequence, head, block of up to 64 query rows), run with parallel_for, each
// doing two sgemm calls on strided views (serial inside the pool) over a scratch block of 64 × n.
// Inference only: nothing is saved for backward (the training path uses attention_forward's masks).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {
constexpr int64_t kRows = 64;
struct Task {
  int32_t s, h;
  int64_t r0, r1;  // absolute query rows
};
}  // namespace

Tensor attention_varlen_forward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t num_heads, double scale,
                                const std::optional<Tensor>& head_gate) {
  check_f32_cpu(qkv, "qkv");
  const VarlenShape vs = check_varlen_shape(qkv, cu_seqlens, num_heads, scale, Device::CPU);
  const int64_t R = vs.R, C3 = vs.C3, C = vs.C, H = vs.H, D = vs.D;
  const int64_t S = vs.S;
  const int32_t* cu = cu_seqlens.i32();
  VITRIM_CHECK(cu[0] == 0, Argument, "attention_varlen: cu_seqlens[0] must be 0, got ", cu[0]);
  for (int64_t s = 0; s < S; ++s)
    VITRIM_CHECK(cu[s + 1] >= cu[s], Argument, "attention_varlen: cu_seqlens must be nondecreasing (at ", s + 1, ")");
  VITRIM_CHECK(cu[S] == R, Shape, "attention_varlen: cu_seqlens[S] = ", cu[S], " must equal the number of rows ", R);
  const float* gate = nullptr;
  if (head_gate) {
    check_f32_cpu(*head_gate, "head_gate");
    check_shape(*head_gate, {S, H}, "head_gate");
    gate = head_gate->f32();
  }
  Tensor out = empty({R, C}, DType::F32);
  std::vector<Task> tasks;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t h = 0; h < H; ++h) {
      float g = gate ? gate[s * H + h] : 1.f;
      for (int64_t r = cu[s]; r < cu[s + 1]; r += kRows) {
        int64_t r1 = std::min<int64_t>(r + kRows, cu[s + 1]);
        if (g == 0.f) {  // skipped head: zero its channels, no work
          for (int64_t i = r; i < r1; ++i) std::memset(out.f32() + i * C + h * D, 0, sizeof(float) * D);
          continue;
        }
        tasks.push_back({(int32_t)s, (int32_t)h, r, r1});
      }
    }
  const float* base = qkv.f32();
  parallel_for((int64_t)tasks.size(), 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> sc;
    for (int64_t t = t0; t < t1; ++t) {
      const Task& tk = tasks[t];
      const int64_t k0 = cu[tk.s], n = cu[tk.s + 1] - k0, m = tk.r1 - tk.r0;
      sc.resize((size_t)(m * n));
      const float* q = base + tk.r0 * C3 + tk.h * D;
      const float* k = base + k0 * C3 + C + tk.h * D;
      const float* v = base + k0 * C3 + 2 * C + tk.h * D;
      sgemm(false, true, m, n, D, (float)scale, q, C3, k, C3, 0.f, sc.data(), n);
      for (int64_t i = 0; i < m; ++i) {
        float* row = sc.data() + i * n;
        float mx = row[0];
        for (int64_t j = 1; j < n; ++j) mx = std::max(mx, row[j]);
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        float inv = (float)((gate ? gate[tk.s * H + tk.h] : 1.f) / sum);
        for (int64_t j = 0; j < n; ++j) row[j] *= inv;
      }
      sgemm(false, false, m, D, n, 1.f, sc.data(), n, v, C3, 0.f, out.f32() + tk.r0 * C + tk.h * D, C);
    }
  });
  return out;
}

}  // namespace vitrim::cpu
