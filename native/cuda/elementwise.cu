// Elementwise family on CUDA: binary ops with numpy broadcasting, unary maps and their backward,
// affine, step and sum_to. Same names, signatures, validation and formulas as
// native/cpu/elementwise.cpp; float32 or bfloat16 (all floating inputs of one op share a dtype, the
// output has it too, step's 0/1 mask included), math in float32. One exception: binary takes
// float32 with bfloat16 (either way round) and gives float32, the type promotion done in the kernel
// (bit-identical to casting the bfloat16 operand first: the cast is exact), so an inference's
// residual add of a bfloat16 GEMM output into the float32 stream is one pass, not a cast and an
// add. The CPU backend computes in float32 only and keeps rejecting bfloat16.
//
// binary: the host computes the output shape and per-operand strides exactly as the CPU (same
//   messages), drops size-1 output dims and merges adjacent dims across which both operands stay
//   linear. What is left goes to one of two kernels:
//   - 1 or 2 merged dims [R, L] with inner strides 0 or 1 (every case the model meets: same shape is
//     [1, L]; bias [.., C] op [C] is [R, C] with b's row stride 0; a per-row scalar [R, C] op [R, 1]
//     has b's inner stride 0; [B, N, C] op [1, N, C] is [B, N*C]): flat index i -> (r, j) with one
//     division; 4-element packs (16-byte float32 / 8-byte bf16 loads and stores) when L % 4 == 0
//     and every pointer and row stride allow it, else one element per thread.
//   - anything else (up to kMaxDims merged dims; more is ERR_VITRIM_ARGUMENT): the flat output index
//     is decomposed over the merged dims (a small struct passed by value) into both input offsets.
//   Indices are 32-bit when the output has fewer than 2^31 elements (every input is then smaller
//   too, since broadcasting only grows), else 64-bit (and under VITRIM_CUDA_INDEX64=1, for the tests).
// unary / unary_backward / affine / step: flat maps in 4-element packs (every tensor starts at an
//   allocation, so its data is 16-byte aligned: check_pack_aligned), then a scalar tail.
//   Formulas (float32, matching the CPU): sigmoid two-sided (exp never overflows); tanh: tanhf;
//   GELU exact erf as x*erfc(-x/sqrt2)/2 (no cancellation in the negative tail); relu: x > 0 ? x : 0
//   (NaN -> 0 as on the CPU); backward as the CPU's header comment (sigmoid' and tanh' from x,
//   sqrt' = g/(2y), exp' = g*y, log' = g/x). affine: (float)alpha * x + (float)beta with the multiply
//   and add rounded separately (no FMA contraction), as the CPU's loop. step compares in double.
// sum_to: the CPU's validation and axis list, then cuda::reduce(Sum, axes, keepdim) and a reshape
//   (a fresh copy when nothing is reduced). Deterministic: reduce.cu uses no atomics (fixed-order
//   fp32 accumulation), so the same input gives the same bytes on one GPU.
#include <algorithm>
#include <type_traits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

// Defined in the sibling files of this backend (convert.cu, reduce.cu).
Tensor copy(const Tensor& x);
Tensor reduce(cpu::ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim);

namespace {

using cpu::BinaryOp;
using cpu::UnaryOp;

constexpr int kThreads = 256;
constexpr int kPack = 4;
constexpr int kMaxDims = 12;

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};
using I64 = int64_t;
using I32 = uint32_t;

bool aligned_to(const void* p, size_t a) { return ((uintptr_t)p % a) == 0; }

// ---------------------------------------------------------------- binary
template <BinaryOp OP>
__device__ __forceinline__ float bop(float a, float b) {
  if constexpr (OP == BinaryOp::Add) return a + b;
  else if constexpr (OP == BinaryOp::Sub) return a - b;
  else if constexpr (OP == BinaryOp::Mul) return a * b;
  else return a / b;
}

// o[r, j] = a[r*sa0 + j*sa1] op b[r*sb0 + j*sb1] over an [R, L] output (flat index i = r*L + j).
// TA, TB: the operands' dtypes; TO: the output's (float32 when they differ: the promotion of
// float32 with bfloat16, in the kernel rather than as a separate cast pass).
template <BinaryOp OP, class TA, class TB, class TO, class I>
__global__ void binary2_kernel(const TA* __restrict__ a, const TB* __restrict__ b, TO* __restrict__ o, I n, I L,
                               I sa0, I sa1, I sb0, I sb1) {
  const I stride = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const I r = i / L, j = i - r * L;
    o[i] = from_f<TO>(bop<OP>(to_f(a[r * sa0 + j * sa1]), to_f(b[r * sb0 + j * sb1])));
  }
}

