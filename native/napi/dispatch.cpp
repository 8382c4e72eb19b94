#include "dispatch.h"

namespace vitrim::napi {

const Backend& current_backend() {
  const TensorArg* first = nullptr;
  for (const TensorArg& a : call_tensors()) {
    if (!a.t->storage) continue;  // the op itself reports a disposed tensor
    if (!first) {
      first = &a;
    } else if (a.t->device() != first->t->device()) {
      fail(ErrorKind::Device, a.what, " is on ", device_name(a.t->device()), " but ", first->what, " is on ",
           device_name(first->t->device()), ": the tensors of one op must be on one device (move them with .to())");
    }
  }
  return backend(first ? first->t->device() : Device::CPU);
}

Device arg_device(const Napi::CallbackInfo& info, size_t i, const char* what) {
  std::string s = arg_string(info, i, what);
  if (s == "cpu") return Device::CPU;
  if (s == "cuda" || s == "cuda:0") return Device::CUDA;
  fail(ErrorKind::Device, what, " must be 'cpu' or 'cuda', got '", s, "'");
}

}  // namespace vitrim::napi
