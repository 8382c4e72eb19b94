#include <algorithm>
#include <cmath>
#include <string>

#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(matmul) {
  return wrap(info.Env(), VITRIM_CALL(matmul, arg_tensor(info, 0, "a"), arg_tensor(info, 1, "b"), arg_bool(info, 2, "transA"),
                                      arg_bool(info, 3, "transB")));
}
VITRIM_OP(linearForward) {
  return wrap(info.Env(), VITRIM_CALL(linear_forward, arg_tensor(info, 0, "x"), arg_tensor(info, 1, "weight"),
                                              arg_opt_tensor(info, 2, "bias")));
}
// linearFused(x, weight, bias | null, activation: 'none' | 'gelu', residual | null)
VITRIM_OP(linearFused) {
  const std::string act = arg_string(info, 3, "activation");
  VITRIM_CHECK(act == "none" || act == "gelu", Argument, "linearFused: activation must be 'none' or 'gelu', got '", act,
               "'");
  return wrap(info.Env(), VITRIM_CALL(linear_fused, arg_tensor(info, 0, "x"), arg_tensor(info, 1, "weight"),
                                            arg_opt_tensor(info, 2, "bias"),
                                            act == "gelu" ? cpu::Activation::Gelu : cpu::Activation::None,
                                            arg_opt_tensor(info, 4, "residual")));
}
VITRIM_OP(linearBackward) {
  auto [gx, gw, gb] = VITRIM_CALL(linear_backward, arg_tensor(info, 0, "gy"), arg_tensor(info, 1, "x"),
                                           arg_tensor(info, 2, "weight"), arg_bool(info, 3, "needBias"));
  Napi::Env env = info.Env();
  return wrap_list(env, {wrap(env, gx), wrap(env, gw), wrap_opt(env, gb)});
}
// In-place BLAS-style sgemm on 2-D tensors: C = alpha op(A) op(B) + beta C over the top-left windows
// op(A)[M, K], op(B)[K, N], C[M, N]; the leading dimensions are the tensors' row lengths, so a
// window narrower than its tensor exercises lda/ldb/ldc > width. Every window is checked to fit.
VITRIM_OP(gemm) {
  bool ta = arg_bool(info, 0, "transA"), tb = arg_bool(info, 1, "transB");
  int64_t M = arg_int(info, 2, "M"), N = arg_int(info, 3, "N"), K = arg_int(info, 4, "K");
  double alpha = arg_number(info, 5, "alpha");
  const Tensor& a = arg_tensor(info, 6, "a");
  const Tensor& b = arg_tensor(info, 7, "b");
  double beta = arg_number(info, 8, "beta");
  const Tensor& c = arg_tensor(info, 9, "c");
  check_f32_cpu(a, "a");
  check_f32_cpu(b, "b");
  check_f32_cpu(c, "c");
  check_rank(a, 2, "a");
  check_rank(b, 2, "b");
  check_rank(c, 2, "c");
  VITRIM_CHECK(M >= 0 && N >= 0 && K >= 0, Argument, "gemm: negative size M=", M, " N=", N, " K=", K);
  auto fits = [](const Tensor& t, int64_t rows, int64_t cols) { return t.size(0) >= rows && t.size(1) >= cols; };
  VITRIM_CHECK(fits(a, ta ? K : M, ta ? M : K), Shape, "gemm: a ", shape_str(a.shape), " is smaller than op(A) ", M, "x",
               K, (ta ? " (transposed)" : ""));
  VITRIM_CHECK(fits(b, tb ? N : K, tb ? K : N), Shape, "gemm: b ", shape_str(b.shape), " is smaller than op(B) ", K, "x",
               N, (tb ? " (transposed)" : ""));
  VITRIM_CHECK(fits(c, M, N), Shape, "gemm: c ", shape_str(c.shape), " is smaller than ", M, "x", N);
  VITRIM_CHECK(std::isfinite(alpha) && std::isfinite(beta), Argument, "gemm: alpha and beta must be finite");
  VITRIM_CHECK(!c.storage || (c.storage != a.storage && c.storage != b.storage), Argument,
               "gemm: c must not share storage with a or b");
  // Leading dimensions must be >= 1 even for empty windows of zero-width tensors.
  auto ld = [](const Tensor& t) { return std::max<int64_t>(1, t.size(1)); };
  const MarkWritten written(c);
  cpu::sgemm(ta, tb, M, N, K, (float)alpha, a.f32(), ld(a), b.f32(), ld(b), (float)beta, c.f32(), ld(c));
  return info.Env().Undefined();
}
VITRIM_OP(gemmIsa) { return Napi::String::New(info.Env(), cpu::gemm_isa()); }
VITRIM_OP(gemmSetIsa) {
  cpu::gemm_set_isa(arg_string(info, 0, "isa"));
  return Napi::String::New(info.Env(), cpu::gemm_isa());
}

}  // namespace vitrim::napi
