// See vitrim/op_args.h. No global state: compiled into both binaries.
#include "vitrim/op_args.h"

#include <climits>
#include <cmath>
#include <unordered_set>

namespace vitrim {

int64_t norm_axis(int64_t axis, int64_t rank, const char* op) {
  VITRIM_CHECK(axis >= -rank && axis < rank, Index, op, ": axis ", axis, " is out of range for rank ", rank);
  return axis < 0 ? axis + rank : axis;
}

PermutePlan plan_permute(const Tensor& x, const std::vector<int64_t>& perm) {
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
  PermutePlan plan;
  plan.out.resize(r);
  for (int64_t i = 0; i < r; ++i) plan.out[i] = x.shape[p[i]];
  for (int64_t i = 0; i < r; ++i) {
    const int64_t d = plan.out[i], st = in_stride[p[i]];
    if (d == 1) continue;
    if (!plan.dims.empty() && plan.dims.back().stride == st * d) {
      plan.dims.back().size *= d;  // consecutive in the input too: one longer dim
      plan.dims.back().stride = st;
      continue;
    }
    plan.dims.push_back({d, st});
  }
  return plan;
}

ReducePlan plan_reduce(cpu::ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  using cpu::ReduceOp;
  VITRIM_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean || op == ReduceOp::Max, Argument, "reduce: unknown op");
  const int64_t r = x.dim();
  ReducePlan p;
  p.reduced.assign(r, axes.empty());
  for (int64_t a : axes) {
    VITRIM_CHECK(a >= -r && a < r, Index, "reduce: axis ", a, " is out of range for shape ", shape_str(x.shape));
    const int64_t na = a < 0 ? a + r : a;
    VITRIM_CHECK(!p.reduced[na], Argument, "reduce: axis ", a, " is given twice");
    p.reduced[na] = true;
  }
  for (int64_t i = 0; i < r; ++i) {
    if (p.reduced[i]) {
      p.count *= x.shape[i];
      if (keepdim) p.out.push_back(1);
    } else {
      p.out.push_back(x.shape[i]);
    }
  }
  return p;
}

Shape plan_topk(const Tensor& x, int64_t k) {
  VITRIM_CHECK(x.dim() >= 1, Shape, "topk: x must have at least one dimension, got a scalar");
  const int64_t L = x.size(-1);
  VITRIM_CHECK(k >= 0 && k <= L, Argument, "topk: k must be in [0, ", L, "] (the size of the last axis of ",
               shape_str(x.shape), "), got ", k);
  VITRIM_CHECK(L <= INT32_MAX, Shape, "topk: the last axis is too long for int32 indices: ", L);
  Shape os = x.shape;
  os.back() = k;
  return os;
}

void check_token_index(const Tensor& idx, int64_t B, Device d, const char* op) {
  check_device(idx, d, "idx");
  check_dtype(idx, DType::I32, "idx");
  check_rank(idx, 2, "idx");
  VITRIM_CHECK(idx.shape[0] == B, Shape, op, ": idx ", shape_str(idx.shape), " has batch ", idx.shape[0],
               ", expected ", B);
}

void check_scatter_tokens(const Tensor& g, const Tensor& idx, int64_t n, Device d) {
  check_rank(g, 3, "g");
  VITRIM_CHECK(n >= 0, Argument, "scatter_tokens: n must be >= 0, got ", n);
  check_token_index(idx, g.shape[0], d, "scatter_tokens");
  VITRIM_CHECK(idx.shape[1] == g.shape[1], Shape, "scatter_tokens: idx ", shape_str(idx.shape), " does not match g ",
               shape_str(g.shape));
}

