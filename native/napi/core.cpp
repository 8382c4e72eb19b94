// Core bindings: tensor creation, cast/copy, memory accounting, build and machine info.
#include <cstring>

#include "common.h"
#include "dispatch.h"
#include "vitrim/backend.h"
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
  if (dt == DType::I32) record_int_range(t, static_cast<const int32_t*>(t.raw()), (size_t)n);
  return wrap(info.Env(), t);
}

VITRIM_OP(full) {
  Shape shape = arg_shape(info, 0, "shape");
  double value = arg_number(info, 1, "value");
  DType dt = arg_dtype(info, 2, "dtype");
  Device dev = info.Length() > 3 && !info[3].IsUndefined() ? arg_device(info, 3, "device") : Device::CPU;
  Tensor y = VITRIM_CALL_ON(dev, full, shape, value, dt);
  if (dt == DType::I32) {
    const int32_t v = (int32_t)value;  // full() accepted it as an int32 value
    record_int_bounds(y, v, v);
  } else if (value >= 0.0 && value <= 1.0) {  // rounding to float / bf16 keeps [0, 1]
    record_unit_range(y);
  }
  return wrap(info.Env(), y);
}

VITRIM_OP(cast) {
  const Tensor& x = arg_tensor(info, 0, "x");
  Tensor y = VITRIM_CALL(cast, x, arg_dtype(info, 1, "dtype"));
  carry_unit_range(x, y);  // float -> float rounding keeps [0, 1]; to int32 it does not apply
  return wrap(info.Env(), y);
}
VITRIM_OP(copy) {
  const Tensor& x = arg_tensor(info, 0, "x");
  Tensor y = VITRIM_CALL(copy, x);
  carry_int_range(x, y);
  carry_unit_range(x, y);
  return wrap(info.Env(), y);
}

// toDevice(x, device): a copy of x on `device` (the same handle's data when already there is NOT
// shared: the result is always a new tensor, so writes to one never show in the other).
VITRIM_OP(toDevice) {
  const Tensor& x = arg_tensor(info, 0, "x");
  Device dev = arg_device(info, 1, "device");
  check_device(x, x.device(), "x");  // disposed check
  if (x.device() == dev) {
    Tensor y = backend(dev).copy(x);
    carry_int_range(x, y);
    carry_unit_range(x, y);
    return wrap(info.Env(), y);
  }
  const Backend& to = backend(dev);
  Tensor y = to.empty(x.shape, x.dtype);
  if (x.device() == Device::CPU) {
    to.copy_from_host(y, x.raw(), x.nbytes());
    // int32 uploads: the range, whether increasing, and (small ones) a host copy, from the data itself
    if (x.dtype == DType::I32) record_int_range(y, static_cast<const int32_t*>(x.raw()), (size_t)x.numel());
    carry_unit_range(x, y);
  } else {
    // Device to device through the host: only cpu and one cuda device exist today.
    VITRIM_CHECK(dev == Device::CPU, Device, "toDevice: ", device_name(x.device()), " -> ", device_name(dev),
                 " is not supported");
    backend(x.device()).copy_to_host(y.raw(), x, x.nbytes());
    carry_int_range(x, y);
    carry_unit_range(x, y);
  }
  return wrap(info.Env(), y);
}

// backends() -> [{ device, available, detail, reasons[] }]: loads the CUDA backend on first call.
VITRIM_OP(backends) {
  Napi::Env env = info.Env();
  std::vector<BackendStatus> st = backend_status();
  Napi::Array out = Napi::Array::New(env, st.size());
  for (size_t i = 0; i < st.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", device_name(st[i].device));
    o.Set("available", st[i].available);
    o.Set("detail", st[i].detail);
    Napi::Array r = Napi::Array::New(env, st[i].reasons.size());
    for (size_t k = 0; k < st[i].reasons.size(); ++k) r.Set((uint32_t)k, st[i].reasons[k]);
    o.Set("reasons", r);
    out.Set((uint32_t)i, o);
  }
  return out;
}

