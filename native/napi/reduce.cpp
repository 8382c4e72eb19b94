// Binding of cpu::reduce (cpu/reduce.cpp): reduce(op, x, axes, keepDims).
#include "common.h"
#include "dispatch.h"
#include "vitrim/ops.h"

namespace vitrim::napi {

VITRIM_OP(reduce) {
  std::string s = arg_string(info, 0, "op");
  cpu::ReduceOp op;
  if (s == "sum") op = cpu::ReduceOp::Sum;
  else if (s == "mean") op = cpu::ReduceOp::Mean;
  else if (s == "max") op = cpu::ReduceOp::Max;
  else fail(ErrorKind::Argument, "reduce op must be 'sum', 'mean' or 'max', got '", s, "'");
  return wrap(info.Env(), VITRIM_CALL(reduce, op, arg_tensor(info, 1, "x"), arg_int_list(info, 2, "axes"),
                                      arg_bool(info, 3, "keepDims")));
}

// sumSquares(xs[]) -> float32 [1] on the tensors' device: Σ Σ x² (an empty list: cpu 0)
VITRIM_OP(sumSquares) {
  return wrap(info.Env(), VITRIM_CALL(sum_squares, arg_tensor_list(info, 0, "xs")));
}

}  // namespace vitrim::napi
