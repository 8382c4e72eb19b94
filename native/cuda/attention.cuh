// Internal interface between attention.cu (which owns every attention kernel) and
// attention_varlen.cu (validation of the packed layout, then this launcher).
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "common.cuh"

namespace vitrim::cuda::attn {

// Varlen forward after validation: qkv [R, 3C] on cuda (float32 or bfloat16), cu_dev the int32
// cu_seqlens on cuda and cu its host copy (already checked: cu[0] = 0, nondecreasing, cu[S] = R),
// head_gate [S, H] on cuda (float32 or qkv's dtype) or absent. Returns out [R, C] in qkv's dtype.
Tensor varlen_forward(const Tensor& qkv, const Tensor& cu_dev, const std::vector<int32_t>& cu, int64_t num_heads,
                      double scale, const std::optional<Tensor>& head_gate);

}  // namespace vitrim::cuda::attn
