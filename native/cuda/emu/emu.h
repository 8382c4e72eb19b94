// CUDA emulation on the CPU, for testing the CUDA backend where no GPU is visible (this machine, CI).
//
// The backend's .cu files are compiled by g++ with this header forced in first (-include), after
// scripts/cuda-emu-preprocess.mjs rewrote `k<<<grid, block, smem, stream>>>(args)` into
// `::emu::launch(k, ::emu::Cfg(grid, block, smem, stream), args)` and `extern __shared__ T a[];`
// into a pointer to the block's dynamic shared memory. The result is libvitrim_cuda_emu.so, which
// the addon loads through VITRIM_CUDA_LIB exactly like the real library, so test/cuda runs against it.
//
// Execution model (emu/runtime.cpp): a launch runs at once (one stream, so stream order holds); the
// blocks of a grid one after another (in index order unless VITRIM_EMU_ORDER says otherwise); the
// threads of a block as cooperative fibers switched at __syncthreads and at warp collectives
// (shuffles, ballots, __syncwarp), which wait for every lane of their mask. `__shared__` becomes
// `static`, which is one copy per kernel shared by the block's fibers: correct because blocks never
// run concurrently. Shared memory starts filled with NaN bytes (0xff) so a read before a write
// shows; VITRIM_EMU_ORDER=reverse|random (read at each launch) changes the order in which a block's
// fibers run between barriers, so a missing barrier shows as stale data in some order, and the
// order of a grid's blocks (which a GPU does not fix either). What it checks: launch configurations
// (block size, grid limits, shared-memory bounds), barriers not reached by every live thread
// (deadlock) and warp collectives whose mask names exited or missing lanes (both undefined on a
// GPU), out-of-bounds
// memory when built with -fsanitize=address. The tensor-core path's instructions (mma.sync
// m16n8k16 bf16 and m16n8k8 tf32, ldmatrix, cp.async) are models written from the PTX ISA's
// fragment layouts and semantics (below; mma_bf16.cuh / mma_tf32.cuh call them under
// VITRIM_CUDA_EMU): a kernel and the model could share a misreading of the ISA, which only a GPU
// run rules out. Data races a shuffled order does not expose are the race check's
// (libvitrim_cuda_emu_race.so, runtime.cpp). What it cannot show: the timing of anything, and the
// float rounding of fast-math intrinsics (the emulated intrinsics are the accurate functions).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static
#define __launch_bounds__(...)  // moved into the kernel body by the preprocessor (emu::launch_bounds)
#ifndef VITRIM_CUDA_EMU
#define VITRIM_CUDA_EMU 1
#endif

namespace emu {

struct Lane {
  uint3 tid;   // threadIdx
  uint3 bid;   // blockIdx
};
Lane& cur();        // the running fiber's indices
const dim3& block_dim();
const dim3& grid_dim();
void* dyn_smem();   // the block's dynamic shared memory
size_t dyn_smem_size();

struct Cfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  Cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
};

// Runs (or, inside a graph capture, records) a kernel body for every thread of the grid. Returns the
// launch error that cudaGetLastError() then reports.
// `kernel` identifies the function for its dynamic shared memory limit (cudaFuncSetAttribute).
cudaError_t run_kernel(const Cfg& cfg, std::function<void()> body, const void* kernel);

template <class... P, class... A>
void launch(void (*k)(P...), const Cfg& cfg, A&&... a) {
  // Arguments are converted to the parameter types and copied, as a real launch does.
  auto args = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(a)...);
  run_kernel(cfg, [k, args]() { std::apply(k, *args); }, reinterpret_cast<const void*>(k));
}

