#include "common.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(gatherRows) { return wrap(info.Env(), cpu::gather_rows(arg_tensor(info, 0, "x"), arg_tensor(info, 1, "rows"))); }
VITRIM_OP(indexAddRows) {
  Tensor dst = arg_tensor(info, 0, "dst");
  cpu::index_add_rows(dst, arg_tensor(info, 1, "rows"), arg_tensor(info, 2, "src"));
  return info.Env().Undefined();
}

}  // namespace vitrim::napi
