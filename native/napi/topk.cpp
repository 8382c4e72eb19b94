// Binding for top-k along the last axis (cpu/topk.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

// topk(x, k, largest) -> [values, indices (int32)]
VITRIM_OP(topk) {
  auto [vals, idx] = VITRIM_CALL(topk, arg_tensor(info, 0, "x"), arg_int(info, 1, "k"), arg_bool(info, 2, "largest"));
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, vals), wrap(env, idx)});
}

}  // namespace vitrim::napi
