// Binding for the fused AdamW step (cpu/optim.cpp). Updates param, m and v in place; returns undefined.
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// adamwStep(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step)
VITRIM_OP(adamwStep) {
  // Copies of the handles share storage with the JS tensors, so the in-place update is visible there.
  Tensor param = arg_tensor(info, 0, "param");
  const Tensor& grad = arg_tensor(info, 1, "grad");
  Tensor m = arg_tensor(info, 2, "m");
  Tensor v = arg_tensor(info, 3, "v");
  VITRIM_CALL(adamw_step, param, grad, m, v, arg_number(info, 4, "lr"), arg_number(info, 5, "beta1"),
                  arg_number(info, 6, "beta2"), arg_number(info, 7, "eps"), arg_number(info, 8, "weightDecay"),
                  arg_int(info, 9, "step"));
  return info.Env().Undefined();
}

// adamwStepMulti(params[], grads[], m[], v[], lr, beta1, beta2, eps, weightDecay, step, gradScale?)
VITRIM_OP(adamwStepMulti) {
  std::vector<Tensor> params = arg_tensor_list(info, 0, "params");
  const std::vector<Tensor> grads = arg_tensor_list(info, 1, "grads");
  std::vector<Tensor> ms = arg_tensor_list(info, 2, "m");
  std::vector<Tensor> vs = arg_tensor_list(info, 3, "v");
  VITRIM_CALL(adamw_step_multi, params, grads, ms, vs, arg_number(info, 4, "lr"), arg_number(info, 5, "beta1"),
              arg_number(info, 6, "beta2"), arg_number(info, 7, "eps"), arg_number(info, 8, "weightDecay"),
              arg_int(info, 9, "step"), arg_opt_tensor(info, 10, "gradScale"));
  return info.Env().Undefined();
}

}  // namespace vitrim::napi
