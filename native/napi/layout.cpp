// Bindings of the layout family (cpu/layout.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(permute) {
  return wrap(info.Env(), VITRIM_CALL(permute, arg_tensor(info, 0, "x"), arg_int_list(info, 1, "perm")));
}
VITRIM_OP(slice) {
  return wrap(info.Env(), VITRIM_CALL(slice, arg_tensor(info, 0, "x"), arg_int(info, 1, "axis"), arg_int(info, 2, "start"),
                                     arg_int(info, 3, "end")));
}
VITRIM_OP(sliceBackward) {
  return wrap(info.Env(), VITRIM_CALL(slice_backward, arg_tensor(info, 0, "gy"), arg_shape(info, 1, "shape"),
                                              arg_int(info, 2, "axis"), arg_int(info, 3, "start")));
}
VITRIM_OP(concat) {
  const std::vector<Tensor> xs = arg_tensor_list(info, 0, "xs");
  Tensor y = VITRIM_CALL(concat, xs, arg_int(info, 1, "axis"));
  carry_unit_range_all(xs, y);
  return wrap(info.Env(), y);
}

}  // namespace vitrim::napi