// Packed variant: L % 4 == 0, so a pack of 4 outputs lies in one row; an operand whose inner stride is
// 1 is read as one pack (its row stride is a multiple of 4 and its pointer pack-aligned: checked on
// the host), one with inner stride 0 as one scalar.
template <BinaryOp OP, class TA, class TB, class TO, class I>
__global__ void binary2_pack_kernel(const TA* __restrict__ a, const TB* __restrict__ b, TO* __restrict__ o, I npack,
                                    I L, I sa0, I sa1, I sb0, I sb1) {
  const I stride = (I)gridDim.x * blockDim.x;
  for (I p = (I)blockIdx.x * blockDim.x + threadIdx.x; p < npack; p += stride) {
    const I i = p * kPack, r = i / L, j = i - r * L;
    float av[kPack], bv[kPack];
    if (sa1) {
      const Pack<TA, kPack> pa = *reinterpret_cast<const Pack<TA, kPack>*>(a + (r * sa0 + j));
#pragma unroll
      for (int k = 0; k < kPack; ++k) av[k] = to_f(pa.v[k]);
    } else {
      const float s = to_f(a[r * sa0]);
#pragma unroll
      for (int k = 0; k < kPack; ++k) av[k] = s;
    }
    if (sb1) {
      const Pack<TB, kPack> pb = *reinterpret_cast<const Pack<TB, kPack>*>(b + (r * sb0 + j));
#pragma unroll
      for (int k = 0; k < kPack; ++k) bv[k] = to_f(pb.v[k]);
    } else {
      const float s = to_f(b[r * sb0]);
#pragma unroll
      for (int k = 0; k < kPack; ++k) bv[k] = s;
    }
    Pack<TO, kPack> po;
#pragma unroll
    for (int k = 0; k < kPack; ++k) po.v[k] = from_f<TO>(bop<OP>(av[k], bv[k]));
    *reinterpret_cast<Pack<TO, kPack>*>(o + i) = po;
  }
}

struct BDims {
  int nd;
  int64_t size[kMaxDims], sa[kMaxDims], sb[kMaxDims];
};

template <BinaryOp OP, class TA, class TB, class TO, class I>
__global__ void binary_nd_kernel(const TA* __restrict__ a, const TB* __restrict__ b, TO* __restrict__ o, I n,
                                 BDims d) {
  const I stride = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    I rest = i, ia = 0, ib = 0;
    for (int k = d.nd - 1; k > 0; --k) {
      const I sz = (I)d.size[k];
      const I q = rest / sz, c = rest - q * sz;
      ia += c * (I)d.sa[k];
      ib += c * (I)d.sb[k];
      rest = q;
    }
    ia += rest * (I)d.sa[0];
    ib += rest * (I)d.sb[0];
    o[i] = from_f<TO>(bop<OP>(to_f(a[ia]), to_f(b[ib])));
  }
}

struct Dim {
  int64_t size, sa, sb;
};

template <BinaryOp OP, class TA, class TB, class TO, class I>
void binary_launch(const std::vector<Dim>& dims, const TA* a, const TB* b, TO* o, int64_t n) {
  if (dims.size() <= 2) {
    const Dim in = dims.back();
    const Dim out = dims.size() == 2 ? dims[0] : Dim{1, 0, 0};
    const int64_t L = in.size;
    const bool pack = L % kPack == 0 && aligned_to(o, sizeof(Pack<TO, kPack>)) &&
                      (in.sa == 0 || (out.sa % kPack == 0 && aligned_to(a, sizeof(Pack<TA, kPack>)))) &&
                      (in.sb == 0 || (out.sb % kPack == 0 && aligned_to(b, sizeof(Pack<TB, kPack>))));
    if (pack) {
      const int64_t np = n / kPack;
      binary2_pack_kernel<OP, TA, TB, TO, I><<<grid_for(np, kThreads), kThreads, 0, stream()>>>(
          a, b, o, (I)np, (I)L, (I)out.sa, (I)in.sa, (I)out.sb, (I)in.sb);
    } else {
      binary2_kernel<OP, TA, TB, TO, I><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
          a, b, o, (I)n, (I)L, (I)out.sa, (I)in.sa, (I)out.sb, (I)in.sb);
    }
  } else {
    BDims d{};
    d.nd = (int)dims.size();
    for (size_t k = 0; k < dims.size(); ++k) {
      d.size[k] = dims[k].size;
      d.sa[k] = dims[k].sa;
      d.sb[k] = dims[k].sb;
    }
    binary_nd_kernel<OP, TA, TB, TO, I><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(a, b, o, (I)n, d);
  }
  VITRIM_CUDA_LAUNCHED();
}

