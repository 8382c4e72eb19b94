// The op surface shared by the backends. The CPU implementations live in native/cpu/<family>.cpp
// under namespace vitrim::cpu; CUDA ones (later) carry the same names in vitrim::cuda.
// All tensors are contiguous row-major. float32 unless stated; index tensors are int32.
// Every function validates its arguments (shape, dtype, device, index ranges) and throws
// vitrim::Error; none of them may crash on bad input.
#pragma once
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "vitrim/tensor.h"

namespace vitrim {
namespace cpu {

// ---- core (core/convert.cpp) ----
Tensor cast(const Tensor& x, DType to);  // f32<->bf16 (round-to-nearest-even), f32<->i32 (trunc)
Tensor copy(const Tensor& x);
Tensor full(const Shape& shape, double value, DType dtype);

// ---- elementwise (cpu/elementwise.cpp): numpy broadcasting for binary ops ----
enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Neg, Abs, Sqr, Sqrt, Exp, Log, Sigmoid, Tanh, Relu, Gelu };
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor unary(UnaryOp op, const Tensor& x);
// Gradient wrt x of y = unary(op, x), given x, y and dL/dy (same shapes).
Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha*x + beta
Tensor step(const Tensor& x, double threshold);             // 1.0f where x > threshold else 0.0f
// Sum x down to `shape` (the inverse of broadcasting `shape` up to x.shape): backward of binary ops.
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- reductions (cpu/reduce.cpp) ----
enum class ReduceOp { Sum, Mean, Max };
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim);
// Σ over every tensor of Σ x² (float32 or bfloat16 inputs, any shapes, one device), as a float32 [1]
// on that device: the squared global L2 norm for gradient clipping, with no read-back. Accumulated
// in double in an order fixed by the shapes (deterministic); an empty list gives 0.
Tensor sum_squares(const std::vector<Tensor>& xs);

// ---- layout (cpu/layout.cpp) ----
Tensor permute(const Tensor& x, const std::vector<int64_t>& perm);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end);
// Backward of slice: a zero tensor of `shape` with gy written at [start, start+len) along axis.
Tensor slice_backward(const Tensor& gy, const Shape& shape, int64_t axis, int64_t start);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);

// ---- gemm (cpu/gemm.cpp) ----
// C[M,N] = alpha * op(A) op(B) + beta * C with op = transpose when trans*. Row-major, leading
// dimensions in elements. Threaded unless called from inside a parallel_for (then serial).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// Name of the micro-kernel chosen at run time by CPUID ("avx512", "avx2", "generic").
const char* gemm_isa();
// Test/bench hook: pins the micro-kernel ("generic", "avx2", "avx512"; only ones this CPU runs) or
// returns to the CPUID choice ("auto" or ""). Throws Argument for anything else.
void gemm_set_isa(const std::string& isa);
// Batched matmul over equal leading dims; b may be 2-D (shared). [.., M, K] x [.., K, N].
Tensor matmul(const Tensor& a, const Tensor& b, bool transA, bool transB);
// y[..., N] = x[..., K] W[N, K]^T + bias[N]
Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias);
// Inference-only fused linear (no backward): y = act(x W^T + bias) (+ residual), where residual
// (optional) has y's shape [..., N]. The activation and the residual add run in the GEMM's store
// epilogue, so y is written once; results equal linear_forward followed by unary/binary up to the
// rounding of GELU's vectorised evaluation.
enum class Activation { None, Gelu };
Tensor linear_fused(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias, Activation act,
                    const std::optional<Tensor>& residual);
// linear_fused keeps packed copies of the weights it sees (see gemm.cpp; valid while the weight's
// storage is not written): drop them all, or report {entries, bytes}.
void clear_linear_cache();
std::pair<int64_t, int64_t> linear_cache_stats();
// returns {gx, gw, gbias (if need_bias)}
std::tuple<Tensor, Tensor, std::optional<Tensor>> linear_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                                                  bool need_bias);

// ---- layernorm (cpu/layernorm.cpp): over the last axis ----
// returns {y, mean[rows], rstd[rows]}; weight/bias optional (no affine when absent). y has dtype
// out_dtype (float32 or bfloat16; x's dtype when absent): the float32 result rounded once, so a
// bfloat16 y is bit-identical to cast(layernorm_forward(x, ...).y, bfloat16) (autocast feeds it
// to the bf16 GEMM that follows without a separate cast pass).
std::tuple<Tensor, Tensor, Tensor> layernorm_forward(const Tensor& x, const std::optional<Tensor>& w,
                                                     const std::optional<Tensor>& b, double eps,
                                                     std::optional<DType> out_dtype);
// returns {gx, gw, gb} (gw, gb only when w was given)
std::tuple<Tensor, std::optional<Tensor>, std::optional<Tensor>> layernorm_backward(
    const Tensor& gy, const Tensor& x, const std::optional<Tensor>& w, const Tensor& mean, const Tensor& rstd);

// ---- softmax (cpu/softmax.cpp): over the last axis ----
Tensor softmax_forward(const Tensor& x, bool log);
Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log);  // y = the forward output

// ---- attention (cpu/attention.cpp) ----
// qkv [B, N, 3C] in timm's fused layout (q | k | v, each C = H*D, head-major). Output [B, N, C].
// keep [B, N] (optional, values in [0,1]): DynamicViT's key mask with the diagonal kept:
//   A_ij = exp(s_ij - max_j s_ij) * (keep_j + (1 - keep_j) * [i == j]),
//   attn_ij = (A_ij + eps/N) / (sum_j A_ij + eps).
// Without keep: plain softmax(s). head_gate [B, H] (optional) scales head h's output channels.
// stats: opaque tensor saved for backward.
std::tuple<Tensor, Tensor> attention_forward(const Tensor& qkv, int64_t num_heads, double scale,
                                             const std::optional<Tensor>& keep,
                                             const std::optional<Tensor>& head_gate, double eps);
