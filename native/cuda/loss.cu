// Fused softmax cross-entropy with label smoothing on CUDA: cross_entropy_forward / _backward with
// the names, signatures, checks and maths of native/cpu/loss.cpp (see there for the formulas).
//
// dtypes: logits float32 or bfloat16 (fp32 arithmetic); labels int32 on the device; the returned
// loss [] and lse [R] are float32 (statistics: the scalar loss is a mean reduced in double, which a
// bf16 loss would throw away); the gradient has the logits' dtype.
//
// Labels live on the device, so their range is checked in the kernels: a row whose label is not in
// [0, K) is skipped (its logits are never indexed by it) and sets a device flag (new_flag), plus
// the index of the first such row. check_flag then throws ErrorKind::Index naming the row and its
// label: at once (default: one stream synchronisation per call) or, in deferred mode, at the next
// synchronising call (common.cuh). The backward also checks the saved lse against the recomputed
// log-sum-exp (as the CPU does) with a second flag, reported as ErrorKind::Argument. Every checked
// launch gets a fresh zeroed flag. Checks that cannot fail are skipped with their sync: the forward
// when the labels' bounds are known (known_in_range), the backward when, in addition, the lse is
// the one the forward returned for these logits, neither written since (known_derived; the forward
// stamps it with Storage::set_source). The autograd's backward is that case.
//
// Kernels: one warp per row (grid-stride over rows, int64 offsets): a max pass, a pass for
// Σ exp(x - m) (and Σ (x - m) for smoothing, Σ_{j≠y} exp(x_j - m) for the backward), then in the
// backward the write pass; the re-reads of a row come from L1/L2. Forward rows write their loss to
// an fp32 buffer that a single 1024-thread block sums in double in a fixed order: deterministic.
// The backward's label entry is formed as scale·((s − s/K) − Σ_{j≠y} e_j / Σ e) rather than
// p_y − 1, so a confident row (p_y ≈ 1) loses no precision to cancellation.
#include <cmath>
#include <cstring>
#include <optional>

#include "rows.cuh"

namespace vitrim::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

struct CeFlags {
  int32_t flag;  // bit 0: a label out of range; bit 1: an lse that does not match the logits
  int32_t pad;
  unsigned long long bad_label;  // max over bad rows r of (R - r): the first bad row is R - max
  unsigned long long bad_lse;
};
constexpr int32_t kBadLabel = 1, kBadLse = 2;

// A null f: the forward's labels were known to be in range (known_in_range); the row is only skipped.
__device__ __forceinline__ void report(CeFlags* f, int32_t bit, int64_t R, int64_t r) {
  if (!f) return;
  atomicOr(&f->flag, bit);
  atomicMax(bit == kBadLabel ? &f->bad_label : &f->bad_lse, (unsigned long long)(R - r));
}

template <class T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    ce_fwd_rows(const T* __restrict__ x, const int32_t* __restrict__ labels, float* __restrict__ lse,
                float* __restrict__ row_loss, int64_t R, int64_t K, float on, float off, CeFlags* flags) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < R; r += stride) {
    const int32_t y = labels[r];  // the same for every lane: the branch below is warp-uniform
    if (y < 0 || (int64_t)y >= K) {
      if (lane == 0) {
        report(flags, kBadLabel, R, r);
        row_loss[r] = 0.f;
        lse[r] = 0.f;
      }
      continue;
    }
    const T* xr = x + r * K;
    float m = -INFINITY;
    for (int64_t j = lane; j < K; j += 32) m = nan_max(m, to_f(xr[j]));
    m = warp_nan_max(m);
    float se = 0.f, sh = 0.f;  // Σ exp(x - m), Σ (x - m)
    for (int64_t j = lane; j < K; j += 32) {
      const float d = to_f(xr[j]) - m;
      se += expf(d);
      sh += d;
    }
    se = warp_sum(se);
    sh = warp_sum(sh);
    if (lane == 0) {
      const float lse_m = logf(se);
      lse[r] = m + lse_m;
      // Without smoothing the Σ (x - m) term is skipped, as on the CPU: a -inf logit (a masked
      // class) must not turn the loss into 0 · -inf = NaN.
      row_loss[r] = lse_m - on * (to_f(xr[y]) - m) - (off != 0.f ? off * sh : 0.f);
    }
  }
}

