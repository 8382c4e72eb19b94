// Core bindings: tensor creation, cast/copy, memory accounting, build and machine info.
#include <cstring>

#include "common.h"
#include "tensor_wrap.h"
#include "vitrim/cpuinfo.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::napi {

// fromArray(typedArray, shape, dtype): copies the data into a new cpu tensor.
VITRIM_OP(fromArray) {
  Napi::Value v = info[0];
  VITRIM_CHECK(v.IsTypedArray(), Argument, "data must be a Float32Array, Int32Array or Uint16Array (bfloat16 bits)");
  Shape shape = arg_shape(info, 1, "shape");
  DType dt = arg_dtype(info, 2, "dtype");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  napi_typedarray_type want = dt == DType::F32 ? napi_float32_array : dt == DType::I32 ? napi_int32_array : napi_uint16_array;
  VITRIM_CHECK(ta.TypedArrayType() == want, DType, "a ", dtype_name(dt),
               " tensor is made from a matching typed array (Float32Array / Int32Array / Uint16Array)");
  int64_t n = shape_numel(shape);
  VITRIM_CHECK((int64_t)ta.ElementLength() == n, Shape, "shape ", shape_str(shape), " needs ", n,
               " elements, the data has ", ta.ElementLength());
  Tensor t = empty(shape, dt);
  if (t.nbytes()) std::memcpy(t.raw(), static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), t.nbytes());
  return wrap(info.Env(), t);
}

VITRIM_OP(full) {
  Shape shape = arg_shape(info, 0, "shape");
  double value = arg_number(info, 1, "value");
  return wrap(info.Env(), cpu::full(shape, value, arg_dtype(info, 2, "dtype")));
}

VITRIM_OP(cast) { return wrap(info.Env(), cpu::cast(arg_tensor(info, 0, "x"), arg_dtype(info, 1, "dtype"))); }
VITRIM_OP(copy) { return wrap(info.Env(), cpu::copy(arg_tensor(info, 0, "x"))); }

VITRIM_OP(memory) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  MemoryStats s = memory_stats(Device::CPU);
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", "cpu");
  o.Set("liveTensors", (double)s.live_tensors);
  o.Set("bytesInUse", (double)s.bytes_in_use);
  o.Set("bytesCached", (double)s.bytes_cached);
  out.Set(0u, o);
  return out;
}

VITRIM_OP(emptyCache) {
  cpu::clear_linear_cache();
  empty_cache();
  return info.Env().Undefined();
}

VITRIM_OP(linearCacheStats) {
  auto [entries, bytes] = cpu::linear_cache_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("entries", (double)entries);
  o.Set("bytes", (double)bytes);
  return o;
}

VITRIM_OP(info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", num_threads());
  o.Set("isa", cpu_isa());
  o.Set("napiVersion", NAPI_VERSION);
#ifdef VITRIM_HAVE_CUDA_SOURCES
  o.Set("cudaCompiled", true);
#else
  o.Set("cudaCompiled", false);
#endif
  o.Set("compiler", __VERSION__);
  return o;
}

VITRIM_OP(setNumThreads) {
  int64_t n = arg_int(info, 0, "threads");
  VITRIM_CHECK(n >= 1 && n <= 256, Argument, "threads must be in [1, 256], got ", n);
  set_num_threads((int)n);
  return info.Env().Undefined();
}

}  // namespace vitrim::napi
