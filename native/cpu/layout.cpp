// Layout ops on the CPU: permute, slice (+ backward) and concat. They only move bytes, so they work
// for every dtype (float32, bfloat16, int32) except slice_backward, which builds a float32 gradient.
//
// permute: output dim i is input dim perm[i] (negative entries count from the end, as numpy).
//   Size-1 dims are dropped and output dims that are consecutive in the input are merged; the copy is
//   then "outer odometer x inner run": a memcpy when the innermost output dim is also innermost in
//   the input ([B,N,H,D] -> [B,H,N,D]), else a strided gather. Threaded over output rows.
// slice: [start, end) along `axis` (axis may be negative). Indices are NOT python-style: 0 <= start
//   <= end <= dim is required and anything else is ERR_VITRIM_INDEX, because a negative index
//   silently meaning "from the end" hides off-by-one bugs in token bookkeeping; callers normalise.
//   An empty slice (start == end) is allowed.
// slice_backward: zeros of `shape` with gy written at [start, start + gy.shape[axis]) along axis.
// concat: >= 1 tensors of one dtype and rank, equal dims except `axis`; one memcpy per (outer row,
//   input). Rank-0 tensors have no axis to concatenate along.
#include <cstring>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

constexpr int64_t kGrainBytes = 1 << 17;



template <class E>
void permute_copy(const std::vector<PDim>& dims, const E* src, E* dst) {
  const int64_t nd = (int64_t)dims.size();
  const int64_t L = dims.back().size, s = dims.back().stride;
  int64_t R = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) R *= dims[d].size;
  const int64_t grain = std::max<int64_t>(1, kGrainBytes / (L * (int64_t)sizeof(E)));
  parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(nd, 0);
    int64_t off = 0;
    {
      int64_t r = r0;
      for (int64_t d = nd - 2; d >= 0; --d) {
        idx[d] = r % dims[d].size;
        r /= dims[d].size;
        off += idx[d] * dims[d].stride;
      }
    }
    for (int64_t row = r0; row < r1; ++row) {
      E* o = dst + row * L;
      const E* in = src + off;
      if (s == 1) {
        std::memcpy(o, in, sizeof(E) * (size_t)L);
      } else {
        for (int64_t i = 0; i < L; ++i) o[i] = in[i * s];
      }
      for (int64_t d = nd - 2; d >= 0; --d) {
        off += dims[d].stride;
        if (++idx[d] < dims[d].size) break;
        off -= idx[d] * dims[d].stride;
        idx[d] = 0;
      }
    }
  });
}

// dst rows of `dst_row` bytes; copy `n` bytes from src row o (stride src_row) to dst row o at dst_off.
void copy_rows(int64_t rows, const uint8_t* src, int64_t src_row, uint8_t* dst, int64_t dst_row, int64_t dst_off,
               int64_t n) {
  if (n == 0 || rows == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrainBytes / n);
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::memcpy(dst + r * dst_row + dst_off, src + r * src_row, (size_t)n);
  });
}

}  // namespace

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  check_cpu(x, "x");
  PermutePlan plan = plan_permute(x, perm);
  Tensor y = empty(plan.out, x.dtype);
  if (y.numel() == 0) return y;
  std::vector<PDim>& dims = plan.dims;
  if (dims.empty()) dims.push_back({1, 1});
  if (dtype_size(x.dtype) == 2)
    permute_copy(dims, static_cast<const uint16_t*>(x.raw()), static_cast<uint16_t*>(y.raw()));
  else
    permute_copy(dims, static_cast<const uint32_t*>(x.raw()), static_cast<uint32_t*>(y.raw()));
  return y;
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  check_cpu(x, "x");
  const SlicePlan p = plan_slice(x.shape, axis, start, end);
  Tensor y = empty(p.out, x.dtype);
  const int64_t es = (int64_t)dtype_size(x.dtype);
  copy_rows(p.outer, static_cast<const uint8_t*>(x.raw()) + start * p.inner * es, p.d * p.inner * es,
            static_cast<uint8_t*>(y.raw()), p.len * p.inner * es, 0, p.len * p.inner * es);
  return y;
}

Tensor slice_backward(const Tensor& gy, const Shape& shape, int64_t axis, int64_t start) {
  check_f32_cpu(gy, "gy");
  const SlicePlan p = plan_slice_backward(gy.shape, shape, axis, start);
  Tensor gx = zeros(shape, DType::F32);
  copy_rows(p.outer, reinterpret_cast<const uint8_t*>(gy.f32()), p.len * p.inner * 4,
            reinterpret_cast<uint8_t*>(gx.f32()), p.d * p.inner * 4, start * p.inner * 4, p.len * p.inner * 4);
  return gx;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  VITRIM_CHECK(!xs.empty(), Argument, "concat: needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k) check_cpu(xs[k], "concat input");
  const ConcatPlan plan = plan_concat(xs, axis);
  Tensor y = empty(plan.out, xs[0].dtype);
  concat_rows(xs, plan, y, &copy_rows);
  return y;
}

}  // namespace vitrim::cpu