AttentionShape check_attention_shape(const char* op, const Tensor& qkv, int64_t num_heads, double scale, double eps) {
  VITRIM_CHECK(qkv.dim() == 3, Shape, op, ": qkv must be [B, N, 3*C], got shape ", shape_str(qkv.shape));
  VITRIM_CHECK(num_heads > 0, Argument, op, ": num_heads must be positive, got ", num_heads);
  AttentionShape d;
  d.B = qkv.size(0);
  d.N = qkv.size(1);
  d.C3 = qkv.size(2);
  d.H = num_heads;
  VITRIM_CHECK(d.C3 > 0 && d.C3 % 3 == 0 && (d.C3 / 3) % num_heads == 0, Shape, op,
               ": the last dimension of qkv (", d.C3, ") must be a positive multiple of 3 * num_heads (3 * ",
               num_heads, ")");
  d.C = d.C3 / 3;
  d.D = d.C / d.H;
  VITRIM_CHECK(std::isfinite(scale), Argument, op, ": scale must be finite, got ", scale);
  VITRIM_CHECK(std::isfinite(eps) && eps >= 0, Argument, op, ": eps must be finite and >= 0, got ", eps);
  return d;
}

static void outer_inner(const Shape& s, int64_t a, SlicePlan& p) {
  for (int64_t i = 0; i < a; ++i) p.outer *= s[i];
  for (int64_t i = a + 1; i < (int64_t)s.size(); ++i) p.inner *= s[i];
}

SlicePlan plan_slice(const Shape& x, int64_t axis, int64_t start, int64_t end) {
  SlicePlan p;
  p.axis = norm_axis(axis, (int64_t)x.size(), "slice");
  p.d = x[p.axis];
  VITRIM_CHECK(start >= 0 && start <= end && end <= p.d, Index, "slice: [", start, ", ", end,
               ") is not a valid range of axis ", axis, " with size ", p.d, " (need 0 <= start <= end <= size)");
  p.len = end - start;
  p.out = x;
  p.out[p.axis] = p.len;
  outer_inner(x, p.axis, p);
  return p;
}

SlicePlan plan_slice_backward(const Shape& gy, const Shape& shape, int64_t axis, int64_t start) {
  shape_numel(shape);
  VITRIM_CHECK(shape.size() == gy.size(), Shape, "slice_backward: gy ", shape_str(gy), " and shape ",
               shape_str(shape), " differ in rank");
  SlicePlan p;
  p.axis = norm_axis(axis, (int64_t)gy.size(), "slice_backward");
  for (int64_t i = 0; i < (int64_t)gy.size(); ++i)
    VITRIM_CHECK(i == p.axis || gy[i] == shape[i], Shape, "slice_backward: gy ", shape_str(gy),
                 " does not match shape ", shape_str(shape), " outside axis ", p.axis);
  p.len = gy[p.axis];
  p.d = shape[p.axis];
  VITRIM_CHECK(start >= 0 && start + p.len <= p.d, Index, "slice_backward: [", start, ", ", start + p.len,
               ") is not a valid range of axis ", axis, " with size ", p.d);
  p.out = shape;
  outer_inner(shape, p.axis, p);
  return p;
}

PatchGeom patch_geometry(const Shape& s, int64_t p, const char* op) {
  VITRIM_CHECK(s.size() == 4, Shape, op, ": image shape must be [B, C, H, W], got ", shape_str(s));
  VITRIM_CHECK(p >= 1, Argument, op, ": patch size must be >= 1, got ", p);
  VITRIM_CHECK(s[2] % p == 0 && s[3] % p == 0, Shape, op, ": image ", shape_str(s),
               " has H, W not divisible by the patch size ", p);
  shape_numel({s[1], p, p});  // the patch length C*p*p must not overflow
  return {s[0], s[1], s[2], s[3], p, s[2] / p, s[3] / p};
}

VarlenShape check_varlen_shape(const Tensor& qkv, const Tensor& cu_seqlens, int64_t num_heads, double scale, Device d) {
  check_rank(qkv, 2, "qkv");
  check_device(cu_seqlens, d, "cu_seqlens");
  check_dtype(cu_seqlens, DType::I32, "cu_seqlens");
  check_rank(cu_seqlens, 1, "cu_seqlens");
  VITRIM_CHECK(num_heads > 0, Argument, "attention_varlen: num_heads must be positive, got ", num_heads);
  VITRIM_CHECK(std::isfinite(scale), Argument, "attention_varlen: scale must be finite");
  VarlenShape v;
  v.R = qkv.size(0);
  v.C3 = qkv.size(1);
  VITRIM_CHECK(v.C3 % (3 * num_heads) == 0, Shape, "attention_varlen: qkv last dim ", v.C3,
               " must be divisible by 3 * num_heads = ", 3 * num_heads);
  v.C = v.C3 / 3;
  v.H = num_heads;
  v.D = v.C / v.H;
  v.S = cu_seqlens.numel() - 1;
  VITRIM_CHECK(v.S >= 0, Shape, "attention_varlen: cu_seqlens must have at least one entry");
  return v;
}