// returns {gqkv, gkeep (if keep), ghead_gate (if head_gate)}
std::tuple<Tensor, std::optional<Tensor>, std::optional<Tensor>> attention_backward(
    const Tensor& gout, const Tensor& qkv, int64_t num_heads, double scale, const std::optional<Tensor>& keep,
    const std::optional<Tensor>& head_gate, double eps, const Tensor& out, const Tensor& stats);

// Varlen forward for inference on packed sequences: qkv [R, 3C] holds S sequences back to back,
// sequence s at rows [cu_seqlens[s], cu_seqlens[s+1]) (int32 [S+1], cu_seqlens[0] = 0,
// nondecreasing, cu_seqlens[S] = R). Plain softmax attention within each sequence; head_gate [S, H]
// (optional) scales head outputs and a head whose gate is 0 is not computed (its output is 0).
Tensor attention_varlen_forward(const Tensor& qkv, const Tensor& cu_seqlens, int64_t num_heads, double scale,
                                const std::optional<Tensor>& head_gate);

// ---- gather (cpu/gather.cpp) ----
Tensor gather_tokens(const Tensor& x, const Tensor& idx);              // [B,N,C],[B,K] -> [B,K,C]
Tensor scatter_tokens(const Tensor& g, const Tensor& idx, int64_t n);  // [B,K,C] -> [B,n,C], accumulates

// ---- pack (cpu/pack.cpp): packed rows for inference that skips dropped tokens ----
Tensor gather_rows(const Tensor& x, const Tensor& rows);                     // [R0,C],[R] -> [R,C]
void index_add_rows(Tensor& dst, const Tensor& rows, const Tensor& src);      // dst[rows[i]] += src[i], in place

// ---- loss (cpu/loss.cpp) ----
// Mean softmax-cross-entropy over rows of logits [R, K] with labels [R] int32 (in [0, K)) and label
// smoothing s: target = (1-s) onehot + s/K. Returns {loss [] (scalar), lse [R]}.
std::tuple<Tensor, Tensor> cross_entropy_forward(const Tensor& logits, const Tensor& labels, double smoothing);
// The upstream gradient is gloss, times gscale[0] when gscale (a float32 one-element tensor on the
// logits' device) is given: the autograd passes the device scalar, so no host read is needed.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double smoothing, const Tensor& lse,
                              double gloss, const std::optional<Tensor>& gscale);

// ---- topk (cpu/topk.cpp): along the last axis, sorted (largest first when largest) ----
std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, bool largest);

// ---- random / sampling (cpu/sample.cpp), Philox keyed by (seed, offset, element index) ----
enum class Dist { Uniform, Normal, Gumbel, Logistic };
Tensor random(const Shape& shape, Dist dist, uint64_t seed, uint64_t offset);
// Gumbel-sigmoid: y_soft = sigmoid((z + noise) / tau), noise ~ Logistic (= g1 - g2) or given;
// hard: y = 1[y_soft > threshold] (forward value), else y = y_soft. Returns {y, y_soft}.
std::tuple<Tensor, Tensor> gumbel_sigmoid(const Tensor& logits, double tau, double threshold, bool hard,
                                          const std::optional<Tensor>& noise, uint64_t seed, uint64_t offset);
Tensor gumbel_sigmoid_backward(const Tensor& y_soft, const Tensor& gy, double tau);  // straight-through
// Gumbel-softmax over the last axis: y_soft = softmax((z + g) / tau), hard: one-hot of argmax.
std::tuple<Tensor, Tensor> gumbel_softmax(const Tensor& logits, double tau, bool hard,
                                          const std::optional<Tensor>& noise, uint64_t seed, uint64_t offset);
Tensor gumbel_softmax_backward(const Tensor& y_soft, const Tensor& gy, double tau);

// ---- patch (cpu/patch.cpp) ----
// [B, C, H, W] -> [B, (H/p)*(W/p), C*p*p], patches row-major, each flattened (c, py, px) to match
// a Conv2d(k=p, s=p) weight [E, C, p, p] reshaped to [E, C*p*p].
Tensor patchify(const Tensor& x, int64_t p);
Tensor unpatchify(const Tensor& g, const Shape& image_shape, int64_t p);

// ---- optim (cpu/optim.cpp) ----
// Fused AdamW (decoupled weight decay, bias correction with `step` >= 1), in place on param, m, v.
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1, double beta2,
                double eps, double weight_decay, int64_t step);
// The same step for a list of parameters with shared hyper-parameters (PyTorch's foreach/fused
// AdamW): entry i updates params[i], ms[i], vs[i] from grads[i], with the same arithmetic as
// adamw_step (the same bits). On CUDA one launch covers many tensors. grad_scale (a float32
// one-element tensor on the same device, e.g. a clipping factor computed there) multiplies every
// gradient element first (one float rounding, as g.mul_(s) before the step would).
void adamw_step_multi(std::vector<Tensor>& params, const std::vector<Tensor>& grads, std::vector<Tensor>& ms,
                      std::vector<Tensor>& vs, double lr, double beta1, double beta2, double eps, double weight_decay,
                      int64_t step, const std::optional<Tensor>& grad_scale);

}  // namespace cpu
}  // namespace vitrim
