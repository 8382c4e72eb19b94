// Shared helpers for the Node-API binding. Each native/napi/<family>.cpp defines its JS functions with
// VITRIM_OP(jsName) { ... } — the macro registers the function at load time (no central list to edit)
// and wraps the body so that vitrim::Error becomes a JS Error with a `code`, and any other C++
// exception becomes ERR_VITRIM_INTERNAL. Argument readers throw ErrorKind::Argument on wrong JS types.
#pragma once
#include <napi.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vitrim/tensor.h"

namespace vitrim::napi {

class JsTensor;

// What each env (the main thread, each worker thread) keeps of its own: the NativeTensor class that
// wrap() instantiates and is() checks against, and the function errors are made with (lib/errors.ts).
// An env's references are valid in that env only: a process-wide copy would hand the main thread a
// class from a worker's env (and break it once that worker ended).
struct EnvData {
  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference error_factory;
};
EnvData& env_data(Napi::Env env);

using OpFn = Napi::Value (*)(const Napi::CallbackInfo&);
struct OpEntry {
  const char* name;
  OpFn fn;
};
std::vector<OpEntry>& op_registry();
struct OpRegistrar {
  OpRegistrar(const char* name, OpFn fn) { op_registry().push_back({name, fn}); }
};

// The JS error for a C++ exception: message, and `code` ERR_VITRIM_<kind> (a vitrim::Error's kind,
// MEMORY for bad_alloc, INTERNAL otherwise). throw_js makes it the pending JS exception (called from
// the catch blocks); promises reject with js_error. Made by the env's error factory (EnvData;
// lib/errors.ts's typed classes) once native.setErrorFactory set one.
Napi::Error js_error(Napi::Env env, const std::exception& e);
void throw_js(Napi::Env env, const std::exception& e);
// Report the change in native bytes since the last call to V8 (napi_adjust_external_memory).
void sync_external_memory(Napi::Env env);

// Int32 value bounds for skipping device-side index checks (Storage::int_range in tensor.h): record
// the bounds of n host values just stored in t, or carry a source's known bounds over to an exact
// copy of it. No-ops for other dtypes.
void record_int_range(const Tensor& t, const int32_t* host, size_t n);  // n = t.numel() values of t
// Known bounds only (full's value, topk's [0, L)): nothing about order or the values themselves.
void record_int_bounds(const Tensor& t, int32_t lo, int32_t hi);
void carry_int_range(const Tensor& from, const Tensor& to);
// Records that every value of float tensor t lies in [0, 1] (Storage::set_unit_range); carry_unit_range
// passes it on to a float copy / cast of a tensor that has it; carry_unit_range_all to a concat
// of tensors that all have it.
void record_unit_range(const Tensor& t);
void carry_unit_range(const Tensor& from, const Tensor& to);
void carry_unit_range_all(const std::vector<Tensor>& from, const Tensor& to);

// The tensors the current binding call has read (dispatch.h checks they share a device).
struct TensorArg {
  const Tensor* t;
  const char* what;
};
std::vector<TensorArg>& call_tensors();

#define VITRIM_OP(jsname)                                                                   \
  static Napi::Value vitrim_op_impl_##jsname(const Napi::CallbackInfo& info);               \
  static Napi::Value vitrim_op_##jsname(const Napi::CallbackInfo& info) {                   \
    ::vitrim::napi::call_tensors().clear();                                                 \
    try {                                                                                   \
      Napi::Value r = vitrim_op_impl_##jsname(info);                                        \
      ::vitrim::napi::sync_external_memory(info.Env());                                     \
      return r;                                                                             \
    } catch (const Napi::Error& e) {                                                        \
      throw;                                                                                \
    } catch (const std::exception& e) {                                                     \
      ::vitrim::napi::throw_js(info.Env(), e);                                              \
      return info.Env().Undefined();                                                        \
    }                                                                                       \
  }                                                                                         \
  static ::vitrim::napi::OpRegistrar vitrim_op_reg_##jsname(#jsname, &vitrim_op_##jsname);  \
  static Napi::Value vitrim_op_impl_##jsname(const Napi::CallbackInfo& info)

// ---- argument readers (i = position; `what` names the argument in messages) ----
const Tensor& arg_tensor(const Napi::CallbackInfo& info, size_t i, const char* what);
std::optional<Tensor> arg_opt_tensor(const Napi::CallbackInfo& info, size_t i, const char* what);  // null/undefined -> none
std::vector<Tensor> arg_tensor_list(const Napi::CallbackInfo& info, size_t i, const char* what);
double arg_number(const Napi::CallbackInfo& info, size_t i, const char* what);
int64_t arg_int(const Napi::CallbackInfo& info, size_t i, const char* what);  // must be an integer
uint64_t arg_u64(const Napi::CallbackInfo& info, size_t i, const char* what);  // integer in [0, 2^53]
bool arg_bool(const Napi::CallbackInfo& info, size_t i, const char* what);
std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* what);
Shape arg_shape(const Napi::CallbackInfo& info, size_t i, const char* what);
std::vector<int64_t> arg_int_list(const Napi::CallbackInfo& info, size_t i, const char* what);
DType arg_dtype(const Napi::CallbackInfo& info, size_t i, const char* what);

// ---- results ----
Napi::Value wrap(Napi::Env env, const Tensor& t);
// Tracking scopes over wrap(): track_begin() opens one and returns its depth; track_end(depth, free_all)
// closes the innermost (depth must match), freeing every handle wrapped inside it when free_all.
size_t track_begin();
void track_end(size_t depth, bool free_all);
// A wrapper being finalised leaves its tracking slot (called by ~JsTensor).
void untrack(JsTensor* w);
Napi::Value wrap_opt(Napi::Env env, const std::optional<Tensor>& t);  // none -> null
Napi::Value wrap_list(Napi::Env env, std::initializer_list<Napi::Value> vals);

}  // namespace vitrim::napi