// loss[0] = Σ_r row_loss[r] / R, summed in double by one block in a fixed order.
__global__ void __launch_bounds__(1024) ce_mean(const float* __restrict__ row_loss, float* __restrict__ loss, int64_t R) {
  __shared__ double sh[32];
  double a = 0.0;
  for (int64_t i = threadIdx.x; i < R; i += blockDim.x) a += (double)row_loss[i];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh[warp] = a;
  __syncthreads();
  if (warp == 0) {
    double t = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    if (lane == 0) loss[0] = (float)(t / (double)R);
  }
}

// g[r, j] = scale (p_rj - t_rj) with t = on·onehot(y) + off. The label entry p_y - on - off equals
// (smoothing - off) - Σ_{j≠y} e_j / Σ e (as p_y - 1 = -Σ_{j≠y} e_j / Σ e): c_y = smoothing - off.
template <class T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    ce_bwd_rows(const T* __restrict__ x, const int32_t* __restrict__ labels, const float* __restrict__ lse,
                T* __restrict__ g, int64_t R, int64_t K, float off, float c_y, double gloss,
                const float* __restrict__ gscale, CeFlags* flags) {
  const int lane = threadIdx.x & 31;
  // The host's formula (double, then rounded once), with the device scalar when one is given.
  const float scale = (float)((gscale ? gloss * (double)gscale[0] : gloss) / (double)R);
  const int64_t stride = (int64_t)gridDim.x * kWarpsPerBlock;
  for (int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < R; r += stride) {
    const int32_t y = labels[r];
    if (y < 0 || (int64_t)y >= K) {
      if (lane == 0) report(flags, kBadLabel, R, r);
      continue;
    }
    const T* xr = x + r * K;
    T* gr = g + r * K;
    float m = -INFINITY;
    for (int64_t j = lane; j < K; j += 32) m = nan_max(m, to_f(xr[j]));
    m = warp_nan_max(m);
    float se = 0.f, so = 0.f;  // Σ e_j, Σ_{j≠y} e_j
    for (int64_t j = lane; j < K; j += 32) {
      const float e = expf(to_f(xr[j]) - m);
      se += e;
      if (j != y) so += e;
    }
    se = warp_sum(se);
    so = warp_sum(so);
    if (lane == 0) {
      const float lse_r = m + logf(se);
      if (isfinite(lse_r) && !(fabsf(lse[r] - lse_r) <= 1e-4f * fmaxf(1.f, fabsf(lse_r))))
        report(flags, kBadLse, R, r);
    }
    const float inv = 1.f / se;
    for (int64_t j = lane; j < K; j += 32) {
      const float v = j == y ? scale * (c_y - so * inv) : scale * (expf(to_f(xr[j]) - m) * inv - off);
      gr[j] = from_f<T>(v);
    }
  }
}

void check_ce_args(const Tensor& logits, const Tensor& labels, double smoothing, const char* op) {
  check_float_cuda(logits, "logits");
  check_rank(logits, 2, "logits");
  check_cuda(labels, "labels");
  check_dtype(labels, DType::I32, "labels");
  const int64_t R = logits.size(0), K = logits.size(1);
  VITRIM_CHECK(R >= 1 && K >= 1, Shape, op, ": logits must have at least one row and one class, got ",
               shape_str(logits.shape));
  check_shape(labels, {R}, "labels");
  VITRIM_CHECK(std::isfinite(smoothing) && smoothing >= 0.0 && smoothing < 1.0, Argument, op,
               ": label smoothing must be in [0, 1), got ", smoothing);
  VITRIM_CHECK(K <= INT32_MAX, Shape, op, ": too many classes for int32 labels: ", K);
}

static_assert(sizeof(CeFlags) == 6 * sizeof(int32_t), "CeFlags is six flag words");

DeviceFlag clear_flags() { return new_flag(6); }
CeFlags* as_flags(const DeviceFlag& f) { return reinterpret_cast<CeFlags*>(f.ptr()); }

// The error for set flags: an out-of-range label (Index, naming the first such row and its value)
// before an lse mismatch (Argument). Reads the offending value back from the device.
[[noreturn]] void fail_flags(const int32_t* words, const Tensor& labels, const Tensor* lse, int64_t R, int64_t K,
                             const char* op) {
  CeFlags h{};
  std::memcpy(&h, words, sizeof h);
  if (h.flag & kBadLabel) {
    const int64_t r = R - (int64_t)h.bad_label;
    int32_t v = 0;
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(&v, ptr<int32_t>(labels) + r, sizeof v, cudaMemcpyDeviceToHost, stream()));
    VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
    fail(ErrorKind::Index, op, ": labels[", r, "] = ", v, " is out of range [0, ", K, ")");
  }
  const int64_t r = R - (int64_t)h.bad_lse;
  float v = 0.f;
  if (lse) {
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(&v, ptr<float>(*lse) + r, sizeof v, cudaMemcpyDeviceToHost, stream()));
    VITRIM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }
  fail(ErrorKind::Argument, op, ": lse[", r, "] = ", v, " does not match the log-sum-exp of logits row ", r,
       " (pass the lse returned by the forward)");
}

