// Softmax cross-entropy with label smoothing, fused (per row: a max pass, an exp pass, and for the
// backward a scaling pass), matching torch.nn.functional.cross_entropy(logits, labels, label_smoothing=s,
// reduction='mean').
//
// Layouts: logits [R, K] float32 row-major, labels [R] int32 in [0, K). Outputs: loss [] (a 0-d
// scalar), lse [R] (log-sum-exp per row, saved for backward).
//
// Forward, per row r with m = max_j x_j and target t = (1-s)·onehot(y) + s/K:
//   lse  = m + log Σ_j exp(x_j − m)
//   loss = Σ_j t_j (lse − x_j) = (lse − m) − (1−s)(x_y − m) − (s/K) Σ_j (x_j − m)
// written relative to m and accumulated in double, so logits of any magnitude neither overflow nor
// cancel (lse − x_y is formed from small numbers). The mean over rows is summed serially in row order,
// so the loss does not depend on the thread count.
// Backward: dL/dx_rj = gloss · (softmax_rj − t_rj) / R.
//
// Deviation worth knowing: the backward recomputes each row's max and Σexp (double) from the logits
// instead of using exp(x − lse) with the saved float32 lse. A float32 lse carries an absolute rounding
// error of up to |lse|·2^-24, which becomes a relative error of the same size in every softmax
// probability: 6e-4 for logits near 1e4 (PyTorch avoids it the same way, by never rounding lse alone).
// The saved lse is still validated against the recomputed one (shape and value), so passing the lse
// of other logits is an error rather than a silently wrong gradient. Non-finite logits propagate
// (NaN loss / gradient), as in PyTorch; they are not an error.
#include <cmath>
#include <vector>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {
namespace {

void check_ce_args(const Tensor& logits, const Tensor& labels, double smoothing, const char* op) {
  check_f32_cpu(logits, "logits");
  check_rank(logits, 2, "logits");
  check_cpu(labels, "labels");
  check_dtype(labels, DType::I32, "labels");
  int64_t R = logits.size(0), K = logits.size(1);
  VITRIM_CHECK(R >= 1 && K >= 1, Shape, op, ": logits must have at least one row and one class, got ",
               shape_str(logits.shape));
  check_shape(labels, {R}, "labels");
  VITRIM_CHECK(std::isfinite(smoothing) && smoothing >= 0.0 && smoothing < 1.0, Argument, op,
               ": label smoothing must be in [0, 1), got ", smoothing);
  VITRIM_CHECK(K <= INT32_MAX, Shape, op, ": too many classes for int32 labels: ", K);
  const int32_t* y = labels.i32();
  for (int64_t r = 0; r < R; ++r)
    VITRIM_CHECK(y[r] >= 0 && y[r] < K, Index, op, ": labels[", r, "] = ", y[r], " is out of range [0, ", K, ")");
}

struct RowStats {
  float max;
  double sumexp;  // Σ exp(x_j − max)
};

// Row max and Σexp(x − max), with exp(x_j − max) left in e[0..K). NaN anywhere makes sumexp NaN (the
// NaN entry's exp, or every entry's when the max itself is NaN). Written as independent lanes and
// separate passes so that no accumulator has to live across the exp call: fused into one loop, the
// running max and the double sum were spilled around each call and the loop ran ~3x slower.
inline RowStats row_stats(const float* x, int64_t K, float* e) {
  float lane[8];
  for (float& l : lane) l = x[0];
  int64_t j = 0;
  for (; j + 8 <= K; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
  for (; j < K; ++j) lane[0] = x[j] > lane[0] ? x[j] : lane[0];
  float m = lane[0];
  for (int l = 1; l < 8; ++l) m = lane[l] > m ? lane[l] : m;
  for (j = 0; j < K; ++j) e[j] = std::exp(x[j] - m);
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  for (j = 0; j + 4 <= K; j += 4)
    for (int l = 0; l < 4; ++l) acc[l] += (double)e[j + l];
  for (; j < K; ++j) acc[0] += (double)e[j];
  return {m, (acc[0] + acc[1]) + (acc[2] + acc[3])};
}

}  // namespace

std::tuple<Tensor, Tensor> cross_entropy_forward(const Tensor& logits, const Tensor& labels, double smoothing) {
  check_ce_args(logits, labels, smoothing, "cross_entropy_forward");
  const int64_t R = logits.size(0), K = logits.size(1);
  Tensor loss = empty({}, DType::F32);
  Tensor lse = empty({R}, DType::F32);
  std::vector<double> row_loss((size_t)R);
  const float* X = logits.f32();
  const int32_t* Y = labels.i32();
  float* L = lse.f32();
  const double s = smoothing, on = 1.0 - smoothing, off = smoothing / (double)K;
  parallel_for(R, std::max<int64_t>(1, 16384 / K), [&](int64_t r0, int64_t r1) {
    std::vector<float> scratch((size_t)K);
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = X + r * K;
      RowStats st = row_stats(x, K, scratch.data());
      const double lse_m = std::log(st.sumexp);  // lse − m
      double sum_shift = 0.0;                    // Σ (x_j − m)
      if (s != 0.0)
        for (int64_t j = 0; j < K; ++j) sum_shift += (double)x[j] - (double)st.max;
      row_loss[r] = lse_m - on * ((double)x[Y[r]] - (double)st.max) - off * sum_shift;
      L[r] = (float)((double)st.max + lse_m);
    }
  });
  double total = 0.0;
  for (int64_t r = 0; r < R; ++r) total += row_loss[r];
  loss.f32()[0] = (float)(total / (double)R);
  return {loss, lse};
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double smoothing, const Tensor& lse,
                              double gloss, const std::optional<Tensor>& gscale) {
  check_ce_args(logits, labels, smoothing, "cross_entropy_backward");
  const int64_t R = logits.size(0), K = logits.size(1);
  check_f32_cpu(lse, "lse");
  check_shape(lse, {R}, "lse");
  VITRIM_CHECK(std::isfinite(gloss), Argument, "cross_entropy_backward: gloss must be finite, got ", gloss);
  if (gscale) {
    check_f32_cpu(*gscale, "gscale");
    VITRIM_CHECK(gscale->numel() == 1, Shape, "cross_entropy_backward: gscale must have one element, got shape ",
                 shape_str(gscale->shape));
    gloss *= (double)gscale->f32()[0];  // not checked for finiteness: a NaN upstream gradient propagates
  }
  Tensor g = empty({R, K}, DType::F32);
  const float* X = logits.f32();
  const int32_t* Y = labels.i32();
  const float* LS = lse.f32();
  float* G = g.f32();
  const double on = 1.0 - smoothing, off = smoothing / (double)K, scale = gloss / (double)R;
  // Validation of the saved lse happens per row inside the parallel loop; the first bad row is
  // reported (lowest index, independent of scheduling) after the loop.
  std::vector<char> bad((size_t)R, 0);
  parallel_for(R, std::max<int64_t>(1, 8192 / K), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = X + r * K;
      float* gr = G + r * K;
      RowStats st = row_stats(x, K, gr);  // gr holds exp(x − max) until scaled below
      const double lse_r = (double)st.max + std::log(st.sumexp);
      if (std::isfinite(lse_r) &&
          !(std::fabs((double)LS[r] - lse_r) <= 1e-4 * std::max(1.0, std::fabs(lse_r))))
        bad[r] = 1;
      const double inv = 1.0 / st.sumexp;
      const int32_t y = Y[r];
      const double e_y = gr[y];
      for (int64_t j = 0; j < K; ++j) gr[j] = (float)(scale * ((double)gr[j] * inv - off));
      gr[y] = (float)(scale * (e_y * inv - off - on));  // from the exp, not by adjusting the rounded float
    }
  });
  for (int64_t r = 0; r < R; ++r)
    VITRIM_CHECK(!bad[r], Argument, "cross_entropy_backward: lse[", r, "] = ", LS[r],
                 " does not match the log-sum-exp of logits row ", r, " (pass the lse returned by the forward)");
  return g;
}

}  // namespace vitrim::cpu