std::vector<int64_t> sum_to_axes(const Shape& xs, const Shape& shape) {
  shape_numel(shape);
  const int64_t r = (int64_t)xs.size(), rs = (int64_t)shape.size();
  VITRIM_CHECK(rs <= r, Shape, "sum_to: cannot sum ", shape_str(xs), " down to ", shape_str(shape),
               " (target has more dimensions)");
  const int64_t lead = r - rs;
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < lead; ++i) axes.push_back(i);
  for (int64_t j = 0; j < rs; ++j) {
    const int64_t dx = xs[lead + j], dt = shape[j];
    VITRIM_CHECK(dt == dx || dt == 1, Shape, "sum_to: ", shape_str(shape), " does not broadcast to ",
                 shape_str(xs), " (dim ", j, ": ", dt, " vs ", dx, ")");
    if (dt != dx) axes.push_back(lead + j);
  }
  return axes;
}

ConcatPlan plan_concat(const std::vector<Tensor>& xs, int64_t axis) {
  VITRIM_CHECK(!xs.empty(), Argument, "concat: needs at least one tensor");
  const Tensor& x0 = xs[0];
  const int64_t r = x0.dim();
  ConcatPlan p;
  p.axis = norm_axis(axis, r, "concat");
  const int64_t a = p.axis;
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
  p.out = x0.shape;
  p.out[a] = total;
  for (int64_t i = 0; i < a; ++i) p.outer *= p.out[i];
  for (int64_t i = a + 1; i < r; ++i) p.inner *= p.out[i];
  return p;
}

void concat_rows(const std::vector<Tensor>& xs, const ConcatPlan& plan, const Tensor& y, CopyRows copy) {
  const int64_t a = plan.axis, total = plan.out[a], es = (int64_t)dtype_size(y.dtype);
  int64_t off = 0;
  for (const Tensor& t : xs) {
    const int64_t n = t.shape[a] * plan.inner * es;
    copy(plan.outer, static_cast<const uint8_t*>(t.raw()), n, static_cast<uint8_t*>(y.raw()), total * plan.inner * es,
         off, n);
    off += n;
  }
}

MatmulPlan plan_matmul(const Tensor& a, const Tensor& b, bool transA, bool transB) {
  VITRIM_CHECK(a.dim() >= 2 && b.dim() >= 2, Shape, "matmul: a and b must have at least 2 dimensions, got ",
               shape_str(a.shape), " and ", shape_str(b.shape));
  MatmulPlan p;
  p.M = transA ? a.size(-1) : a.size(-2);
  p.K = transA ? a.size(-2) : a.size(-1);
  const int64_t Kb = transB ? b.size(-1) : b.size(-2);
  p.N = transB ? b.size(-2) : b.size(-1);
  VITRIM_CHECK(p.K == Kb, Shape, "matmul: inner dimensions differ: a ", shape_str(a.shape),
               (transA ? " (transposed)" : ""), " and b ", shape_str(b.shape), (transB ? " (transposed)" : ""));
  Shape batch(a.shape.begin(), a.shape.end() - 2);
  p.shared_b = b.dim() == 2;
  if (!p.shared_b) {
    Shape bb(b.shape.begin(), b.shape.end() - 2);
    VITRIM_CHECK(bb == batch, Shape, "matmul: batch dimensions differ: ", shape_str(a.shape), " and ",
                 shape_str(b.shape));
  }
  p.batch = shape_numel(batch);
  p.out = batch;
  p.out.push_back(p.M);
  p.out.push_back(p.N);
  return p;
}

