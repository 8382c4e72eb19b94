// Bindings for LayerNorm over the last axis (native/cpu/layernorm.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// layernormForward(x, w | null, b | null, eps, outDtype?) -> [y, mean, rstd]
VITRIM_OP(layernormForward) {
  const Tensor& x = arg_tensor(info, 0, "x");
  std::optional<Tensor> w = arg_opt_tensor(info, 1, "weight");
  std::optional<Tensor> b = arg_opt_tensor(info, 2, "bias");
  double eps = arg_number(info, 3, "eps");
  std::optional<DType> out;
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull()) out = arg_dtype(info, 4, "outDtype");
  auto [y, mean, rstd] = VITRIM_CALL(layernorm_forward, x, w, b, eps, out);
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, y), wrap(env, mean), wrap(env, rstd)});
}

// layernormBackward(gy, x, w | null, mean, rstd) -> [gx, gw | null, gb | null]
VITRIM_OP(layernormBackward) {
  const Tensor& gy = arg_tensor(info, 0, "gy");
  const Tensor& x = arg_tensor(info, 1, "x");
  std::optional<Tensor> w = arg_opt_tensor(info, 2, "weight");
  const Tensor& mean = arg_tensor(info, 3, "mean");
  const Tensor& rstd = arg_tensor(info, 4, "rstd");
  auto [gx, gw, gb] = VITRIM_CALL(layernorm_backward, gy, x, w, mean, rstd);
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, gx), wrap_opt(env, gw), wrap_opt(env, gb)});
}

}  // namespace vitrim::napi
