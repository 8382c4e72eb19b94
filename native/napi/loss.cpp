// Bindings for the fused softmax cross-entropy (cpu/loss.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// crossEntropyForward(logits, labels, smoothing) -> [loss (scalar), lse [R]]
VITRIM_OP(crossEntropyForward) {
  auto [loss, lse] = VITRIM_CALL(cross_entropy_forward, arg_tensor(info, 0, "logits"), arg_tensor(info, 1, "labels"),
                                                arg_number(info, 2, "smoothing"));
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, loss), wrap(env, lse)});
}

// crossEntropyBackward(logits, labels, smoothing, lse, gloss) -> dL/dlogits
VITRIM_OP(crossEntropyBackward) {
  return wrap(info.Env(), VITRIM_CALL(cross_entropy_backward, arg_tensor(info, 0, "logits"), arg_tensor(info, 1, "labels"),
                                                      arg_number(info, 2, "smoothing"), arg_tensor(info, 3, "lse"),
                                                      arg_number(info, 4, "gloss")));
}

}  // namespace vitrim::napi
