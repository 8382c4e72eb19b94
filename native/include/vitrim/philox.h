// Counter-based Philox4x32-10 (Salmon et al., SC'11), usable from host and device code.
// vitrim keys every random draw by (seed, offset, logical element index): element i of a sampling op
// called with (seed, offset) uses counter = {i_lo, i_hi, offset_lo, offset_hi}, key = {seed_lo,
// seed_hi}, and takes word 0 of the output. The value an element gets is therefore independent of
// the launch shape, the thread count and the device: the same seed gives the same decisions on CPU
// and GPU. (Using one word of four wastes 3/4 of the generator; sampling is never the bottleneck.)
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define VITRIM_HD __host__ __device__ __forceinline__
#else
#define VITRIM_HD inline
#endif

namespace vitrim {

struct Philox4 {
  uint32_t v[4];
};

VITRIM_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

VITRIM_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(M0, ctr.v[0], &hi0);
    uint32_t lo1 = mulhilo32(M1, ctr.v[2], &hi1);
    Philox4 n;
    n.v[0] = hi1 ^ ctr.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ ctr.v[3] ^ k1;
    n.v[3] = lo0;
    ctr = n;
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// 32 random bits for element `index` of the stream (seed, offset).
VITRIM_HD uint32_t philox_bits(uint64_t seed, uint64_t offset, uint64_t index) {
  Philox4 c;
  c.v[0] = (uint32_t)index;
  c.v[1] = (uint32_t)(index >> 32);
  c.v[2] = (uint32_t)offset;
  c.v[3] = (uint32_t)(offset >> 32);
  return philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32)).v[0];
}

// Uniform in the open interval (0, 1): 24 random bits, centred in their bucket, so log(u) and
// log(1-u) are always finite.
VITRIM_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t index) {
  return ((float)(philox_bits(seed, offset, index) >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// Gumbel(0,1): -log(-log u).
VITRIM_HD float philox_gumbel(uint64_t seed, uint64_t offset, uint64_t index) {
  float u = philox_uniform(seed, offset, index);
  return -logf(-logf(u));
}

// Logistic(0,1) = difference of two independent Gumbel(0,1) draws: log(u) - log(1-u).
VITRIM_HD float philox_logistic(uint64_t seed, uint64_t offset, uint64_t index) {
  float u = philox_uniform(seed, offset, index);
  return logf(u) - log1pf(-u);
}

// Standard normal by Box-Muller on two streams of the same counter family (index*2, index*2+1).
VITRIM_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t index) {
  float u1 = philox_uniform(seed, offset, index * 2);
  float u2 = philox_uniform(seed, offset, index * 2 + 1);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

}  // namespace vitrim
