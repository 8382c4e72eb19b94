#include "tensor_wrap.h"

#include <cstring>

#include "common.h"
#include "vitrim/backend.h"

namespace vitrim::napi {

Napi::Function JsTensor::define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeTensor",
                                 {
                                     InstanceAccessor<&JsTensor::shape>("shape"),
                                     InstanceAccessor<&JsTensor::dtype>("dtype"),
                                     InstanceAccessor<&JsTensor::device>("device"),
                                     InstanceAccessor<&JsTensor::nbytes>("nbytes"),
                                     InstanceAccessor<&JsTensor::freed>("freed"),
                                     InstanceMethod<&JsTensor::read>("read"),
                                     InstanceMethod<&JsTensor::write>("write"),
                                     InstanceMethod<&JsTensor::free>("free"),
                                     InstanceMethod<&JsTensor::reshape>("reshape"),
                                     InstanceMethod<&JsTensor::same_storage>("sameStorage"),
                                 });
  env_data(env).tensor_ctor = Napi::Persistent(f);
  return f;
}

bool JsTensor::is(Napi::Value v) {
  if (!v.IsObject()) return false;
  const EnvData* d = v.Env().GetInstanceData<EnvData>();
  return d != nullptr && !d->tensor_ctor.IsEmpty() && v.As<Napi::Object>().InstanceOf(d->tensor_ctor.Value());
}

JsTensor::JsTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsTensor>(info) {}
JsTensor::~JsTensor() {
  if (track_slot != kUntracked) untrack(this);
  t.reset();
}

#define WRAP_BODY(body)                        \
  try {                                        \
    body                                       \
  } catch (const Napi::Error&) {               \
    throw;                                     \
  } catch (const std::exception& e) {          \
    throw_js(info.Env(), e);                   \
    return info.Env().Undefined();             \
  }

static const Tensor& live(const std::optional<Tensor>& t) {
  VITRIM_CHECK(t.has_value(), Disposed, "tensor was disposed");
  return *t;
}

Napi::Value JsTensor::shape(const Napi::CallbackInfo& info) {
  WRAP_BODY({
    const Tensor& x = live(t);
    Napi::Array a = Napi::Array::New(info.Env(), x.shape.size());
    for (size_t i = 0; i < x.shape.size(); ++i) a.Set((uint32_t)i, Napi::Number::New(info.Env(), (double)x.shape[i]));
    return a;
  })
}
Napi::Value JsTensor::dtype(const Napi::CallbackInfo& info) {
  WRAP_BODY({ return Napi::String::New(info.Env(), dtype_name(live(t).dtype)); })
}
Napi::Value JsTensor::device(const Napi::CallbackInfo& info) {
  WRAP_BODY({ return Napi::String::New(info.Env(), device_name(live(t).device())); })
}
Napi::Value JsTensor::nbytes(const Napi::CallbackInfo& info) {
  WRAP_BODY({ return Napi::Number::New(info.Env(), (double)live(t).nbytes()); })
}
Napi::Value JsTensor::freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !t.has_value()); }

// Copies the data out into a fresh typed array (Float32Array, Int32Array, or Uint16Array for bf16).
Napi::Value JsTensor::read(const Napi::CallbackInfo& info) {
  WRAP_BODY({
    const Tensor& x = live(t);
    check_device(x, x.device(), "tensor");
    size_t n = (size_t)x.numel();
    Napi::Env env = info.Env();
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, x.nbytes());
    if (x.nbytes()) backend(x.device()).copy_to_host(buf.Data(), x, x.nbytes());
    switch (x.dtype) {
      case DType::F32: return Napi::Float32Array::New(env, n, buf, 0);
      case DType::I32: return Napi::Int32Array::New(env, n, buf, 0);
      default: return Napi::Uint16Array::New(env, n, buf, 0);
    }
  })
}

// Overwrites the tensor's data from a typed array of the matching element type and length, or from
// another tensor of the same dtype and element count on any device (shapes may differ: a reshape's
// worth). Device to device the copy is queued on the stream (no host wait; recordable in a graph).
Napi::Value JsTensor::write(const Napi::CallbackInfo& info) {
  WRAP_BODY({
    const Tensor& x = live(t);
    check_device(x, x.device(), "tensor");
    Napi::Value v = info[0];
    if (JsTensor::is(v)) {
      const Tensor& src = arg_tensor(info, 0, "write: source");
      check_device(src, src.device(), "source");
      VITRIM_CHECK(src.dtype == x.dtype, DType, "write: a ", dtype_name(x.dtype), " tensor takes a ", dtype_name(x.dtype),
                   " source, got ", dtype_name(src.dtype));
      VITRIM_CHECK(src.numel() == x.numel(), Shape, "write: expected ", x.numel(), " elements, got a source of ",
                   src.numel());
      if (!x.nbytes()) return info.Env().Undefined();
      {
        const MarkWritten written(x);
        if (src.device() == x.device()) backend(x.device()).copy_device(x, src, x.nbytes());
        else if (src.device() == Device::CPU) backend(x.device()).copy_from_host(x, src.raw(), x.nbytes());
        else backend(src.device()).copy_to_host(x.raw(), src, x.nbytes());
      }
      carry_int_range(src, x);
      carry_unit_range(src, x);
      return info.Env().Undefined();
    }
    VITRIM_CHECK(v.IsTypedArray(), Argument, "write: data must be a typed array or a tensor");
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    napi_typedarray_type want = x.dtype == DType::F32   ? napi_float32_array
                                : x.dtype == DType::I32 ? napi_int32_array
                                                        : napi_uint16_array;
    VITRIM_CHECK(ta.TypedArrayType() == want, DType, "write: a ", dtype_name(x.dtype),
                 " tensor takes a matching typed array (Float32Array / Int32Array / Uint16Array)");
    VITRIM_CHECK(ta.ElementLength() == (size_t)x.numel(), Shape, "write: expected ", x.numel(), " elements, got ",
                 ta.ElementLength());
    const uint8_t* src = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    {
      const MarkWritten written(x);
      if (x.nbytes()) backend(x.device()).copy_from_host(x, src, x.nbytes());
    }
    // After mark_written: the new values' bounds (an int32 index tensor rewritten between graph
    // replays keeps being checked on the device: captured checks never depend on them).
    if (x.dtype == DType::I32) record_int_range(x, reinterpret_cast<const int32_t*>(src), (size_t)x.numel());
    return info.Env().Undefined();
  })
}

Napi::Value JsTensor::free(const Napi::CallbackInfo& info) {
  t.reset();
  sync_external_memory(info.Env());
  return info.Env().Undefined();
}

Napi::Value JsTensor::reshape(const Napi::CallbackInfo& info) {
  WRAP_BODY({
    const Tensor& x = live(t);
    return wrap(info.Env(), x.reshape(arg_int_list(info, 0, "shape")));
  })
}

Napi::Value JsTensor::same_storage(const Napi::CallbackInfo& info) {
  WRAP_BODY({
    const Tensor& x = live(t);
    const Tensor& y = arg_tensor(info, 0, "other");
    return Napi::Boolean::New(info.Env(), x.storage == y.storage);
  })
}

}  // namespace vitrim::napi
