// cast / copy / full on the CPU. bf16 conversion rounds to nearest even and keeps NaN a NaN.
#include <cmath>
#include <cstring>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {

static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Tensor cast(const Tensor& x, DType to) {
  check_cpu(x, "x");
  if (x.dtype == to) return copy(x);
  Tensor y = empty(x.shape, to);
  int64_t n = x.numel();
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float v;
      switch (x.dtype) {
        case DType::F32: v = x.f32()[i]; break;
        case DType::BF16: v = bf16_to_f32(x.bf16()[i]); break;
        default: v = (float)x.i32()[i]; break;
      }
      switch (to) {
        case DType::F32: y.f32()[i] = v; break;
        case DType::BF16: y.bf16()[i] = f32_to_bf16(v); break;
        default:
          if (x.dtype == DType::I32) {
            y.i32()[i] = x.i32()[i];
          } else {
            VITRIM_CHECK(std::isfinite(v) && v < 2147483648.0f && v >= -2147483648.0f, Argument,
                         "cast to int32: value ", v, " at index ", i, " is not representable");
            y.i32()[i] = (int32_t)v;
          }
      }
    }
  });
  return y;
}

Tensor copy(const Tensor& x) {
  check_cpu(x, "x");
  Tensor y = empty(x.shape, x.dtype);
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
  return y;
}

Tensor full(const Shape& shape, double value, DType dtype) {
  Tensor y = empty(shape, dtype);
  int64_t n = y.numel();
  if (dtype == DType::F32) {
    float v = (float)value;
    for (int64_t i = 0; i < n; ++i) y.f32()[i] = v;
  } else if (dtype == DType::I32) {
    VITRIM_CHECK(value == std::floor(value) && value >= -2147483648.0 && value <= 2147483647.0, Argument,
                 "full: ", value, " is not an int32 value");
    int32_t v = (int32_t)value;
    for (int64_t i = 0; i < n; ++i) y.i32()[i] = v;
  } else {
    uint16_t v = f32_to_bf16((float)value);
    for (int64_t i = 0; i < n; ++i) y.bf16()[i] = v;
  }
  return y;
}

}  // namespace vitrim::cpu
