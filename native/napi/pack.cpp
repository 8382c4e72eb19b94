#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(gatherRows) { return wrap(info.Env(), VITRIM_CALL(gather_rows, arg_tensor(info, 0, "x"), arg_tensor(info, 1, "rows"))); }
VITRIM_OP(indexAddRows) {
  Tensor dst = arg_tensor(info, 0, "dst");
  VITRIM_CALL(index_add_rows, dst, arg_tensor(info, 1, "rows"), arg_tensor(info, 2, "src"));
  return info.Env().Undefined();
}

}  // namespace vitrim::napi

namespace vitrim::napi {

VITRIM_OP(attentionVarlen) {
  return wrap(info.Env(), VITRIM_CALL(attention_varlen_forward, arg_tensor(info, 0, "qkv"), arg_tensor(info, 1, "cuSeqlens"),
                                                        arg_int(info, 2, "numHeads"), arg_number(info, 3, "scale"),
                                                        arg_opt_tensor(info, 4, "headGate")));
}

}  // namespace vitrim::napi
