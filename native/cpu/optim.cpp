// Fused AdamW step, in place on param, m (first moment) and v (second moment); one pass over memory.
// Same arithmetic as torch.optim.AdamW (amsgrad=False, maximize=False), including the order of the
// decoupled weight decay (applied to the parameter before the Adam update):
//   p ← p · (1 − lr·wd)
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
// Scalars are formed in double and rounded to float once; the element loop is float32, branch-free and
// written over restrict pointers so the compiler vectorises it (sqrt/div included: -fno-math-errno).
// Threaded over contiguous chunks; every element is independent, so results do not depend on the
// thread count.
// Checks (as PyTorch's constructor, plus finiteness): lr >= 0, eps >= 0, weight_decay >= 0,
// β1, β2 in [0, 1), step >= 1; all four tensors float32 on cpu with one shape; param, m and v must not
// share storage with each other or with grad (the in-place update would read values it already wrote).
// adamw_step_multi: the same loop per entry, after one shared check of the lists; an optional
// grad_scale multiplies each gradient element first (g·s rounded to float, then the update).
// A NaN/inf in grad is not an error: it propagates into m, v and p as in PyTorch (finding and skipping
// such steps is the trainer's job, e.g. with loss scaling).
#include <cmath>

#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {
namespace {

// A separate function so the restrict qualifiers reach the vectoriser (they do not survive a lambda
// capture).
template <bool SCALED = false>
void adamw_kernel(float* __restrict P, const float* __restrict G, float* __restrict M, float* __restrict V,
                  int64_t n, const AdamWScalars k, float gs = 1.f) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = SCALED ? G[i] * gs : G[i];
    const float mi = k.b1 * M[i] + k.c1 * g;
    const float vi = k.b2 * V[i] + k.c2 * (g * g);
    M[i] = mi;
    V[i] = vi;
    P[i] = P[i] * k.decay - k.step_size * (mi / (std::sqrt(vi) * k.inv_sqrt_bc2 + k.eps));
  }
}

}  // namespace

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step) {
  check_f32_cpu(param, "param");
  check_f32_cpu(grad, "grad");
  check_f32_cpu(m, "m");
  check_f32_cpu(v, "v");
  const AdamWScalars k = check_adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  const MarkWritten wp(param), wm(m), wv(v);
  float* P = param.f32();
  const float* G = grad.f32();
  float* M = m.f32();
  float* V = v.f32();
  parallel_for(param.numel(), 1 << 15,
               [&](int64_t b, int64_t e) { adamw_kernel(P + b, G + b, M + b, V + b, e - b, k); });
}

void adamw_step_multi(std::vector<Tensor>& params, const std::vector<Tensor>& grads, std::vector<Tensor>& ms,
                      std::vector<Tensor>& vs, double lr, double beta1, double beta2, double eps, double weight_decay,
                      int64_t step, const std::optional<Tensor>& grad_scale) {
  const AdamWScalars k =
      check_adamw_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step, [&](size_t i) {
        check_f32_cpu(params[i], "param");
        check_f32_cpu(grads[i], "grad");
        check_f32_cpu(ms[i], "m");
        check_f32_cpu(vs[i], "v");
      });
  if (grad_scale) check_f32_cpu(*grad_scale, "grad_scale");
  check_grad_scale(grad_scale);
  const float gs = grad_scale ? grad_scale->f32()[0] : 1.f;
  for (size_t i = 0; i < params.size(); ++i) {
    const MarkWritten wp(params[i]), wm(ms[i]), wv(vs[i]);
    float* P = params[i].f32();
    const float* G = grads[i].f32();
    float* M = ms[i].f32();
    float* V = vs[i].f32();
    parallel_for(params[i].numel(), 1 << 15, [&](int64_t b, int64_t e) {
      if (grad_scale) adamw_kernel<true>(P + b, G + b, M + b, V + b, e - b, k, gs);
      else adamw_kernel(P + b, G + b, M + b, V + b, e - b, k);
    });
  }
}

}  // namespace vitrim::cpu
