// Bindings of token gather/scatter (cpu/gather.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(gatherTokens) {
  return wrap(info.Env(), VITRIM_CALL(gather_tokens, arg_tensor(info, 0, "x"), arg_tensor(info, 1, "idx")));
}
VITRIM_OP(scatterTokens) {
  return wrap(info.Env(),
              VITRIM_CALL(scatter_tokens, arg_tensor(info, 0, "g"), arg_tensor(info, 1, "idx"), arg_int(info, 2, "n")));
}

}  // namespace vitrim::napi