// setAllowTf32(allow): TF32 tensor cores for float32 GEMMs on cuda (off by default).
VITRIM_OP(setAllowTf32) {
  bool allow = arg_bool(info, 0, "allow");
  backend(Device::CUDA).set_allow_tf32(allow);
  return info.Env().Undefined();
}

// setDeviceChecks('immediate' | 'deferred'): when device-side index/label checks of cuda ops report.
VITRIM_OP(setDeviceChecks) {
  std::string mode = arg_string(info, 0, "mode");
  VITRIM_CHECK(mode == "immediate" || mode == "deferred", Argument,
               "setDeviceChecks: mode must be 'immediate' or 'deferred', got '", mode, "'");
  backend(Device::CUDA).set_deferred_checks(mode == "deferred");
  return info.Env().Undefined();
}

VITRIM_OP(memory) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  for (Device d : {Device::CPU, Device::CUDA}) {
    if (d == Device::CUDA && !loaded_backend(d)) continue;
    MemoryStats s = memory_stats(d);
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", device_name(d));
    o.Set("liveTensors", (double)s.live_tensors);
    o.Set("bytesInUse", (double)s.bytes_in_use);
    o.Set("bytesCached", (double)s.bytes_cached);
    o.Set("hostPinnedBytes", (double)s.host_pinned_bytes);
    out.Set(k++, o);
  }
  return out;
}

VITRIM_OP(emptyCache) {
  cpu::clear_linear_cache();
  empty_cache();
  if (const Backend* b = loaded_backend(Device::CUDA)) b->empty_cache();
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

// ---- CUDA graphs (backend.h): capture a fixed-shape sequence of ops once, replay it many times ----
namespace vitrim::napi {

static const Backend& graph_backend() {
  const Backend& b = backend(Device::CUDA);
  VITRIM_CHECK(b.capture_begin != nullptr, Device, "graphs are not supported by this cuda backend");
  return b;
}

VITRIM_OP(setErrorFactory) {
  VITRIM_CHECK(info[0].IsFunction(), Argument, "setErrorFactory: factory must be a function");
  env_data(info.Env()).error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}
VITRIM_OP(allocFaults) {
  const Device dev = arg_device(info, 0, "device");
  const int64_t n = arg_int(info, 1, "n");
  const Backend& b = backend(dev);
  VITRIM_CHECK(b.alloc_faults != nullptr, Device, "allocFaults: the ", device_name(dev), " backend has no fault injection");
  return Napi::Number::New(info.Env(), (double)b.alloc_faults(n));
}
VITRIM_OP(trackBegin) { return Napi::Number::New(info.Env(), (double)track_begin()); }
VITRIM_OP(trackEnd) {
  track_end((size_t)arg_int(info, 0, "scope"), arg_bool(info, 1, "free"));
  return info.Env().Undefined();
}

VITRIM_OP(graphBegin) {
  graph_backend().capture_begin();
  return info.Env().Undefined();
}
VITRIM_OP(graphEnd) { return Napi::Number::New(info.Env(), (double)graph_backend().capture_end()); }
VITRIM_OP(graphAbort) {
  if (const Backend* b = loaded_backend(Device::CUDA); b && b->capture_abort) b->capture_abort();
  return info.Env().Undefined();
}
VITRIM_OP(graphReplay) {
  int64_t id = arg_int(info, 0, "graph");
  graph_backend().graph_replay(id);
  return info.Env().Undefined();
}
VITRIM_OP(graphStats) {
  int64_t id = arg_int(info, 0, "graph");
  int64_t nodes = 0, kernels = 0;
  graph_backend().graph_stats(id, &nodes, &kernels);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("nodes", Napi::Number::New(info.Env(), (double)nodes));
  o.Set("kernels", Napi::Number::New(info.Env(), (double)kernels));
  return o;
}
VITRIM_OP(graphDestroy) {
  int64_t id = arg_int(info, 0, "graph");
  if (const Backend* b = loaded_backend(Device::CUDA); b && b->graph_destroy) b->graph_destroy(id);
  return info.Env().Undefined();
}

}  // namespace vitrim::napi