namespace {
// The hyper-parameters' checks (as PyTorch's constructor, plus finiteness) and the scalars, formed
// in double and rounded to float once.
AdamWScalars adamw_scalars(const char* op, double lr, double beta1, double beta2, double eps, double weight_decay,
                           int64_t step) {
  VITRIM_CHECK(std::isfinite(lr) && lr >= 0.0, Argument, op, ": lr must be finite and >= 0, got ", lr);
  VITRIM_CHECK(std::isfinite(eps) && eps >= 0.0, Argument, op, ": eps must be finite and >= 0, got ", eps);
  VITRIM_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0, Argument, op,
               ": weight_decay must be finite and >= 0, got ", weight_decay);
  VITRIM_CHECK(beta1 >= 0.0 && beta1 < 1.0, Argument, op, ": beta1 must be in [0, 1), got ", beta1);
  VITRIM_CHECK(beta2 >= 0.0 && beta2 < 1.0, Argument, op, ": beta2 must be in [0, 1), got ", beta2);
  VITRIM_CHECK(step >= 1, Argument, op, ": step must be >= 1 (the count including this step), got ", step);
  const double bc1 = 1.0 - std::pow(beta1, (double)step);
  const double bc2 = 1.0 - std::pow(beta2, (double)step);
  AdamWScalars k;
  k.decay = (float)(1.0 - lr * weight_decay);
  k.b1 = (float)beta1;
  k.c1 = (float)(1.0 - beta1);
  k.b2 = (float)beta2;
  k.c2 = (float)(1.0 - beta2);
  k.step_size = (float)(lr / bc1);
  k.inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
  k.eps = (float)eps;
  return k;
}

void check_adamw_tensors(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v) {
  check_same_shape(grad, param, "grad", "param");
  check_same_shape(m, param, "m", "param");
  check_same_shape(v, param, "v", "param");
  VITRIM_CHECK(param.storage != m.storage && param.storage != v.storage && m.storage != v.storage, Argument,
               "adamw_step: param, m and v must be distinct tensors (they share storage)");
  VITRIM_CHECK(grad.storage != param.storage && grad.storage != m.storage && grad.storage != v.storage, Argument,
               "adamw_step: grad must not share storage with param, m or v");
}
}  // namespace

AdamWScalars check_adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                         double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  check_adamw_tensors(param, grad, m, v);
  return adamw_scalars("adamw_step", lr, beta1, beta2, eps, weight_decay, step);
}

void check_grad_scale(const std::optional<Tensor>& grad_scale) {
  if (!grad_scale) return;
  check_dtype(*grad_scale, DType::F32, "grad_scale");
  VITRIM_CHECK(grad_scale->numel() == 1, Shape, "adamw_step_multi: grad_scale must have one element, got shape ",
               shape_str(grad_scale->shape));
}

AdamWScalars check_adamw_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                               const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, double lr, double beta1,
                               double beta2, double eps, double weight_decay, int64_t step,
                               const std::function<void(size_t)>& check_devices) {
  const size_t n = params.size();
  VITRIM_CHECK(grads.size() == n && ms.size() == n && vs.size() == n, Argument,
               "adamw_step_multi: params, grads, m and v must have one entry per parameter, got ", n, ", ",
               grads.size(), ", ", ms.size(), " and ", vs.size());
  const AdamWScalars k = adamw_scalars("adamw_step_multi", lr, beta1, beta2, eps, weight_decay, step);
  std::unordered_set<const void*> written;
  for (size_t i = 0; i < n; ++i) {
    try {
      check_devices(i);
      check_adamw_tensors(params[i], grads[i], ms[i], vs[i]);
    } catch (const Error& e) {
      fail(e.kind(), "adamw_step_multi: entry ", i, ": ", e.what());
    }
    for (const Tensor* t : {&params[i], &ms[i], &vs[i]})
      VITRIM_CHECK(written.insert(t->storage.get()).second, Argument, "adamw_step_multi: entry ", i,
                   " shares storage with an earlier entry (each parameter, m and v must be its own tensor)");
  }
  for (size_t i = 0; i < n; ++i)
    VITRIM_CHECK(!written.count(grads[i].storage.get()), Argument, "adamw_step_multi: grads[", i,
                 "] shares storage with a parameter or moment that the step writes");
  return k;
}

}  // namespace vitrim
