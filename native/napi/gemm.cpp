#include "common.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(matmul) {
  return wrap(info.Env(), cpu::matmul(arg_tensor(info, 0, "a"), arg_tensor(info, 1, "b"), arg_bool(info, 2, "transA"),
                                      arg_bool(info, 3, "transB")));
}
VITRIM_OP(linearForward) {
  return wrap(info.Env(), cpu::linear_forward(arg_tensor(info, 0, "x"), arg_tensor(info, 1, "weight"),
                                              arg_opt_tensor(info, 2, "bias")));
}
VITRIM_OP(linearBackward) {
  auto [gx, gw, gb] = cpu::linear_backward(arg_tensor(info, 0, "gy"), arg_tensor(info, 1, "x"),
                                           arg_tensor(info, 2, "weight"), arg_bool(info, 3, "needBias"));
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, gx), wrap(env, gw), wrap_opt(env, gb)});
}
VITRIM_OP(gemmIsa) { return Napi::String::New(info.Env(), cpu::gemm_isa()); }

}  // namespace vitrim::napi
