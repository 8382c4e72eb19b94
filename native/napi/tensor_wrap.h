// The JS-visible tensor handle: a Napi::ObjectWrap owning one vitrim::Tensor (shared storage).
// free() drops the reference at once; the GC finaliser drops it otherwise (the backstop).
#pragma once
#include <napi.h>

#include <cstdint>
#include <optional>

#include "vitrim/tensor.h"

namespace vitrim::napi {

class JsTensor : public Napi::ObjectWrap<JsTensor> {
 public:
  static Napi::Function define(Napi::Env env);
  static bool is(Napi::Value v);
  explicit JsTensor(const Napi::CallbackInfo& info);
  ~JsTensor() override;

  std::optional<Tensor> t;
  // Its index in the open tracking scopes' list (common.cpp's wrap / track_end), or kUntracked.
  static constexpr size_t kUntracked = SIZE_MAX;
  size_t track_slot = kUntracked;

 private:
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value nbytes(const Napi::CallbackInfo& info);
  Napi::Value freed(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value write(const Napi::CallbackInfo& info);
  Napi::Value free(const Napi::CallbackInfo& info);
  Napi::Value reshape(const Napi::CallbackInfo& info);
  Napi::Value same_storage(const Napi::CallbackInfo& info);
};

}  // namespace vitrim::napi
