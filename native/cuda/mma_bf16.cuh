// bf16 tensor-core building blocks shared by attention.cu and gemm_bf16tc.cu: mma.sync m16n8k16
// (bf16 in, fp32 accumulate), ldmatrix (x4, plain and transposed), bf16 pair packing, and cp.async
// (16-byte global -> shared copies with zero fill) with its group commit / wait. Under
// VITRIM_CUDA_EMU they call the CPU emulation's models of the instructions (native/cuda/emu/emu.h).
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane/4, t = lane%4):
//   A 16x16 row-major: a0 (g, 2t..2t+1) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..)
//   B 16x8 "col":      b0 (k = 2t..2t+1, n = g)  b1 (k = 2t+8.., n = g)
//   C 16x8:            c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..2t+1)
// The lower 16 bits of a register hold the element with the smaller k (or column).
#pragma once
#include <cstdint>
#include <cstring>

#include "common.cuh"

namespace vitrim::cuda {

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef VITRIM_CUDA_EMU
  ::emu::mma_m16n8k16_bf16(c, a, b0, b1);  // the CPU emulation's model of the instruction
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Four 8x8 b16 matrices from shared memory; lane l gives the address of row l%8 of matrix l/8.
// Lane t receives in r[i] the pair M_i[t/4][2(t%4) + {0,1}] (plain) or M_i[2(t%4) + {0,1}][t/4]
// (transposed).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
#ifdef VITRIM_CUDA_EMU
  ::emu::ldmatrix_x4(r, p, false);
#else
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
#endif
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) {
#ifdef VITRIM_CUDA_EMU
  ::emu::ldmatrix_x4(r, p, true);
#else
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
#endif
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  uint32_t r;
  memcpy(&r, &v, 4);
  return r;
}

// 16 bytes from global `src` to shared `dst` (both 16-byte aligned), of which the first `src_size`
// (0 or 16 here) are read and the rest zero-filled: an out-of-range chunk is a zero chunk without
// a branch around the copy (`src` must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_size) {
#ifdef VITRIM_CUDA_EMU
  ::emu::cp_async16(dst, src, src_size);
#else
  const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_size) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef VITRIM_CUDA_EMU
  ::emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef VITRIM_CUDA_EMU
  ::emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace vitrim::cuda
