// Op dispatch by device. arg_tensor / arg_opt_tensor / arg_tensor_list record every tensor a binding
// reads (with its argument name) in a per-call list that VITRIM_OP clears on entry; VITRIM_CALL(op,
// args...) then checks that all of them live on one device, picks that device's backend table
// (backend.h) and calls its `op`. Because the arguments of VITRIM_CALL are evaluated before the
// dispatch, bindings may read their tensors inline. Ops without tensor inputs (full, random) name the
// device: VITRIM_CALL_ON(device, op, args...).
#pragma once
#include <utility>

#include "common.h"
#include "vitrim/backend.h"

namespace vitrim::napi {

// The backend of the tensors read so far in this call; ErrorKind::Device if they are on different
// devices (the message names two of them). No tensors: the CPU.
const Backend& current_backend();

template <class Fn, class... A>
auto dispatch_with(const Backend& b, Fn Backend::*op, const char* name, A&&... a) {
  Fn f = b.*op;
  VITRIM_CHECK(f != nullptr, Device, name, " is not implemented on ", device_name(b.device));
  return f(std::forward<A>(a)...);
}
// current_backend() runs in the body, i.e. after every argument (and so every arg_tensor) was read.
template <class Fn, class... A>
auto dispatch(Fn Backend::*op, const char* name, A&&... a) {
  return dispatch_with(current_backend(), op, name, std::forward<A>(a)...);
}

#define VITRIM_CALL(op, ...) ::vitrim::napi::dispatch(&::vitrim::Backend::op, #op, __VA_ARGS__)
#define VITRIM_CALL_ON(device, op, ...) \
  ::vitrim::napi::dispatch_with(::vitrim::backend(device), &::vitrim::Backend::op, #op, __VA_ARGS__)

// Device from a JS string argument ('cpu' | 'cuda').
Device arg_device(const Napi::CallbackInfo& info, size_t i, const char* what);

}  // namespace vitrim::napi