template <BinaryOp OP>
void binary_dispatch(const std::vector<Dim>& dims, const Tensor& a, const Tensor& b, const Tensor& o) {
  const int64_t n = o.numel();
  dispatch_float(a.dtype, "a", [&](auto ta) {
    dispatch_float(b.dtype, "b", [&](auto tb) {
      using TA = decltype(ta);
      using TB = decltype(tb);
      using TO = std::conditional_t<std::is_same_v<TA, TB>, TA, float>;
      if (index32(n)) binary_launch<OP, TA, TB, TO, I32>(dims, ptr<TA>(a), ptr<TB>(b), ptr<TO>(o), n);
      else binary_launch<OP, TA, TB, TO, I64>(dims, ptr<TA>(a), ptr<TB>(b), ptr<TO>(o), n);
    });
  });
}

// ---------------------------------------------------------------- flat maps
// y[i] = f(x[i]): 4-element packs (every pointer is pack-aligned: check_pack_aligned), then a
// scalar tail.
template <class T, class F>
__global__ void map1_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, F f) {
  using P = Pack<T, kPack>;
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t np = n / kPack;
  for (int64_t p = tid; p < np; p += stride) {
    const P px = reinterpret_cast<const P*>(x)[p];
    P py;
#pragma unroll
    for (int k = 0; k < kPack; ++k) py.v[k] = from_f<T>(f(to_f(px.v[k])));
    reinterpret_cast<P*>(y)[p] = py;
  }
  for (int64_t i = np * kPack + tid; i < n; i += stride) y[i] = from_f<T>(f(to_f(x[i])));
}

// o[i] = f(x[i], y[i], g[i]), in packs as map1_kernel.
template <class T, class F>
__global__ void map3_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ g,
                            T* __restrict__ o, int64_t n, F f) {
  using P = Pack<T, kPack>;
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t np = n / kPack;
  for (int64_t p = tid; p < np; p += stride) {
    const P px = reinterpret_cast<const P*>(x)[p];
    const P py = reinterpret_cast<const P*>(y)[p];
    const P pg = reinterpret_cast<const P*>(g)[p];
    P po;
#pragma unroll
    for (int k = 0; k < kPack; ++k) po.v[k] = from_f<T>(f(to_f(px.v[k]), to_f(py.v[k]), to_f(pg.v[k])));
    reinterpret_cast<P*>(o)[p] = po;
  }
  for (int64_t i = np * kPack + tid; i < n; i += stride) o[i] = from_f<T>(f(to_f(x[i]), to_f(y[i]), to_f(g[i])));
}

template <class F>
Tensor map1(const Tensor& x, F f) {
  Tensor y = alloc(x.shape, x.dtype);
  const int64_t n = x.numel();
  if (n == 0) return y;
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    check_pack_aligned({x.raw(), y.raw()}, "elementwise");
    map1_kernel<T, F><<<grid_for((n + kPack - 1) / kPack, kThreads), kThreads, 0, stream()>>>(ptr<T>(x), ptr<T>(y),
                                                                                              n, f);
    VITRIM_CUDA_LAUNCHED();
  });
  return y;
}

template <class F>
Tensor map3(const Tensor& x, const Tensor& y, const Tensor& g, F f) {
  Tensor o = alloc(x.shape, x.dtype);
  const int64_t n = x.numel();
  if (n == 0) return o;
  dispatch_float(x.dtype, "x", [&](auto tag) {
    using T = decltype(tag);
    check_pack_aligned({x.raw(), y.raw(), g.raw(), o.raw()}, "elementwise");
    map3_kernel<T, F><<<grid_for((n + kPack - 1) / kPack, kThreads), kThreads, 0, stream()>>>(
        ptr<T>(x), ptr<T>(y), ptr<T>(g), ptr<T>(o), n, f);
    VITRIM_CUDA_LAUNCHED();
  });
  return o;
}

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

template <UnaryOp OP>
struct UnaryF {
  __device__ __forceinline__ float operator()(float v) const {
    if constexpr (OP == UnaryOp::Neg) return -v;
    else if constexpr (OP == UnaryOp::Abs) return fabsf(v);
    else if constexpr (OP == UnaryOp::Sqr) return v * v;
    else if constexpr (OP == UnaryOp::Sqrt) return sqrtf(v);
    else if constexpr (OP == UnaryOp::Exp) return expf(v);
    else if constexpr (OP == UnaryOp::Log) return logf(v);
    else if constexpr (OP == UnaryOp::Sigmoid) {
      if (v >= 0.f) return 1.f / (1.f + expf(-v));
      const float e = expf(v);
      return e / (1.f + e);
    } else if constexpr (OP == UnaryOp::Tanh) return tanhf(v);
    else if constexpr (OP == UnaryOp::Relu) return v > 0.f ? v : 0.f;
    else return gelu_exact(v);  // Gelu: x * Phi(x)
  }
};

