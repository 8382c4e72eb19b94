// Row primitives shared by the softmax, attention and layernorm kernels (header-only, private to
// native/cpu). They are written so that GCC -O3 auto-vectorises them for the baseline ISA without
// -ffast-math: reductions keep 8 independent partial accumulators (a fixed order, so the result
// does not depend on the vector width), and exp is a branch-free Cephes-style polynomial instead of
// a libm call (libm's expf does not vectorise without -ffast-math). Checked with -fopt-info-vec.
// Everything here has internal linkage (static) and uses no std:: inline templates, because the
// header is compiled into TUs with different ISA flags (rowkernels*.cpp): a shared COMDAT copy
// built for AVX-512 could otherwise be picked by the linker for the baseline path.
#pragma once
#include <cstdint>


namespace vitrim::cpu::rowmath {

static inline int32_t bits_of(float f) {
  int32_t i;
  __builtin_memcpy(&i, &f, sizeof i);
  return i;
}
static inline float float_of(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, sizeof f);
  return f;
}

// e^x for x <= 0 (softmax arguments after subtracting the row max). Relative error below 1e-7
// (about 1.5 ulp) on [-87.3, 0]; 0 below -87.3 (where e^x is subnormal or zero) and for -inf;
// NaN stays NaN; x > 0 is clamped to 0 (returns 1: not for general use).
// Cephes expf: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n via the exponent
// bits. Every test and select is done with integer masks on the bit pattern: under GCC's default
// -ftrapping-math a float compare, or a select that makes the polynomial conditional, stops the
// loop from being if-converted and vectorised.
static inline float exp_nonpos(float x) {
  const int32_t ib = bits_of(x);
  const int32_t mag = ib & 0x7fffffff;
  const int32_t lo_bits = (int32_t)0xc2aeac50u;  // -87.3365447f = ln(FLT_MIN)
  const int32_t nan_m = -(int32_t)(mag > 0x7f800000);
  const int32_t below_m = -(int32_t)((ib < 0) & (mag > (lo_bits & 0x7fffffff)));  // x < lo, -inf too
  const int32_t pos_m = -(int32_t)(ib > 0);                                          // x > 0 (or +NaN)
  const float xc = float_of((lo_bits & below_m) | (ib & ~(below_m | pos_m)));        // clamp to [lo, 0]
  // Round x*log2(e) to the nearest integer with the 1.5*2^23 trick (no call, vectorises).
  const float magic = 12582912.f;
  const float fn = (xc * 1.44269504088896341f + magic) - magic;
  float r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.f;
  const float scale = float_of((int32_t)((uint32_t)((int32_t)fn + 127) << 23));  // 2^fn, fn in [-126, 0]
  const float y = p * scale;
  return float_of((bits_of(y) & ~(nan_m | below_m)) | (ib & nan_m));
}

// Maximum of a row. Floats are compared through a signed-integer key with the same order (integer
// compares vectorise where float compares do not, see above). A positive NaN wins, so it
// propagates into the softmax as PyTorch's does.
static inline int32_t order_key(float f) {
  int32_t i = bits_of(f);
  return i ^ ((i >> 31) & 0x7fffffff);
}
static inline float max(const float* x, int64_t n) {
  int32_t acc = order_key(-__builtin_inff());
  for (int64_t j = 0; j < n; ++j) {
    int32_t k = order_key(x[j]);
    acc = k > acc ? k : acc;
  }
  return float_of(acc ^ ((acc >> 31) & 0x7fffffff));
}

static inline float sum(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[j + k];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) s += x[j];
  return s;
}

static inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[j + k] * b[j + k];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
}

// y[j] = exp(x[j] - m) (y may alias x); returns the sum of y.
static inline float exp_sub_sum(const float* x, float m, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = exp_nonpos(x[j] - m);
  return sum(y, n);
}

}  // namespace vitrim::cpu::rowmath
