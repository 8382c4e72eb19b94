// Reductions on the CPU: sum, mean and max over any set of axes of a contiguous float32 tensor.
//
// Axes may be negative (python style); an empty list means every axis (the result is a scalar of
// shape [], or all ones with keepdim). Out-of-range axes are ERR_VITRIM_INDEX, duplicates
// ERR_VITRIM_ARGUMENT. A rank-0 tensor has no valid axis; reduce it with the empty list.
//
// Algorithm: drop size-1 dims, then merge adjacent dims with the same role (kept / reduced), which
// leaves an alternating list of groups. Two loop shapes cover every case:
//   A. innermost group reduced (length L, contiguous): each output element reduces a few contiguous
//      runs of length L (one per index of the other reduced groups); threaded over output elements.
//   B. innermost group kept (length L): each output row of L values accumulates whole contiguous
//      input rows, one per reduced index, into a row accumulator; threaded over (row, column block),
//      so "reduce the leading axis" ([R, M] -> [M], e.g. a bias gradient) streams through memory.
// A full reduction splits the data into fixed chunks combined in chunk order, so results do not
// depend on the thread count. Sums accumulate in double; max propagates NaN (as PyTorch).
// Empty reductions: sum -> 0, mean -> NaN (0/0, as PyTorch), max -> ERR_VITRIM_SHAPE.
// sum_squares (a list of tensors -> Σ Σ x², float32 [1]): fixed 64 Ki-element chunks of each tensor
// summed in double in parallel, the chunk sums added in order: independent of the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

struct Group {
  int64_t size, stride;  // stride in input elements of the group's flattened index
};

inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