template <UnaryOp OP>
struct UnaryBackF {
  __device__ __forceinline__ float operator()(float v, float r, float g) const {
    if constexpr (OP == UnaryOp::Neg) return -g;
    else if constexpr (OP == UnaryOp::Abs) return v > 0.f ? g : (v < 0.f ? -g : 0.f);
    else if constexpr (OP == UnaryOp::Sqr) return 2.f * v * g;
    else if constexpr (OP == UnaryOp::Sqrt) return g / (2.f * r);
    else if constexpr (OP == UnaryOp::Exp) return g * r;
    else if constexpr (OP == UnaryOp::Log) return g / v;
    else if constexpr (OP == UnaryOp::Sigmoid) {
      const float e = expf(-fabsf(v));
      const float d = 1.f + e;
      return g * (e / (d * d));
    } else if constexpr (OP == UnaryOp::Tanh) {
      const float e = expf(-2.f * fabsf(v));
      const float d = 1.f + e;
      return g * (4.f * e / (d * d));
    } else if constexpr (OP == UnaryOp::Relu) return v > 0.f ? g : 0.f;
    else {  // Gelu: Phi(x) + x phi(x)
      const float cdf = 0.5f * erfcf(-v * kInvSqrt2);
      const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
      return g * (cdf + v * pdf);
    }
  }
};

struct AffineF {
  float a, b;
  __device__ __forceinline__ float operator()(float v) const { return __fadd_rn(__fmul_rn(a, v), b); }
};
struct StepF {
  double t;
  __device__ __forceinline__ float operator()(float v) const { return (double)v > t ? 1.f : 0.f; }
};

void check_same_float(const Tensor& t, const Tensor& ref, const char* op, const char* wt, const char* wr) {
  VITRIM_CHECK(t.dtype == ref.dtype, DType, op, ": ", wt, " is ", dtype_name(t.dtype), " but ", wr, " is ",
               dtype_name(ref.dtype));
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_float_cuda(a, "a");
  check_float_cuda(b, "b");  // float32 with bfloat16 is promoted to float32 (in the kernel)
  VITRIM_CHECK(op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div, Argument,
               "binary: unknown op");
  const int64_t ra = a.dim(), rb = b.dim(), nd = std::max(ra, rb);
  Shape os(nd);
  std::vector<int64_t> stra(nd), strb(nd);
  int64_t sa = 1, sb = 1;
  for (int64_t i = nd - 1; i >= 0; --i) {
    const int64_t da = i - (nd - ra) >= 0 ? a.shape[i - (nd - ra)] : 1;
    const int64_t db = i - (nd - rb) >= 0 ? b.shape[i - (nd - rb)] : 1;
    VITRIM_CHECK(da == db || da == 1 || db == 1, Shape, "binary: shapes ", shape_str(a.shape), " and ",
                 shape_str(b.shape), " are not broadcast-compatible (dim ", i, ": ", da, " vs ", db, ")");
    os[i] = da == 1 ? db : da;
    stra[i] = da == 1 ? 0 : sa;
    strb[i] = db == 1 ? 0 : sb;
    sa *= da;
    sb *= db;
  }
  Tensor o = alloc(os, a.dtype == b.dtype ? a.dtype : DType::F32);
  if (o.numel() == 0) return o;
  std::vector<Dim> dims;
  for (int64_t i = 0; i < nd; ++i) {
    if (os[i] == 1) continue;
    if (!dims.empty()) {
      Dim& p = dims.back();
      if (p.sa == stra[i] * os[i] && p.sb == strb[i] * os[i]) {  // both operands linear across the pair
        p.size *= os[i];
        p.sa = stra[i];
        p.sb = strb[i];
        continue;
      }
    }
    dims.push_back({os[i], stra[i], strb[i]});
  }
  if (dims.empty()) dims.push_back({1, 0, 0});
  VITRIM_CHECK((int)dims.size() <= kMaxDims, Argument, "binary: broadcasting ", shape_str(a.shape), " with ",
               shape_str(b.shape), " needs ", dims.size(), " strided dimensions; cuda supports ", kMaxDims);
  VITRIM_CHECK((dims.back().sa | 1) == 1 && (dims.back().sb | 1) == 1, Internal,
               "binary: inner strides must be 0 or 1");
  switch (op) {
    case BinaryOp::Add: binary_dispatch<BinaryOp::Add>(dims, a, b, o); break;
    case BinaryOp::Sub: binary_dispatch<BinaryOp::Sub>(dims, a, b, o); break;
    case BinaryOp::Mul: binary_dispatch<BinaryOp::Mul>(dims, a, b, o); break;
    default: binary_dispatch<BinaryOp::Div>(dims, a, b, o); break;
  }
  return o;
}