// __launch_bounds__(maxThreads[, minBlocks]): the preprocessor (scripts/cuda-emu-preprocess.mjs)
// moves the attribute into the kernel's body as a call of this. A GPU refuses a launch of more
// threads per block than maxThreads (the kernel was compiled for at most that many, its register
// budget chosen accordingly); here the kernel fails with that message. minBlocks only steers
// register allocation, which has no counterpart here.
inline void launch_bounds(unsigned max_threads, unsigned /*min_blocks*/ = 0) {
  const dim3& b = block_dim();
  const unsigned n = b.x * b.y * b.z;
  if (n > max_threads) {
    throw std::runtime_error("a block of " + std::to_string(n) + " threads exceeds the kernel's __launch_bounds__(" +
                             std::to_string(max_threads) + ")");
  }
}

// ---- cp.async (Ampere+ asynchronous global -> shared copies) ----
// cp.async.cg.shared.global [dst], [src], 16, src_size: queued in the calling thread's open group,
// copied (src_size bytes, the rest of the 16 zero-filled) only when cp.async.wait_group retires
// its group. Until then the destination keeps its old bytes, so a kernel that reads shared memory
// before waiting for the copy (or before the barrier after the wait) sees stale data here as it
// may on a GPU; __syncthreads does not complete copies, as on a GPU.
void cp_async16(void* dst, const void* src, int src_size);
// cp.async.commit_group: closes the open group (an empty group is a valid group).
void cp_async_commit();
// cp.async.wait_group n: completes every committed group but the n most recent.
void cp_async_wait(int n);

// ---- collectives ----
void syncthreads();
void syncwarp(unsigned mask);
// All lanes of `mask` publish `v`; returns the 32 published values of this warp (by lane).
const uint64_t* warp_exchange(unsigned mask, uint64_t v);
unsigned lane_id();
// The message of the last error the emulation raised (a kernel's fault, a refused launch), for
// the emulation's own tests; cudaGetErrorString says only the kind.
std::string last_error_detail();

template <class T>
T shfl_from(unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const uint64_t* all = warp_exchange(mask, bits);
  T out;
  std::memcpy(&out, &all[src & 31], sizeof(T));
  return out;
}

}  // namespace emu

#define threadIdx (::emu::cur().tid)
#define blockIdx (::emu::cur().bid)
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())
#ifndef warpSize
#define warpSize 32
#endif

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::syncwarp(mask); }
namespace emu {
void threadfence();  // the race check's release/acquire between blocks (runtime.cpp)
}
inline void __threadfence() { ::emu::threadfence(); }
inline void __threadfence_block() {}

