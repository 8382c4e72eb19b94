// Top-k along the last axis of a float32 tensor of any rank >= 1: values [..., k] (float32) and their
// indices [..., k] (int32) into the last axis, sorted best first (largest first when `largest`,
// smallest first otherwise).
//
// Order (a total order, so the result is fully deterministic and independent of the algorithm and
// thread count):
//   - values compare numerically; -0.0 and +0.0 are equal;
//   - NaN counts as larger than +inf (PyTorch's convention for sort/topk): with largest=true NaNs come
//     first, with largest=false they come last; NaN payloads/signs are not distinguished;
//   - equal values (and NaN vs NaN): the lower index comes first, for largest and smallest alike.
// k may be 0 (empty outputs, as torch.topk allows); k > L or k < 0 is ERR_VITRIM_ARGUMENT.
//
// Algorithm: each element becomes one uint64 key — a monotone 32-bit encoding of the value in the high
// half, the (possibly complemented) index in the low half — so that the desired order is plain
// unsigned integer order. Then nth_element puts the k best first (O(L)) and a sort orders them
// (O(k log k)). Rows are short at ViT lengths (<= a few thousand), so rows are threaded, not split.
// The returned values are copied from x (NaN payloads and the sign of zero are preserved).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {
namespace {

// Monotone map float -> uint32: a < b (numerically) iff enc(a) < enc(b); -0 and +0 map alike; every
// NaN maps to the maximum, above +inf.
inline uint32_t order_key(float f) {
  if (std::isnan(f)) return 0xFFFFFFFFu;
  if (f == 0.0f) f = 0.0f;  // fold -0 into +0
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

}  // namespace

std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, bool largest) {
  check_f32_cpu(x, "x");
  const Shape os = plan_topk(x, k);
  const int64_t L = x.size(-1);
  Tensor vals = empty(os, DType::F32);
  Tensor idx = empty(os, DType::I32);
  const int64_t rows = L == 0 ? 0 : x.numel() / L;
  if (k == 0 || rows == 0) return {vals, idx};
  const float* X = x.f32();
  float* V = vals.f32();
  int32_t* I = idx.i32();

  parallel_for(rows, std::max<int64_t>(1, 8192 / L), [&](int64_t r0, int64_t r1) {
    std::vector<uint64_t> keys((size_t)L);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = X + r * L;
      // largest: sort keys descending; 0xFFFFFFFF - index in the low half makes the lower index win
      // ties. smallest: complement the value part and still sort descending, so there is one code
      // path. The complement also sends NaN (value part 0xFFFFFFFF) to 0, below every number (+inf
      // becomes 0x007FFFFF), i.e. last, as the order above requires.
      for (int64_t j = 0; j < L; ++j) {
        uint64_t v = order_key(xr[j]);
        if (!largest) v = (uint64_t)(~(uint32_t)v);
        keys[j] = (v << 32) | (uint64_t)(0xFFFFFFFFu - (uint32_t)j);
      }
      auto first = keys.begin(), kth = keys.begin() + k, last = keys.end();
      if (k < L) std::nth_element(first, kth - 1, last, std::greater<uint64_t>());
      std::sort(first, kth, std::greater<uint64_t>());
      float* vr = V + r * k;
      int32_t* ir = I + r * k;
      for (int64_t t = 0; t < k; ++t) {
        int32_t j = (int32_t)(0xFFFFFFFFu - (uint32_t)(keys[t] & 0xFFFFFFFFull));
        ir[t] = j;
        vr[t] = xr[j];
      }
    }
  });
  return {vals, idx};
}

}  // namespace vitrim::cpu
