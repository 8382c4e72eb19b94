// Row packing for inference that really skips work: the kept tokens of every sample are gathered
// into one packed [R, C] matrix (rows of the flattened [B*N, C] activations), processed, and their
// results added back in place. Rows are validated before any write; index_add_rows accumulates
// serially per destination row (threads split the packed rows; duplicate destinations within one
// call are rejected so the threaded add is race-free).
#include <cstring>
#include <vector>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

static void check_rows(const Tensor& rows, int64_t limit, const char* op) {
  check_cpu(rows, "rows");
  check_dtype(rows, DType::I32, "rows");
  check_rank(rows, 1, "rows");
  const int32_t* r = rows.i32();
  for (int64_t i = 0; i < rows.numel(); ++i)
    VITRIM_CHECK(r[i] >= 0 && r[i] < limit, Index, op, ": rows[", i, "] = ", r[i], " is out of range [0, ", limit, ")");
}

Tensor gather_rows(const Tensor& x, const Tensor& rows) {
  check_f32_cpu(x, "x");
  check_rank(x, 2, "x");
  check_rows(rows, x.size(0), "gather_rows");
  int64_t R = rows.numel(), C = x.size(1);
  Tensor y = empty({R, C}, DType::F32);
  const int32_t* r = rows.i32();
  parallel_for(R, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(y.f32() + i * C, x.f32() + (int64_t)r[i] * C, sizeof(float) * C);
  });
  return y;
}

void index_add_rows(Tensor& dst, const Tensor& rows, const Tensor& src) {
  check_f32_cpu(dst, "dst");
  check_f32_cpu(src, "src");
  check_rank(dst, 2, "dst");
  check_rank(src, 2, "src");
  check_rows(rows, dst.size(0), "index_add_rows");
  VITRIM_CHECK(src.size(0) == rows.numel() && src.size(1) == dst.size(1), Shape, "index_add_rows: src ",
               shape_str(src.shape), " must be [rows, ", dst.size(1), "]");
  int64_t R = rows.numel(), C = dst.size(1);
  const int32_t* r = rows.i32();
  std::vector<uint8_t> seen((size_t)dst.size(0), 0);
  for (int64_t i = 0; i < R; ++i) {
    VITRIM_CHECK(!seen[r[i]], Index, "index_add_rows: row ", r[i], " appears twice");
    seen[r[i]] = 1;
  }
  const MarkWritten written(dst);
  parallel_for(R, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* d = dst.f32() + (int64_t)r[i] * C;
      const float* s = src.f32() + i * C;
      for (int64_t c = 0; c < C; ++c) d[c] += s[c];
    }
  });
}

}  // namespace vitrim::cpu