double sum_run(const float* p, int64_t n) {
  // Eight independent accumulators: the loop pipelines (and a double sum of floats loses nothing
  // that matters at these lengths).
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += (double)p[i + k];
  for (; i < n; ++i) s[0] += (double)p[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

float max_run(const float* p, int64_t n, float m) {
  float s[8];
  for (int k = 0; k < 8; ++k) s[k] = m;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] = max_nan(s[k], p[i + k]);
  for (; i < n; ++i) s[0] = max_nan(s[0], p[i]);
  for (int k = 1; k < 8; ++k) s[0] = max_nan(s[0], s[k]);
  return s[0];
}

// Offset of flat index `r` over `gs` (outer..inner) in input elements.
int64_t offset_of(int64_t r, const std::vector<Group>& gs) {
  int64_t off = 0;
  for (int64_t d = (int64_t)gs.size() - 1; d >= 0; --d) {
    off += (r % gs[d].size) * gs[d].stride;
    r /= gs[d].size;
  }
  return off;
}

// Odometer over groups, tracking the input offset.
struct Odo {
  const std::vector<Group>& gs;
  std::vector<int64_t> idx;
  int64_t off = 0;
  explicit Odo(const std::vector<Group>& g) : gs(g), idx(g.size(), 0) {}
  void next() {
    for (int64_t d = (int64_t)gs.size() - 1; d >= 0; --d) {
      off += gs[d].stride;
      if (++idx[d] < gs[d].size) return;
      off -= idx[d] * gs[d].stride;
      idx[d] = 0;
    }
  }
};

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  check_f32_cpu(x, "x");
  ReducePlan plan = plan_reduce(op, x, axes, keepdim);
  const int64_t r = x.dim();
  const std::vector<bool>& red = plan.reduced;
  const Shape& os = plan.out;
  const int64_t count = plan.count;
  Tensor y = empty(os, DType::F32);
  const int64_t nout = y.numel();
  if (nout == 0) return y;
  float* out = y.f32();
  if (count == 0) {
    VITRIM_CHECK(op != ReduceOp::Max, Shape, "reduce: max over an empty axis of shape ", shape_str(x.shape));
    const float v = op == ReduceOp::Sum ? 0.f : std::numeric_limits<float>::quiet_NaN();
    for (int64_t i = 0; i < nout; ++i) out[i] = v;
    return y;
  }
  const float* xp = x.f32();
  if (count == 1) {
    std::memcpy(out, xp, sizeof(float) * (size_t)nout);
    return y;
  }
  const double inv = op == ReduceOp::Mean ? 1.0 / (double)count : 1.0;

  // Groups of merged dims, outer..inner, with their role.
  std::vector<Group> kept, reduced;
  std::vector<bool> role;  // true = reduced, per merged group in order
  {
    int64_t stride = 1;
    std::vector<Group> rev;
    std::vector<bool> rrole;
    for (int64_t i = r - 1; i >= 0; --i) {
      const int64_t d = x.shape[i];
      if (d != 1) {
        if (!rev.empty() && rrole.back() == red[i]) {
          rev.back().size *= d;  // outer neighbour of the same role: extend the group outwards
        } else {
          rev.push_back({d, stride});
          rrole.push_back(red[i]);
        }
      }
      stride *= d;
    }
    for (int64_t k = (int64_t)rev.size() - 1; k >= 0; --k) {
      role.push_back(rrole[k]);
      (rrole[k] ? reduced : kept).push_back(rev[k]);
    }
  }

  if (kept.empty()) {
    // Full reduction of a contiguous buffer: fixed chunks, combined in order.
    const int64_t n = x.numel();
    const int64_t chunk = 1 << 16;
    const int64_t nch = (n + chunk - 1) / chunk;
    std::vector<double> part((size_t)nch);
    std::vector<float> partm((size_t)nch);
    parallel_for(nch, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b = c * chunk, len = std::min(chunk, n - b);
        if (op == ReduceOp::Max) partm[c] = max_run(xp + b, len, -std::numeric_limits<float>::infinity());
        else part[c] = sum_run(xp + b, len);
      }
    });
    if (op == ReduceOp::Max) {
      float m = partm[0];
      for (int64_t c = 1; c < nch; ++c) m = max_nan(m, partm[c]);
      out[0] = m;
    } else {
      double s = 0;
      for (int64_t c = 0; c < nch; ++c) s += part[c];
      out[0] = (float)(s * inv);
    }
    return y;
  }

  if (role.back()) {
    // A: innermost group reduced.
    const int64_t L = reduced.back().size;
    std::vector<Group> outer_red(reduced.begin(), reduced.end() - 1);
    const int64_t nrun = count / L;
    const int64_t grain = std::max<int64_t>(1, (1 << 15) / count);
    parallel_for(nout, grain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const float* base = xp + offset_of(o, kept);
        Odo od(outer_red);
        if (op == ReduceOp::Max) {
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t k = 0; k < nrun; ++k, od.next()) m = max_run(base + od.off, L, m);
          out[o] = m;
        } else {
          double s = 0;
          for (int64_t k = 0; k < nrun; ++k, od.next()) s += sum_run(base + od.off, L);
          out[o] = (float)(s * inv);
        }
      }
    });
    return y;
  }

  // B: innermost group kept; output rows of length L.
  const int64_t L = kept.back().size;
  std::vector<Group> outer_kept(kept.begin(), kept.end() - 1);
  const int64_t Q = nout / L;
  constexpr int64_t kBlk = 512;
  const int64_t nblk = (L + kBlk - 1) / kBlk;
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / (std::min(L, kBlk) * count));
  parallel_for(Q * nblk, grain, [&](int64_t t0, int64_t t1) {
    double acc[kBlk];
    float accm[kBlk];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t q = t / nblk, c0 = (t % nblk) * kBlk, n = std::min(kBlk, L - c0);
      const float* base = xp + offset_of(q, outer_kept) + c0;
      Odo od(reduced);
      if (op == ReduceOp::Max) {
        for (int64_t i = 0; i < n; ++i) accm[i] = -std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < count; ++k, od.next()) {
          const float* src = base + od.off;
          for (int64_t i = 0; i < n; ++i) accm[i] = max_nan(accm[i], src[i]);
        }
        std::memcpy(out + q * L + c0, accm, sizeof(float) * (size_t)n);
      } else {
        for (int64_t i = 0; i < n; ++i) acc[i] = 0;
        for (int64_t k = 0; k < count; ++k, od.next()) {
          const float* src = base + od.off;
          for (int64_t i = 0; i < n; ++i) acc[i] += (double)src[i];
        }
        float* dst = out + q * L + c0;
        for (int64_t i = 0; i < n; ++i) dst[i] = (float)(acc[i] * inv);
      }
    }
  });
  return y;
}

Tensor sum_squares(const std::vector<Tensor>& xs) {
  constexpr int64_t kChunk = int64_t(1) << 16;
  std::vector<std::pair<const float*, int64_t>> chunks;  // (start, length)
  for (size_t i = 0; i < xs.size(); ++i) {
    check_f32_cpu(xs[i], "xs");
    const float* p = xs[i].f32();
    for (int64_t b = 0; b < xs[i].numel(); b += kChunk) chunks.emplace_back(p + b, std::min(kChunk, xs[i].numel() - b));
  }
  std::vector<double> part(chunks.size(), 0.0);
  parallel_for((int64_t)chunks.size(), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double s = 0.0;
      const float* p = chunks[c].first;
      for (int64_t j = 0; j < chunks[c].second; ++j) s += (double)p[j] * (double)p[j];
      part[c] = s;
    }
  });
  double total = 0.0;
  for (double s : part) total += s;
  Tensor y = empty({1}, DType::F32);
  y.f32()[0] = (float)total;
  return y;
}

}  // namespace vitrim::cpu