Tensor unary(UnaryOp op, const Tensor& x) {
  check_float_cuda(x, "x");
  switch (op) {
    case UnaryOp::Neg: return map1(x, UnaryF<UnaryOp::Neg>{});
    case UnaryOp::Abs: return map1(x, UnaryF<UnaryOp::Abs>{});
    case UnaryOp::Sqr: return map1(x, UnaryF<UnaryOp::Sqr>{});
    case UnaryOp::Sqrt: return map1(x, UnaryF<UnaryOp::Sqrt>{});
    case UnaryOp::Exp: return map1(x, UnaryF<UnaryOp::Exp>{});
    case UnaryOp::Log: return map1(x, UnaryF<UnaryOp::Log>{});
    case UnaryOp::Sigmoid: return map1(x, UnaryF<UnaryOp::Sigmoid>{});
    case UnaryOp::Tanh: return map1(x, UnaryF<UnaryOp::Tanh>{});
    case UnaryOp::Relu: return map1(x, UnaryF<UnaryOp::Relu>{});
    case UnaryOp::Gelu: return map1(x, UnaryF<UnaryOp::Gelu>{});
    default: fail(ErrorKind::Argument, "unary: unknown op");
  }
}

Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy) {
  check_float_cuda(x, "x");
  check_float_cuda(y, "y");
  check_float_cuda(gy, "gy");
  check_same_float(y, x, "unary_backward", "y", "x");
  check_same_float(gy, x, "unary_backward", "gy", "x");
  check_same_shape(x, y, "x", "y");
  check_same_shape(x, gy, "x", "gy");
  switch (op) {
    case UnaryOp::Neg: return map3(x, y, gy, UnaryBackF<UnaryOp::Neg>{});
    case UnaryOp::Abs: return map3(x, y, gy, UnaryBackF<UnaryOp::Abs>{});
    case UnaryOp::Sqr: return map3(x, y, gy, UnaryBackF<UnaryOp::Sqr>{});
    case UnaryOp::Sqrt: return map3(x, y, gy, UnaryBackF<UnaryOp::Sqrt>{});
    case UnaryOp::Exp: return map3(x, y, gy, UnaryBackF<UnaryOp::Exp>{});
    case UnaryOp::Log: return map3(x, y, gy, UnaryBackF<UnaryOp::Log>{});
    case UnaryOp::Sigmoid: return map3(x, y, gy, UnaryBackF<UnaryOp::Sigmoid>{});
    case UnaryOp::Tanh: return map3(x, y, gy, UnaryBackF<UnaryOp::Tanh>{});
    case UnaryOp::Relu: return map3(x, y, gy, UnaryBackF<UnaryOp::Relu>{});
    case UnaryOp::Gelu: return map3(x, y, gy, UnaryBackF<UnaryOp::Gelu>{});
    default: fail(ErrorKind::Argument, "unary_backward: unknown op");
  }
}

Tensor affine(const Tensor& x, double alpha, double beta) {
  check_float_cuda(x, "x");
  VITRIM_CHECK(!std::isnan(alpha) && !std::isnan(beta), Argument, "affine: alpha and beta must not be NaN");
  return map1(x, AffineF{(float)alpha, (float)beta});
}

Tensor step(const Tensor& x, double threshold) {
  check_float_cuda(x, "x");
  VITRIM_CHECK(!std::isnan(threshold), Argument, "step: threshold must not be NaN");
  return map1(x, StepF{threshold});
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_float_cuda(x, "x");
  const std::vector<int64_t> axes = sum_to_axes(x.shape, shape);
  if (axes.empty()) return cuda::copy(x).reshape(shape);  // reduce() reads an empty list as "all axes"
  return cuda::reduce(cpu::ReduceOp::Sum, x, axes, true).reshape(shape);
}

VITRIM_CUDA_OP(binary);
VITRIM_CUDA_OP(unary);
VITRIM_CUDA_OP(unary_backward);
VITRIM_CUDA_OP(affine);
VITRIM_CUDA_OP(step);
VITRIM_CUDA_OP(sum_to);

}  // namespace vitrim::cuda
