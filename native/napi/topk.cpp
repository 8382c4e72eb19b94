// Binding for top-k along the last axis (cpu/topk.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// topk(x, k, largest) -> [values, indices (int32)]
VITRIM_OP(topk) {
  const Tensor& x = arg_tensor(info, 0, "x");
  auto [vals, idx] = VITRIM_CALL(topk, x, arg_int(info, 1, "k"), arg_bool(info, 2, "largest"));
  // Indices into the last axis: in [0, L) whatever the data (also when replayed from a graph).
  if (x.dim() >= 1 && x.size(-1) > 0) {
    record_int_bounds(idx, 0, (int32_t)(x.size(-1) - 1));
  }
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, vals), wrap(env, idx)});
}

}  // namespace vitrim::napi
