// 3xTF32 building blocks shared by the float32 tensor-core kernels (attention.cu's fwd_f32tc,
// gemm_f32tc.cu): the mma.sync m16n8k8 tf32 instruction, cvt.rna.tf32 and the hi/lo split. Under
// VITRIM_CUDA_EMU they call the CPU emulation's models of the instructions (native/cuda/emu/emu.h).
//
// 3xTF32: each fp32 operand x is split into x_hi = tf32(x) (round to nearest, 10-bit mantissa) and
// x_lo = tf32(x - x_hi); a.b is accumulated as a_lo.b_hi + a_hi.b_lo + a_hi.b_hi (small terms
// first). The dropped a_lo.b_lo and the rounding of x_lo leave a relative error of about 2^-21 per
// product, the order of fp32 FMA's own; plain TF32 (2^-11) is never used alone.
// Fragment layouts (PTX ISA, mma.m16n8k8 .tf32, g = lane/4, t = lane%4):
//   A 16x8 row-major: a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4)
//   B 8x8 "col":      b0 (k = t, n = g)  b1 (k = t+4, n = g)
//   C 16x8:           c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..2t+1)
#pragma once
#include <cstdint>

#include "common.cuh"

namespace vitrim::cuda {

__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef VITRIM_CUDA_EMU
  ::emu::mma_m16n8k8_tf32(c, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
#ifdef VITRIM_CUDA_EMU
  return ::emu::cvt_rna_tf32(x);
#else
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#endif
}

__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - __uint_as_float(hi));
}

}  // namespace vitrim::cuda
