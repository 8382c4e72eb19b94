// Waiting for a device: synchronize (blocks the calling thread) and synchronizeAsync (a Promise; the
// wait runs on a libuv worker thread, so the event loop keeps running while the GPU works).
//
// synchronizeAsync records a fence on the JS thread (the work queued so far), waits for it on the
// worker (Backend::fence_wait touches nothing else, so it is safe off the JS thread), then, back on
// the JS thread, releases the fence and runs the deferred device-side checks (setDeviceChecks
// 'deferred'): their error, or a device error from the wait, rejects the promise with the same
// typed error synchronize would throw. Work queued after the call is not waited for. Reading the
// deferred checks' flags copies them to the host, which briefly synchronises the stream, so with
// checks pending the promise settles after a short blocking read on the JS thread.
#include <optional>

#include "common.h"
#include "dispatch.h"
#include "vitrim/backend.h"

namespace vitrim::napi {

namespace {

Device device_arg(const Napi::CallbackInfo& info) {
  return info.Length() > 0 && !info[0].IsUndefined() ? arg_device(info, 0, "device") : Device::CUDA;
}

class FenceWorker : public Napi::AsyncWorker {
 public:
  FenceWorker(Napi::Env env, const Backend* b, void* fence)
      : Napi::AsyncWorker(env, "vitrim.synchronizeAsync"), b_(b), fence_(fence), done_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise promise() const { return done_.Promise(); }

  void Execute() override {
    try {
      b_->fence_wait(fence_);
    } catch (const vitrim::Error& e) {
      error_.emplace(e);
    } catch (const std::exception& e) {
      error_.emplace(ErrorKind::Internal, e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    b_->fence_release(fence_);
    if (error_) {
      done_.Reject(js_error(env, *error_).Value());
      return;
    }
    try {
      b_->check_deferred();
    } catch (const std::exception& e) {
      done_.Reject(js_error(env, e).Value());
      return;
    }
    done_.Resolve(env.Undefined());
  }

 private:
  const Backend* b_;
  void* fence_;
  Napi::Promise::Deferred done_;
  std::optional<vitrim::Error> error_;
};

}  // namespace

// synchronize(device?): waits for queued work on the device (cuda); a no-op on the cpu.
VITRIM_OP(synchronize) {
  if (const Backend* b = loaded_backend(device_arg(info))) b->synchronize();
  return info.Env().Undefined();
}

// synchronizeAsync(device?) -> Promise<void>: synchronize without blocking the event loop. Resolves at
// once on the cpu or before cuda has loaded. Throws (synchronously) during a graph capture.
VITRIM_OP(synchronizeAsync) {
  Napi::Env env = info.Env();
  const Backend* b = loaded_backend(device_arg(info));
  if (!b || !b->fence_record) {
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  void* fence = b->fence_record();
  FenceWorker* w;
  try {
    w = new FenceWorker(env, b, fence);
  } catch (...) {
    b->fence_release(fence);
    throw;
  }
  Napi::Promise p = w->promise();
  w->Queue();  // the worker deletes itself after OnOK
  return p;
}

}  // namespace vitrim::napi
