// Fused AdamW on CUDA: adamw_step with the name, signature, checks and arithmetic of
// native/cpu/optim.cpp, in place on param, m and v (one pass over memory):
//   p ← p · (1 − lr·wd);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
// param, m and v are float32 (mixed precision keeps fp32 master weights and moments); grad is
// float32 or bfloat16 (widened exactly). The scalars are formed in double on the host and rounded to
// float once, as on the CPU; the element update uses explicitly rounded operations (__fmul_rn etc.:
// no FMA contraction, IEEE sqrt and division) in the CPU's order, so a float32 step matches the CPU
// loop's float arithmetic operation for operation (bit-identical where the CPU build does not
// contract to FMA either).
// Kernel (both ops: adamw_step is the one-entry case): multi-tensor launches of up to kMultiMax
// tensors (multi_tensor.cuh, PyTorch's multi_tensor_apply), grouped by grad dtype; a block updates
// one 8192-element chunk of one tensor, with 16-byte accesses (4 elements of param, m, v; 4 grad
// elements as 16 or 8 bytes) when the tensor's pointers are aligned for them (checked at run time),
// scalar accesses for the chunk's tail or otherwise. A model's ~150 parameters take a handful of
// launches instead of ~150. An optional grad_scale (a device scalar: the clipping factor) multiplies
// each gradient element first (__fmul_rn).
#include <cmath>
#include <deque>

#include "common.cuh"
#include "multi_tensor.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

namespace {

__device__ __forceinline__ void adamw_elem(float& p, float g, float& m, float& v, const AdamWScalars& k) {
  const float mi = __fadd_rn(__fmul_rn(k.b1, m), __fmul_rn(k.c1, g));
  const float vi = __fadd_rn(__fmul_rn(k.b2, v), __fmul_rn(k.c2, __fmul_rn(g, g)));
  m = mi;
  v = vi;
  const float den = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), k.inv_sqrt_bc2), k.eps);
  p = __fsub_rn(__fmul_rn(p, k.decay), __fmul_rn(k.step_size, __fdiv_rn(mi, den)));
}

