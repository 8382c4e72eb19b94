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

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

namespace {

constexpr int64_t kGrainBytes = 1 << 17;

int64_t norm_axis(int64_t axis, int64_t rank, const char* op) {
  VITRIM_CHECK(axis >= -rank && axis < rank, Index, op, ": axis ", axis, " is out of range for rank ", rank);
  return axis < 0 ? axis + rank : axis;
}

struct PDim {
  int64_t size, stride;  // output dim size and its stride in the input (elements)
};

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
  const int64_t r = x.dim();
  VITRIM_CHECK((int64_t)perm.size() == r, Argument, "permute: perm has ", perm.size(), " entries, x has rank ", r,
               " (shape ", shape_str(x.shape), ")");
  std::vector<int64_t> p(r);
  std::vector<bool> seen(r, false);
  for (int64_t i = 0; i < r; ++i) {
    p[i] = norm_axis(perm[i], r, "permute");
    VITRIM_CHECK(!seen[p[i]], Argument, "permute: axis ", perm[i], " appears twice; perm must be a permutation");
    seen[p[i]] = true;
  }
  std::vector<int64_t> in_stride(r);
  for (int64_t i = r - 1, s = 1; i >= 0; --i) {
    in_stride[i] = s;
    s *= x.shape[i];
  }
  Shape os(r);
  for (int64_t i = 0; i < r; ++i) os[i] = x.shape[p[i]];
  Tensor y = empty(os, x.dtype);
  if (y.numel() == 0) return y;
  std::vector<PDim> dims;
  for (int64_t i = 0; i < r; ++i) {
    const int64_t d = os[i], st = in_stride[p[i]];
    if (d == 1) continue;
    if (!dims.empty() && dims.back().stride == st * d) {
      dims.back().size *= d;  // consecutive in the input too: one longer dim
      dims.back().stride = st;
      continue;
    }
    dims.push_back({d, st});
  }
  if (dims.empty()) dims.push_back({1, 1});
  if (dtype_size(x.dtype) == 2)
    permute_copy(dims, static_cast<const uint16_t*>(x.raw()), static_cast<uint16_t*>(y.raw()));
  else
    permute_copy(dims, static_cast<const uint32_t*>(x.raw()), static_cast<uint32_t*>(y.raw()));
  return y;
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  check_cpu(x, "x");
  const int64_t a = norm_axis(axis, x.dim(), "slice");
  const int64_t d = x.shape[a];
  VITRIM_CHECK(start >= 0 && start <= end && end <= d, Index, "slice: [", start, ", ", end,
               ") is not a valid range of axis ", axis, " with size ", d, " (need 0 <= start <= end <= size)");
  Shape os = x.shape;
  os[a] = end - start;
  Tensor y = empty(os, x.dtype);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= x.shape[i];
  for (int64_t i = a + 1; i < x.dim(); ++i) inner *= x.shape[i];
  const int64_t es = (int64_t)dtype_size(x.dtype);
  copy_rows(outer, static_cast<const uint8_t*>(x.raw()) + start * inner * es, d * inner * es,
            static_cast<uint8_t*>(y.raw()), (end - start) * inner * es, 0, (end - start) * inner * es);
  return y;
}

Tensor slice_backward(const Tensor& gy, const Shape& shape, int64_t axis, int64_t start) {
  check_f32_cpu(gy, "gy");
  shape_numel(shape);
  VITRIM_CHECK((int64_t)shape.size() == gy.dim(), Shape, "slice_backward: gy ", shape_str(gy.shape),
               " and shape ", shape_str(shape), " differ in rank");
  const int64_t a = norm_axis(axis, gy.dim(), "slice_backward");
  for (int64_t i = 0; i < gy.dim(); ++i)
    VITRIM_CHECK(i == a || gy.shape[i] == shape[i], Shape, "slice_backward: gy ", shape_str(gy.shape),
                 " does not match shape ", shape_str(shape), " outside axis ", a);
  const int64_t len = gy.shape[a], d = shape[a];
  VITRIM_CHECK(start >= 0 && start + len <= d, Index, "slice_backward: [", start, ", ", start + len,
               ") is not a valid range of axis ", axis, " with size ", d);
  Tensor gx = zeros(shape, DType::F32);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= shape[i];
  for (int64_t i = a + 1; i < gy.dim(); ++i) inner *= shape[i];
  copy_rows(outer, reinterpret_cast<const uint8_t*>(gy.f32()), len * inner * 4, reinterpret_cast<uint8_t*>(gx.f32()),
            d * inner * 4, start * inner * 4, len * inner * 4);
  return gx;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  VITRIM_CHECK(!xs.empty(), Argument, "concat: needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k) check_cpu(xs[k], "concat input");
  const Tensor& x0 = xs[0];
  const int64_t r = x0.dim();
  const int64_t a = norm_axis(axis, r, "concat");
  int64_t total = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    const Tensor& t = xs[k];
    VITRIM_CHECK(t.dtype == x0.dtype, DType, "concat: input ", k, " is ", dtype_name(t.dtype), ", input 0 is ",
                 dtype_name(x0.dtype));
    VITRIM_CHECK(t.dim() == r, Shape, "concat: input ", k, " has shape ", shape_str(t.shape), ", input 0 has ",
                 shape_str(x0.shape), " (ranks differ)");
    for (int64_t i = 0; i < r; ++i)
      VITRIM_CHECK(i == a || t.shape[i] == x0.shape[i], Shape, "concat: input ", k, " has shape ",
                   shape_str(t.shape), ", input 0 has ", shape_str(x0.shape), "; they may differ only along axis ",
                   a);
    total += t.shape[a];
  }
  Shape os = x0.shape;
  os[a] = total;
  Tensor y = empty(os, x0.dtype);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= os[i];
  for (int64_t i = a + 1; i < r; ++i) inner *= os[i];
  const int64_t es = (int64_t)dtype_size(x0.dtype);
  int64_t off = 0;
  for (const Tensor& t : xs) {
    const int64_t n = t.shape[a] * inner * es;
    copy_rows(outer, static_cast<const uint8_t*>(t.raw()), n, static_cast<uint8_t*>(y.raw()), total * inner * es, off,
              n);
    off += n;
  }
  return y;
}

}  // namespace vitrim::cpu
