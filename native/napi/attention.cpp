// Bindings for fused attention forward/backward (native/cpu/attention.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// attentionForward(qkv, numHeads, scale, keep | null, headGate | null, eps) -> [out, stats]
VITRIM_OP(attentionForward) {
  const Tensor& qkv = arg_tensor(info, 0, "qkv");
  int64_t heads = arg_int(info, 1, "numHeads");
  double scale = arg_number(info, 2, "scale");
  std::optional<Tensor> keep = arg_opt_tensor(info, 3, "keep");
  std::optional<Tensor> gate = arg_opt_tensor(info, 4, "headGate");
  double eps = arg_number(info, 5, "eps");
  auto [out, stats] = VITRIM_CALL(attention_forward, qkv, heads, scale, keep, gate, eps);
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, out), wrap(env, stats)});
}

// attentionBackward(gout, qkv, numHeads, scale, keep | null, headGate | null, eps, out, stats)
//   -> [gqkv, gkeep | null, gheadGate | null]
VITRIM_OP(attentionBackward) {
  const Tensor& gout = arg_tensor(info, 0, "gout");
  const Tensor& qkv = arg_tensor(info, 1, "qkv");
  int64_t heads = arg_int(info, 2, "numHeads");
  double scale = arg_number(info, 3, "scale");
  std::optional<Tensor> keep = arg_opt_tensor(info, 4, "keep");
  std::optional<Tensor> gate = arg_opt_tensor(info, 5, "headGate");
  double eps = arg_number(info, 6, "eps");
  const Tensor& out = arg_tensor(info, 7, "out");
  const Tensor& stats = arg_tensor(info, 8, "stats");
  auto [gqkv, gkeep, ggate] = VITRIM_CALL(attention_backward, gout, qkv, heads, scale, keep, gate, eps, out, stats);
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, gqkv), wrap_opt(env, gkeep), wrap_opt(env, ggate)});
}

}  // namespace vitrim::napi
