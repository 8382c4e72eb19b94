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
// A NaN/inf in grad is not an error: it propagates into m, v and p as in PyTorch (finding and skipping
// such steps is the trainer's job, e.g. with loss scaling).
#include <cmath>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {
namespace {

struct AdamWScalars {
  float decay, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps;
};

// A separate function so the restrict qualifiers reach the vectoriser (they do not survive a lambda
// capture).
void adamw_kernel(float* __restrict P, const float* __restrict G, float* __restrict M, float* __restrict V,
                  int64_t n, const AdamWScalars k) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = G[i];
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
  check_same_shape(grad, param, "grad", "param");
  check_same_shape(m, param, "m", "param");
  check_same_shape(v, param, "v", "param");
  VITRIM_CHECK(std::isfinite(lr) && lr >= 0.0, Argument, "adamw_step: lr must be finite and >= 0, got ", lr);
  VITRIM_CHECK(std::isfinite(eps) && eps >= 0.0, Argument, "adamw_step: eps must be finite and >= 0, got ", eps);
  VITRIM_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0, Argument,
               "adamw_step: weight_decay must be finite and >= 0, got ", weight_decay);
  VITRIM_CHECK(beta1 >= 0.0 && beta1 < 1.0, Argument, "adamw_step: beta1 must be in [0, 1), got ", beta1);
  VITRIM_CHECK(beta2 >= 0.0 && beta2 < 1.0, Argument, "adamw_step: beta2 must be in [0, 1), got ", beta2);
  VITRIM_CHECK(step >= 1, Argument, "adamw_step: step must be >= 1 (the count including this step), got ", step);
  VITRIM_CHECK(param.storage != m.storage && param.storage != v.storage && m.storage != v.storage, Argument,
               "adamw_step: param, m and v must be distinct tensors (they share storage)");
  VITRIM_CHECK(grad.storage != param.storage && grad.storage != m.storage && grad.storage != v.storage, Argument,
               "adamw_step: grad must not share storage with param, m or v");

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
  const MarkWritten wp(param), wm(m), wv(v);
  float* P = param.f32();
  const float* G = grad.f32();
  float* M = m.f32();
  float* V = v.f32();
  parallel_for(param.numel(), 1 << 15,
               [&](int64_t b, int64_t e) { adamw_kernel(P + b, G + b, M + b, V + b, e - b, k); });
}

}  // namespace vitrim::cpu
