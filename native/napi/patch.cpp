// Bindings of patchify/unpatchify (cpu/patch.cpp).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(patchify) { return wrap(info.Env(), VITRIM_CALL(patchify, arg_tensor(info, 0, "x"), arg_int(info, 1, "p"))); }
VITRIM_OP(unpatchify) {
  return wrap(info.Env(), VITRIM_CALL(unpatchify, arg_tensor(info, 0, "g"), arg_shape(info, 1, "imageShape"),
                                          arg_int(info, 2, "p")));
}

}  // namespace vitrim::napi
