// Bindings for softmax / log-softmax over the last axis (native/cpu/softmax.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(softmaxForward) {
  const Tensor& x = arg_tensor(info, 0, "x");
  bool log = arg_bool(info, 1, "log");
  return wrap(info.Env(), VITRIM_CALL(softmax_forward, x, log));
}

VITRIM_OP(softmaxBackward) {
  const Tensor& y = arg_tensor(info, 0, "y");
  const Tensor& gy = arg_tensor(info, 1, "gy");
  bool log = arg_bool(info, 2, "log");
  return wrap(info.Env(), VITRIM_CALL(softmax_backward, y, gy, log));
}

}  // namespace vitrim::napi
