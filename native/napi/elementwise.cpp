// Bindings of the elementwise family (cpu/elementwise.cpp). Op names arrive as strings; an unknown
// name is ERR_VITRIM_ARGUMENT.
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

static cpu::BinaryOp binary_op(const Napi::CallbackInfo& info, size_t i) {
  std::string s = arg_string(info, i, "op");
  if (s == "add") return cpu::BinaryOp::Add;
  if (s == "sub") return cpu::BinaryOp::Sub;
  if (s == "mul") return cpu::BinaryOp::Mul;
  if (s == "div") return cpu::BinaryOp::Div;
  fail(ErrorKind::Argument, "binary op must be 'add', 'sub', 'mul' or 'div', got '", s, "'");
}

static cpu::UnaryOp unary_op(const Napi::CallbackInfo& info, size_t i) {
  static const std::pair<const char*, cpu::UnaryOp> names[] = {
      {"neg", cpu::UnaryOp::Neg},   {"abs", cpu::UnaryOp::Abs},         {"sqr", cpu::UnaryOp::Sqr},
      {"sqrt", cpu::UnaryOp::Sqrt}, {"exp", cpu::UnaryOp::Exp},         {"log", cpu::UnaryOp::Log},
      {"sigmoid", cpu::UnaryOp::Sigmoid}, {"tanh", cpu::UnaryOp::Tanh}, {"relu", cpu::UnaryOp::Relu},
      {"gelu", cpu::UnaryOp::Gelu}};
  std::string s = arg_string(info, i, "op");
  for (auto& [n, op] : names)
    if (s == n) return op;
  fail(ErrorKind::Argument, "unary op must be one of neg, abs, sqr, sqrt, exp, log, sigmoid, tanh, relu, gelu; got '",
       s, "'");
}

VITRIM_OP(binary) {
  auto op = binary_op(info, 0);
  return wrap(info.Env(), VITRIM_CALL(binary, op, arg_tensor(info, 1, "a"), arg_tensor(info, 2, "b")));
}
VITRIM_OP(unary) {
  auto op = unary_op(info, 0);
  return wrap(info.Env(), VITRIM_CALL(unary, op, arg_tensor(info, 1, "x")));
}
VITRIM_OP(unaryBackward) {
  auto op = unary_op(info, 0);
  return wrap(info.Env(), VITRIM_CALL(unary_backward, op, arg_tensor(info, 1, "x"), arg_tensor(info, 2, "y"),
                                              arg_tensor(info, 3, "gy")));
}
VITRIM_OP(affine) {
  return wrap(info.Env(),
              VITRIM_CALL(affine, arg_tensor(info, 0, "x"), arg_number(info, 1, "alpha"), arg_number(info, 2, "beta")));
}
VITRIM_OP(step) {
  Tensor y = VITRIM_CALL(step, arg_tensor(info, 0, "x"), arg_number(info, 1, "threshold"));
  record_unit_range(y);  // 0 or 1 (NaN gives 0)
  return wrap(info.Env(), y);
}
VITRIM_OP(sumTo) {
  return wrap(info.Env(), VITRIM_CALL(sum_to, arg_tensor(info, 0, "x"), arg_shape(info, 1, "shape")));
}

}  // namespace vitrim::napi
