// Module entry: defines the NativeTensor class and exports every function registered with VITRIM_OP.
#include <napi.h>

#include "common.h"
#include "tensor_wrap.h"

namespace vitrim::napi {

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeTensor", JsTensor::define(env));
  for (const OpEntry& e : op_registry()) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return exports;
}

}  // namespace vitrim::napi

static Napi::Object vitrim_init(Napi::Env env, Napi::Object exports) { return vitrim::napi::init(env, exports); }
NODE_API_MODULE(vitrim, vitrim_init)