void throw_flags(const DeviceFlag& f, const Tensor& labels, const std::optional<Tensor>& lse, int64_t R, int64_t K,
                 const char* op) {
  check_flag(f, [labels, lse, R, K, op](const int32_t* w) { fail_flags(w, labels, lse ? &*lse : nullptr, R, K, op); });
}

}  // namespace

std::tuple<Tensor, Tensor> cross_entropy_forward(const Tensor& logits, const Tensor& labels, double smoothing) {
  check_ce_args(logits, labels, smoothing, "cross_entropy_forward");
  const int64_t R = logits.size(0), K = logits.size(1);
  Tensor loss = alloc({}, DType::F32);
  Tensor lse = alloc({R}, DType::F32);
  Tensor row_loss = alloc({R}, DType::F32);
  const float on = (float)(1.0 - smoothing), off = (float)(smoothing / (double)K);
  // Labels uploaded from the host have known bounds: then no flag, no check and no sync.
  const bool checked = !known_in_range(labels, 0, K - 1);
  DeviceFlag dflags;
  if (checked) dflags = clear_flags();
  CeFlags* flags = checked ? as_flags(dflags) : nullptr;
  dispatch_float(logits.dtype, "logits", [&](auto tag) {
    using T = decltype(tag);
    ce_fwd_rows<T><<<blocks_for(R, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream()>>>(
        ptr<T>(logits), ptr<int32_t>(labels), ptr<float>(lse), ptr<float>(row_loss), R, K, on, off, flags);
    VITRIM_CUDA_LAUNCHED();
  });
  ce_mean<<<1, 1024, 0, stream()>>>(ptr<float>(row_loss), ptr<float>(loss), R);
  VITRIM_CUDA_LAUNCHED();
  if (checked) throw_flags(dflags, labels, std::nullopt, R, K, "cross_entropy_forward");
  lse.storage->set_source(*logits.storage);  // the backward may then trust it (known_derived)
  return {loss, lse};
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double smoothing, const Tensor& lse,
                              double gloss, const std::optional<Tensor>& gscale) {
  check_ce_args(logits, labels, smoothing, "cross_entropy_backward");
  const int64_t R = logits.size(0), K = logits.size(1);
  check_cuda(lse, "lse");
  check_dtype(lse, DType::F32, "lse");
  check_shape(lse, {R}, "lse");
  VITRIM_CHECK(std::isfinite(gloss), Argument, "cross_entropy_backward: gloss must be finite, got ", gloss);
  if (gscale) {  // its value stays on the device: a NaN upstream gradient propagates, as on the CPU
    check_cuda(*gscale, "gscale");
    check_dtype(*gscale, DType::F32, "gscale");
    VITRIM_CHECK(gscale->numel() == 1, Shape, "cross_entropy_backward: gscale must have one element, got shape ",
                 shape_str(gscale->shape));
  }
  Tensor g = alloc({R, K}, logits.dtype);
  const double off = smoothing / (double)K;
  const float c_y = (float)(smoothing - off);
  // The lse returned by the forward of these very logits, with labels of known bounds: nothing to
  // check, so no flag and no sync (the kernel still skips a bad label's row).
  const bool checked = !(known_derived(lse, logits) && known_in_range(labels, 0, K - 1));
  DeviceFlag dflags;
  if (checked) dflags = clear_flags();
  CeFlags* flags = checked ? as_flags(dflags) : nullptr;
  dispatch_float(logits.dtype, "logits", [&](auto tag) {
    using T = decltype(tag);
    ce_bwd_rows<T><<<blocks_for(R, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream()>>>(
        ptr<T>(logits), ptr<int32_t>(labels), ptr<float>(lse), ptr<T>(g), R, K, (float)off, c_y, gloss,
        gscale ? ptr<float>(*gscale) : nullptr, flags);
    VITRIM_CUDA_LAUNCHED();
  });
  if (checked) throw_flags(dflags, labels, lse, R, K, "cross_entropy_backward");
  return g;
}

VITRIM_CUDA_OP(cross_entropy_forward);
VITRIM_CUDA_OP(cross_entropy_backward);

}  // namespace vitrim::cuda
