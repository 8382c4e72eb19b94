#include "common.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>

#include "tensor_wrap.h"

namespace vitrim::napi {

std::vector<OpEntry>& op_registry() {
  static std::vector<OpEntry> r;
  return r;
}

EnvData& env_data(Napi::Env env) {
  EnvData* d = env.GetInstanceData<EnvData>();
  if (d == nullptr) {
    d = new EnvData();
    env.SetInstanceData<EnvData>(d);  // deleted with the env
  }
  return *d;
}

Napi::Error js_error(Napi::Env env, const std::exception& e) {
  const char* code = "ERR_VITRIM_INTERNAL";
  if (auto* ve = dynamic_cast<const vitrim::Error*>(&e)) code = error_code(ve->kind());
  else if (dynamic_cast<const std::bad_alloc*>(&e)) code = "ERR_VITRIM_MEMORY";
  // made by the env's error factory (lib/errors.ts's typed classes) once native.setErrorFactory set
  // it; until then, and if it fails, a plain Error carrying the code
  if (const EnvData* d = env.GetInstanceData<EnvData>(); d != nullptr && !d->error_factory.IsEmpty()) {
    napi_value args[2] = {Napi::String::New(env, code), Napi::String::New(env, e.what())};
    napi_value made = nullptr;
    if (napi_call_function(env, env.Undefined(), d->error_factory.Value(), 2, args, &made) == napi_ok && made != nullptr &&
        Napi::Value(env, made).IsObject())
      return Napi::Error(env, made);
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
  }
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void throw_js(Napi::Env env, const std::exception& e) { js_error(env, e).ThrowAsJavaScriptException(); }

// Host copies are kept for int32 data on a device up to this many values (index lists and
// cu_seqlens of packed inference are a few thousand).
constexpr size_t kHostCopyMax = 1 << 16;

void record_int_range(const Tensor& t, const int32_t* host, size_t n) {
  if (t.dtype != DType::I32 || !t.storage) return;
  int32_t lo = INT32_MAX, hi = INT32_MIN;  // empty: lo > hi, inside every range
  const bool all = (int64_t)n == t.numel();  // (else a caller's bug: then only the bounds are kept)
  bool increasing = all;
  for (size_t i = 0; i < n; ++i) {
    lo = std::min(lo, host[i]);
    hi = std::max(hi, host[i]);
    if (i && host[i] <= host[i - 1]) increasing = false;
  }
  std::shared_ptr<const std::vector<int32_t>> copy;
  if (all && t.device() != Device::CPU && n <= kHostCopyMax)
    copy = std::make_shared<const std::vector<int32_t>>(host, host + n);
  t.storage->set_int_range(lo, hi, increasing, std::move(copy));
}

void record_int_bounds(const Tensor& t, int32_t lo, int32_t hi) {
  if (t.dtype == DType::I32 && t.storage) t.storage->set_int_range(lo, hi);  // order and values unknown
}

void carry_int_range(const Tensor& from, const Tensor& to) {
  int32_t lo, hi;
  if (to.dtype == DType::I32 && from.dtype == DType::I32 && from.storage && to.storage && from.storage->int_range(lo, hi))
    to.storage->set_int_range(lo, hi, from.storage->int_increasing(), from.storage->int_host());
}

void record_unit_range(const Tensor& t) {
  if (t.storage && t.dtype != DType::I32) t.storage->set_unit_range();
}
void carry_unit_range(const Tensor& from, const Tensor& to) {
  if (from.dtype != DType::I32 && from.storage && from.storage->unit_range()) record_unit_range(to);
}
void carry_unit_range_all(const std::vector<Tensor>& from, const Tensor& to) {
  for (const Tensor& t : from)
    if (t.dtype == DType::I32 || !t.storage || !t.storage->unit_range()) return;
  record_unit_range(to);
}

void sync_external_memory(Napi::Env env) {
  static std::atomic<int64_t> reported{0};
  int64_t now = memory_stats(Device::CPU).bytes_in_use;
  int64_t delta = now - reported.exchange(now);
  if (delta != 0) {
    int64_t unused;
    napi_adjust_external_memory(env, delta, &unused);
  }
}

static void arg_fail(const char* what, const char* expected) {
  fail(ErrorKind::Argument, what, " must be ", expected);
}

std::vector<TensorArg>& call_tensors() {
  static thread_local std::vector<TensorArg> v;
  return v;
}

const Tensor& arg_tensor(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!JsTensor::is(v)) arg_fail(what, "a tensor");
  JsTensor* w = JsTensor::Unwrap(v.As<Napi::Object>());
  VITRIM_CHECK(w->t.has_value(), Disposed, what, " was disposed");
  call_tensors().push_back({&*w->t, what});
  return *w->t;
}

std::optional<Tensor> arg_opt_tensor(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (v.IsNull() || v.IsUndefined()) return std::nullopt;
  return arg_tensor(info, i, what);
}

std::vector<Tensor> arg_tensor_list(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsArray()) arg_fail(what, "an array of tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<Tensor> out;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    if (!JsTensor::is(e)) arg_fail(what, "an array of tensors");
    JsTensor* w = JsTensor::Unwrap(e.As<Napi::Object>());
    VITRIM_CHECK(w->t.has_value(), Disposed, what, "[", k, "] was disposed");
    out.push_back(*w->t);
    call_tensors().push_back({&*w->t, what});
  }
  return out;
}

