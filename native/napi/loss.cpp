// Bindings for the fused softmax cross-entropy (cpu/loss.cpp).
#include "common.h"
#include "dispatch.h"
#include "tensor_wrap.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// crossEntropyForward(logits, labels, smoothing) -> [loss (scalar), lse [R]]
VITRIM_OP(crossEntropyForward) {
  auto [loss, lse] = VITRIM_CALL(cross_entropy_forward, arg_tensor(info, 0, "logits"), arg_tensor(info, 1, "labels"),
                                                arg_number(info, 2, "smoothing"));
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, loss), wrap(env, lse)});
}

// crossEntropyBackward(logits, labels, smoothing, lse, gloss) -> dL/dlogits; gloss is a number or a
// one-element float32 tensor on the logits' device (read there by the kernel: no host sync).
VITRIM_OP(crossEntropyBackward) {
  const bool on_device = info.Length() > 4 && JsTensor::is(info[4]);
  return wrap(info.Env(),
              VITRIM_CALL(cross_entropy_backward, arg_tensor(info, 0, "logits"), arg_tensor(info, 1, "labels"),
                          arg_number(info, 2, "smoothing"), arg_tensor(info, 3, "lse"),
                          on_device ? 1.0 : arg_number(info, 4, "gloss"),
                          on_device ? std::optional<Tensor>(arg_tensor(info, 4, "gloss")) : std::nullopt));
}

}  // namespace vitrim::napi