// width: the shuffle acts within segments of `width` lanes (a power of two <= 32).
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  unsigned lane = ::emu::lane_id();
  int base = (int)(lane & ~(unsigned)(width - 1));
  return ::emu::shfl_from(mask, v, base + (src & (width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
  unsigned lane = ::emu::lane_id();
  unsigned src = lane ^ (unsigned)lm;
  // Outside the segment: the lane keeps its own value.
  if ((src & ~(unsigned)(width - 1)) != (lane & ~(unsigned)(width - 1))) src = lane;
  return ::emu::shfl_from(mask, v, (int)src);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  unsigned lane = ::emu::lane_id();
  unsigned seg = lane & (unsigned)(width - 1);
  unsigned src = seg + d < (unsigned)width ? lane + d : lane;
  return ::emu::shfl_from(mask, v, (int)src);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
  unsigned lane = ::emu::lane_id();
  unsigned seg = lane & (unsigned)(width - 1);
  unsigned src = seg >= d ? lane - d : lane;
  return ::emu::shfl_from(mask, v, (int)src);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  const uint64_t* all = ::emu::warp_exchange(mask, pred ? 1 : 0);
  unsigned r = 0;
  for (int i = 0; i < 32; ++i)
    if ((mask >> i & 1u) && all[i]) r |= 1u << i;
  return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline unsigned __activemask() { return 0xffffffffu; }

// ---- atomics: fibers of one OS thread never interleave inside these ----
// The race check (runtime.cpp) does not count their accesses: atomics do not race with each other.
namespace emu {
struct RaceQuiet {
  RaceQuiet();
  ~RaceQuiet();
};
}  // namespace emu
template <class T>
T atomicAdd(T* p, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  *p = old + v;
  return old;
}
template <class T>
T atomicSub(T* p, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  *p = old - v;
  return old;
}
template <class T>
T atomicMax(T* p, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  *p = std::max(old, v);
  return old;
}
template <class T>
T atomicMin(T* p, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  *p = std::min(old, v);
  return old;
}
template <class T>
T atomicExch(T* p, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  *p = v;
  return old;
}
template <class T>
T atomicOr(T* p, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  *p = old | v;
  return old;
}
template <class T>
T atomicCAS(T* p, T cmp, T v) {
  ::emu::RaceQuiet quiet;
  T old = *p;
  if (old == cmp) *p = v;
  return old;
}

// ---- intrinsics (accurate host versions) ----
template <class T>
T __ldg(const T* p) {
  return *p;
}
template <class T>
T __ldcg(const T* p) {
  return *p;
}
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __exp2f(float x) { return exp2f(x); }
inline float exp2f_fast(float x) { return exp2f(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double x) { return sqrt(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }
inline float __int_as_float(int x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline int __float_as_int(float f) {
  int x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline float __uint_as_float(unsigned x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline long long clock64() { return 0; }

// Device code calls min/max on mixed integer types the way CUDA's overloads allow.
template <class A, class B>
inline auto min(A a, B b) -> typename std::common_type<A, B>::type {
  using C = typename std::common_type<A, B>::type;
  return (C)a < (C)b ? (C)a : (C)b;
}
template <class A, class B>
inline auto max(A a, B b) -> typename std::common_type<A, B>::type {
  using C = typename std::common_type<A, B>::type;
  return (C)a > (C)b ? (C)a : (C)b;
}

// Device code calls the classification functions unqualified, as CUDA's math headers allow.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

// ---- tensor-core instructions (warp-collective), emulated from the PTX ISA's fragment layouts ----
namespace emu {
inline float bf16_bits_to_float(uint32_t b16) {
  uint32_t u = (b16 & 0xffffu) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// The A (4 registers) and B (2 registers) fragments of all 32 lanes of the warp, by lane.
inline void gather_frags(uint32_t (&A)[32][4], uint32_t (&B)[32][2], const uint32_t (&a)[4], uint32_t b0,
                         uint32_t b1) {
  const uint32_t* regs[6] = {&a[0], &a[1], &a[2], &a[3], &b0, &b1};
  for (int i = 0; i < 6; ++i) {
    const uint64_t* all = warp_exchange(0xffffffffu, *regs[i]);
    for (int l = 0; l < 32; ++l) (i < 4 ? A[l][i] : B[l][i - 4]) = (uint32_t)all[l];
  }
}
// c[i] += sum_k A(row, k) B(k, col) over this lane's C elements (c0,c1: row g, cols 2t, 2t+1;
// c2,c3: row g+8), in k order with fmaf: the products of bf16 / tf32 inputs are exact in fp32.
template <int K, class FA, class FB>
inline void mma_accumulate(float (&c)[4], FA a_el, FB b_el) {
  const int lane = (int)lane_id(), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
    float s = c[i];
    for (int k = 0; k < K; ++k) s = fmaf(a_el(row, k), b_el(k, col), s);
    c[i] = s;
  }
}
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: D = A(16x16) B(16x8) + C, per lane
// (g = lane/4, t = lane%4): A regs a0 (g, 2t..2t+1) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..);
// B regs b0 (k = 2t..2t+1, n = g) b1 (k = 2t+8.., n = g); C c0,c1 (g, 2t..2t+1) c2,c3 (g+8, ..).
// The lower 16 bits of a register hold the element with the smaller k (or column).
inline void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  uint32_t A[32][4], B[32][2];
  gather_frags(A, B, a, b0, b1);
  auto a_el = [&](int row, int col) {
    const int lane = (row % 8) * 4 + (col % 8) / 2, reg = row / 8 + 2 * (col / 8);
    return bf16_bits_to_float(A[lane][reg] >> (16 * (col % 2)));
  };
  auto b_el = [&](int k, int n) {
    const int lane = n * 4 + (k % 8) / 2, reg = k / 8;
    return bf16_bits_to_float(B[lane][reg] >> (16 * (k % 2)));
  };
  mma_accumulate<16>(c, a_el, b_el);
}
// cvt.rna.tf32.f32: round to 10 mantissa bits, ties away from zero (the low 13 bits of the
// result are 0); NaN stays NaN, a value that rounds past the largest finite one becomes inf.
inline uint32_t cvt_rna_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) ? 0x7fffffffu : u;
  return (u + 0x1000u) & ~0x1fffu;
}
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: D = A(16x8) B(8x8) + C, per lane
// (g = lane/4, t = lane%4): A regs a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4);
// B regs b0 (k = t, n = g) b1 (k = t+4, n = g); C as for m16n8k16. The instruction reads only the
// tf32 bits of each operand: the low 13 mantissa bits are dropped here (truncation), so an operand
// that was not rounded to tf32 first loses accuracy in the emulation as it would on the GPU.
inline void mma_m16n8k8_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  uint32_t A[32][4], B[32][2];
  gather_frags(A, B, a, b0, b1);
  auto tf = [](uint32_t bits) {
    bits &= ~0x1fffu;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  };
  auto a_el = [&](int row, int col) { return tf(A[(row % 8) * 4 + col % 4][row / 8 + 2 * (col / 4)]); };
  auto b_el = [&](int k, int n) { return tf(B[n * 4 + k % 4][k / 4]); };
  mma_accumulate<8>(c, a_el, b_el);
}
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 give the row addresses of
// matrix i (8 b16 each); lane t receives in r[i] the pair M_i[t/4][2(t%4) + {0,1}], or with .trans
// M_i[2(t%4) + {0,1}][t/4], the lower half being the first of the pair.
// Each row address must be 16-byte aligned and name 16 bytes of shared memory (the instruction's
// rules; on a GPU a breach is a misaligned-address or out-of-range fault). The kernels that use it
// stage their tiles in dynamic shared memory, so a row outside it is an error here too. Every lane
// sees every address, so all of them stop at the same check.
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p, bool trans) {
  const uint64_t* all = warp_exchange(0xffffffffu, (uint64_t)(uintptr_t)p);
  uint64_t rows[32];
  for (int l = 0; l < 32; ++l) rows[l] = all[l];
  const uint64_t lo = (uint64_t)(uintptr_t)dyn_smem(), hi = lo + dyn_smem_size();
  for (int l = 0; l < 32; ++l) {
    if (rows[l] % 16 != 0)
      throw std::runtime_error("ldmatrix: the row address of lane " + std::to_string(l) + " is not 16-byte aligned");
    if (rows[l] < lo || rows[l] + 16 > hi)
      throw std::runtime_error("ldmatrix: the row address of lane " + std::to_string(l) +
                               " is outside the block's dynamic shared memory");
  }
  const int t = (int)lane_id();
  for (int i = 0; i < 4; ++i) {
    auto el = [&](int row, int col) -> uint32_t {
      const uint16_t* q = reinterpret_cast<const uint16_t*>((uintptr_t)rows[8 * i + row]);
      return q[col];
    };
    uint32_t lo, hi;
    if (trans) {
      lo = el(2 * (t % 4), t / 4);
      hi = el(2 * (t % 4) + 1, t / 4);
    } else {
      lo = el(t / 4, 2 * (t % 4));
      hi = el(t / 4, 2 * (t % 4) + 1);
    }
    r[i] = lo | (hi << 16);
  }
}
}  // namespace emu

// Kernel-typed overloads of runtime calls that nvcc's headers provide only to device compilers.
template <class... P>
cudaError_t cudaFuncSetAttribute(void (*f)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(f), attr, value);
}
template <class... P>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, void (*f)(P...), int block, size_t smem) {
  return ::cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, reinterpret_cast<const void*>(f), block, smem);
}
