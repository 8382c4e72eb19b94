// Bindings for Philox random tensors and the Gumbel samplers (cpu/sample.cpp). Seeds and offsets are
// JS integers in [0, 2^53] (arg_u64).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

static cpu::Dist arg_dist(const Napi::CallbackInfo& info, size_t i) {
  std::string s = arg_string(info, i, "dist");
  if (s == "uniform") return cpu::Dist::Uniform;
  if (s == "normal") return cpu::Dist::Normal;
  if (s == "gumbel") return cpu::Dist::Gumbel;
  if (s == "logistic") return cpu::Dist::Logistic;
  fail(ErrorKind::Argument, "dist must be 'uniform', 'normal', 'gumbel' or 'logistic', got '", s, "'");
}

// random(shape, dist, seed, offset)
VITRIM_OP(random) {
  Shape shape = arg_shape(info, 0, "shape");
  cpu::Dist dist = arg_dist(info, 1);
  uint64_t seed = arg_u64(info, 2, "seed"), offset = arg_u64(info, 3, "offset");
  Device dev = info.Length() > 4 && !info[4].IsUndefined() ? arg_device(info, 4, "device") : Device::CPU;
  return wrap(info.Env(), VITRIM_CALL_ON(dev, random, shape, dist, seed, offset));
}

// gumbelSigmoid(logits, tau, threshold, hard, noise | null, seed, offset) -> [y, ySoft]
VITRIM_OP(gumbelSigmoid) {
  const Tensor& z = arg_tensor(info, 0, "logits");
  double tau = arg_number(info, 1, "tau");
  double threshold = arg_number(info, 2, "threshold");
  bool hard = arg_bool(info, 3, "hard");
  std::optional<Tensor> noise = arg_opt_tensor(info, 4, "noise");
  uint64_t seed = arg_u64(info, 5, "seed"), offset = arg_u64(info, 6, "offset");
  auto [y, ys] = VITRIM_CALL(gumbel_sigmoid, z, tau, threshold, hard, noise, seed, offset);
  if (hard) record_unit_range(y);  // 0 or 1 (a NaN logit gives 0)
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, y), wrap(env, ys)});
}

// gumbelSigmoidBackward(ySoft, gy, tau) -> dL/dlogits
VITRIM_OP(gumbelSigmoidBackward) {
  return wrap(info.Env(), VITRIM_CALL(gumbel_sigmoid_backward, arg_tensor(info, 0, "ySoft"), arg_tensor(info, 1, "gy"),
                                                       arg_number(info, 2, "tau")));
}

// gumbelSoftmax(logits, tau, hard, noise | null, seed, offset) -> [y, ySoft]
VITRIM_OP(gumbelSoftmax) {
  const Tensor& z = arg_tensor(info, 0, "logits");
  double tau = arg_number(info, 1, "tau");
  bool hard = arg_bool(info, 2, "hard");
  std::optional<Tensor> noise = arg_opt_tensor(info, 3, "noise");
  uint64_t seed = arg_u64(info, 4, "seed"), offset = arg_u64(info, 5, "offset");
  auto [y, ys] = VITRIM_CALL(gumbel_softmax, z, tau, hard, noise, seed, offset);
  if (hard) record_unit_range(y);  // one-hot rows
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, y), wrap(env, ys)});
}

// gumbelSoftmaxBackward(ySoft, gy, tau) -> dL/dlogits
VITRIM_OP(gumbelSoftmaxBackward) {
  return wrap(info.Env(), VITRIM_CALL(gumbel_softmax_backward, arg_tensor(info, 0, "ySoft"), arg_tensor(info, 1, "gy"),
                                                       arg_number(info, 2, "tau")));
}

}  // namespace vitrim::napi