__device__ __forceinline__ void load4(const float* g, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(g);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load4(const bf16* g, float* out) {  // 8 bytes, 8-byte aligned
  const uint2 u = *reinterpret_cast<const uint2*>(g);
  out[0] = __uint_as_float(u.x << 16);
  out[1] = __uint_as_float(u.x & 0xffff0000u);
  out[2] = __uint_as_float(u.y << 16);
  out[3] = __uint_as_float(u.y & 0xffff0000u);
}

template <class G>
struct MultiArgs {
  ChunkTable c;
  float* p[kMultiMax];
  const G* g[kMultiMax];
  float* m[kMultiMax];
  float* v[kMultiMax];
  uint32_t vec;  // bit t: tensor t's four pointers allow 16-byte accesses
};

// gs: the grad_scale tensor's element, or null (no scaling).
template <class G>
__global__ void __launch_bounds__(256) adamw_multi_kernel(const MultiArgs<G> a, AdamWScalars k,
                                                          const float* __restrict__ gs) {
  int64_t lo, hi;
  const int t = a.c.tensor_of_block(lo, hi);
  float* __restrict__ P = a.p[t];
  const G* __restrict__ Gr = a.g[t];
  float* __restrict__ M = a.m[t];
  float* __restrict__ V = a.v[t];
  const bool scaled = gs != nullptr;
  const float s = scaled ? *gs : 1.f;
  int64_t tail = lo;
  if ((a.vec >> t) & 1u) {
    const int64_t q0 = lo / 4, q1 = q0 + (hi - lo) / 4;
    for (int64_t i = q0 + threadIdx.x; i < q1; i += blockDim.x) {
      float4 p = reinterpret_cast<float4*>(P)[i];
      float4 m = reinterpret_cast<float4*>(M)[i];
      float4 v = reinterpret_cast<float4*>(V)[i];
      float g[4];
      load4(Gr + 4 * i, g);
      if (scaled)
        for (float& x : g) x = __fmul_rn(x, s);
      adamw_elem(p.x, g[0], m.x, v.x, k);
      adamw_elem(p.y, g[1], m.y, v.y, k);
      adamw_elem(p.z, g[2], m.z, v.z, k);
      adamw_elem(p.w, g[3], m.w, v.w, k);
      reinterpret_cast<float4*>(P)[i] = p;
      reinterpret_cast<float4*>(M)[i] = m;
      reinterpret_cast<float4*>(V)[i] = v;
    }
    tail = q1 * 4;
  }
  for (int64_t i = tail + threadIdx.x; i < hi; i += blockDim.x) {
    float p = P[i], m = M[i], v = V[i];
    const float g = scaled ? __fmul_rn(to_f(Gr[i]), s) : to_f(Gr[i]);
    adamw_elem(p, g, m, v, k);
    P[i] = p;
    M[i] = m;
    V[i] = v;
  }
}

void check_f32_cuda(const Tensor& t, const char* what) {
  check_cuda(t, what);
  check_dtype(t, DType::F32, what);
}

bool aligned(const void* p, size_t a) { return ((uintptr_t)p % a) == 0; }

// Launches the update of every entry (checked by the caller): up to kMultiMax tensors per launch,
// grouped by grad dtype. gs: the grad_scale element or null.
void launch_adamw(std::vector<Tensor>& params, const std::vector<Tensor>& grads, std::vector<Tensor>& ms,
                  std::vector<Tensor>& vs, const AdamWScalars& k, const float* gs) {
  std::deque<MarkWritten> written;
  for (size_t i = 0; i < params.size(); ++i) {
    written.emplace_back(params[i]);
    written.emplace_back(ms[i]);
    written.emplace_back(vs[i]);
  }
  for (DType gt : {DType::F32, DType::BF16}) {
    dispatch_float(gt, "grad", [&](auto tag) {
      using G = decltype(tag);
      multi_launches<MultiArgs<G>>(
          params.size(), [&](size_t i) { return grads[i].dtype == gt ? params[i].numel() : 0; },
          [&](MultiArgs<G>& a, int t, size_t i) {
            a.p[t] = ptr<float>(params[i]);
            a.g[t] = ptr<G>(grads[i]);
            a.m[t] = ptr<float>(ms[i]);
            a.v[t] = ptr<float>(vs[i]);
            if (aligned(a.p[t], 16) && aligned(a.m[t], 16) && aligned(a.v[t], 16) && aligned(a.g[t], 4 * sizeof(G)))
              a.vec |= 1u << t;
          },
          [&](const MultiArgs<G>& a) {
            adamw_multi_kernel<G><<<a.c.blocks(), 256, 0, stream()>>>(a, k, gs);
            VITRIM_CUDA_LAUNCHED();
          });
    });
  }
}

}  // namespace

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step) {
  check_f32_cuda(param, "param");
  check_float_cuda(grad, "grad");
  check_f32_cuda(m, "m");
  check_f32_cuda(v, "v");
  const AdamWScalars k = check_adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  check_multi_size(param.numel(), "adamw_step", 0);
  std::vector<Tensor> p{param}, g{grad}, mm{m}, vv{v};
  launch_adamw(p, g, mm, vv, k, nullptr);
}

void adamw_step_multi(std::vector<Tensor>& params, const std::vector<Tensor>& grads, std::vector<Tensor>& ms,
                      std::vector<Tensor>& vs, double lr, double beta1, double beta2, double eps, double weight_decay,
                      int64_t step, const std::optional<Tensor>& grad_scale) {
  const AdamWScalars k =
      check_adamw_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step, [&](size_t i) {
        check_f32_cuda(params[i], "param");
        check_float_cuda(grads[i], "grad");
        check_f32_cuda(ms[i], "m");
        check_f32_cuda(vs[i], "v");
        check_multi_size(params[i].numel(), "adamw_step_multi", i);
      });
  if (grad_scale) check_cuda(*grad_scale, "grad_scale");
  check_grad_scale(grad_scale);
  launch_adamw(params, grads, ms, vs, k, grad_scale ? ptr<float>(*grad_scale) : nullptr);
}

VITRIM_CUDA_OP(adamw_step);
VITRIM_CUDA_OP(adamw_step_multi);

}  // namespace vitrim::cuda