double arg_number(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) arg_fail(what, "a number");
  double d = v.As<Napi::Number>().DoubleValue();
  VITRIM_CHECK(!std::isnan(d), Argument, what, " must not be NaN");
  return d;
}

int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* what) {
  double d = arg_number(info, i, what);
  VITRIM_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0, Argument, what,
               " must be an integer, got ", d);
  return (int64_t)d;
}

uint64_t arg_u64(const Napi::CallbackInfo& info, size_t i, const char* what) {
  int64_t v = arg_int(info, i, what);
  VITRIM_CHECK(v >= 0, Argument, what, " must be a non-negative integer, got ", v);
  return (uint64_t)v;
}

bool arg_bool(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) arg_fail(what, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsString()) arg_fail(what, "a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> arg_int_list(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsArray()) arg_fail(what, "an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  VITRIM_CHECK(a.Length() <= 64, Argument, what, " has too many entries (", a.Length(), ")");
  std::vector<int64_t> out;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) arg_fail(what, "an array of integers");
    double d = e.As<Napi::Number>().DoubleValue();
    VITRIM_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0, Argument, what,
                 " must contain integers, got ", d);
    out.push_back((int64_t)d);
  }
  return out;
}

Shape arg_shape(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Shape s = arg_int_list(info, i, what);
  for (int64_t d : s) VITRIM_CHECK(d >= 0, Shape, what, " has a negative dimension: ", shape_str(s));
  shape_numel(s);  // bounds check
  return s;
}

DType arg_dtype(const Napi::CallbackInfo& info, size_t i, const char* what) {
  std::string s = arg_string(info, i, what);
  if (s == "float32") return DType::F32;
  if (s == "bfloat16") return DType::BF16;
  if (s == "int32") return DType::I32;
  fail(ErrorKind::DType, what, " must be 'float32', 'bfloat16' or 'int32', got '", s, "'");
}

// Handles wrapped while a tracking scope is open (trackBegin / trackEnd), so that trackEnd can free
// what a failed composition of native calls made (a backward node that threw midway, say) at once
// rather than leave it to the GC, which does not see device memory. Plain pointers: a wrapper the GC
// finalises inside the scope clears its own slot (~JsTensor), so no reference per handle is needed.
// Per thread: an env's calls and finalisers run on its own.
static thread_local std::vector<JsTensor*> tracked;
static thread_local std::vector<size_t> track_marks;

Napi::Value wrap(Napi::Env env, const Tensor& t) {
  Napi::Object o = env_data(env).tensor_ctor.New({});
  JsTensor* w = JsTensor::Unwrap(o);
  w->t = t;
  if (!track_marks.empty()) {
    w->track_slot = tracked.size();
    tracked.push_back(w);
  }
  return o;
}

void untrack(JsTensor* w) {
  if (w->track_slot < tracked.size() && tracked[w->track_slot] == w) tracked[w->track_slot] = nullptr;
  w->track_slot = JsTensor::kUntracked;
}

size_t track_begin() {
  track_marks.push_back(tracked.size());
  return track_marks.size();
}

void track_end(size_t depth, bool free_all) {
  VITRIM_CHECK(depth >= 1 && depth == track_marks.size(), Argument, "trackEnd: scope ", depth,
               " is not the innermost open one (", track_marks.size(), " open)");
  const size_t mark = track_marks.back();
  track_marks.pop_back();
  for (size_t i = mark; i < tracked.size(); ++i) {
    if (JsTensor* w = tracked[i]) {
      if (free_all) w->t.reset();
      w->track_slot = JsTensor::kUntracked;
    }
  }
  tracked.resize(mark);
}

Napi::Value wrap_opt(Napi::Env env, const std::optional<Tensor>& t) {
  return t ? wrap(env, *t) : env.Null();
}

Napi::Value wrap_list(Napi::Env env, std::initializer_list<Napi::Value> vals) {
  Napi::Array a = Napi::Array::New(env, vals.size());
  uint32_t k = 0;
  for (auto& v : vals) a.Set(k++, v);
  return a;
}

}  // namespace vitrim::napi
