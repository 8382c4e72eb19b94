// The emulation's race check (runtime.cpp, VITRIM_EMU_RACE) on kernels written to race and on their
// corrected versions: each case launches one kernel and compares the launch's outcome with what it
// expects (a hazard of a named kind, or none). Built as vitrim_emu_race_selftest with the same
// -fsanitize=thread instrumentation as libvitrim_cuda_emu_race.so; test/cuda/race-check.test.ts runs
// it. Prints one line per case ("ok <name>" or "FAIL <name>: ...") and exits non-zero on a failure.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "emu.h"

namespace {

// Thread t writes s[t]; thread t then reads s[t+1], which thread t+1 wrote: a barrier must separate
// them. Which of the two accesses the check sees second (read-after-write or write-after-read)
// depends on the order the emulation runs the threads in; either is the hazard.
__global__ void raw_shared(float* out, bool sync) {
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = (float)t;
  if (sync) __syncthreads();
  out[blockIdx.x * 64 + t] = s[(t + 1) % 64];
}

// Every thread reads s[t+1], then writes s[t]: thread t+1's read and thread t's write of s[t+1]
// need a barrier between them (write-after-read; read-after-write where thread t+1 runs first), the
// classic in-place shift.
__global__ void war_shared(float* out, bool sync) {
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = (float)t;
  __syncthreads();
  const float v = s[(t + 1) % 64];
  if (sync) __syncthreads();
  s[t] = v * 2.f;
  __syncthreads();
  out[t] = s[t];
}

// Every thread writes the same word (write-after-write); with only thread 0 writing it is clean.
__global__ void waw_shared(float* out, bool all) {
  __shared__ float s[1];
  const unsigned t = threadIdx.x;
  if (all || t == 0) s[0] = (float)t;
  __syncthreads();
  out[t] = s[0];
}

// Lanes of one warp: lane l writes s[l] and reads s[l ^ 1]. A __syncwarp orders them; a shuffle
// does not (it exchanges registers, not memory).
__global__ void warp_shared(float* out, int mode) {
  __shared__ float s[32];
  const unsigned l = threadIdx.x;
  s[l] = (float)l;
  if (mode == 1) __syncwarp();
  if (mode == 2) (void)__shfl_xor_sync(0xffffffffu, 1.f, 1);
  out[l] = s[l ^ 1];
}

// Two warps: a __syncwarp orders lanes of one warp only, so thread 32 reading what thread 0 wrote
// is a hazard even with it.
__global__ void two_warps(float* out) {
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = (float)t;
  __syncwarp();
  out[t] = s[(t + 32) % 64];
}

// Atomics on one word: no hazard.
__global__ void atomics(float* out) {
  __shared__ float s[1];
  if (threadIdx.x == 0) s[0] = 0.f;
  __syncthreads();
  atomicAdd(&s[0], 1.f);
  __syncthreads();
  out[threadIdx.x] = s[0];
}

// Global memory within a block: threads t and t+1 both write out[t/2 * 2] (write-after-write),
// or each its own element (clean).
__global__ void waw_global(float* out, bool collide) {
  const unsigned t = threadIdx.x;
  out[collide ? t / 2 * 2 : t] = (float)t;
}

// Neighbouring 2-byte elements of one 4-byte word, each written by its own thread: no hazard (the
// check works per byte).
__global__ void halves(uint16_t* out) {
  __shared__ uint16_t s[64];
  const unsigned t = threadIdx.x;
  s[t] = (uint16_t)t;
  __syncthreads();
  out[t] = s[t];
}

// Dynamic shared memory: the message names the byte.
__global__ void raw_dynamic(float* out) {
  float* s = reinterpret_cast<float*>(::emu::dyn_smem());
  const unsigned t = threadIdx.x;
  s[t] = (float)t;
  out[t] = s[(t + 5) % 32];
}

// Between blocks (global memory): block 1 reads what block 0 wrote in the same launch, or every
// block writes the same elements.
__global__ void cross_raw(float* buf) {
  const unsigned t = threadIdx.x;
  if (blockIdx.x == 0) buf[t] = (float)t;
  if (blockIdx.x == 1) buf[64 + t] = buf[t];
}
__global__ void cross_waw(float* buf) { buf[threadIdx.x] = (float)blockIdx.x; }
// Every block reads buf[t]; the last block also writes it: a write after other blocks' reads, which
// the record names as "another block" (its last reader is the writing block itself).
__global__ void cross_war(float* buf, float* out) {
  const unsigned t = threadIdx.x;
  out[blockIdx.x * 64 + t] = buf[t];
  if (blockIdx.x == gridDim.x - 1) buf[t] = 0.f;
}

// Split-K's ending: each block writes its partials, fences, counts itself in; the last block fences
// and sums every block's partials. Published: no hazard. Without the writers' fence it is one.
__global__ void last_block_sums(float* part, int* counter, float* out, bool fence) {
  __shared__ int s_last;
  const unsigned t = threadIdx.x, z = blockIdx.x;
  part[z * 64 + t] = (float)(z + t);
  if (fence) __threadfence();
  __syncthreads();
  if (t == 0) s_last = atomicAdd(counter, 1) == (int)gridDim.x - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  float sum = 0.f;
  for (unsigned zz = 0; zz < gridDim.x; ++zz) sum += part[zz * 64 + t];
  out[t] = sum;
  if (t == 0) *counter = 0;
}

int failures = 0;

// Runs one launch and checks the outcome: `want` empty means no hazard, else the message must
// contain every one of the strings it lists (separated by '|').
template <class... P, class... A>
void expect(const char* name, const std::string& want, void (*k)(P...), dim3 grid, dim3 block, size_t smem,
            A... args) {
  ::emu::launch(k, ::emu::Cfg(grid, block, smem, 0), args...);
  const cudaError_t e = cudaGetLastError();
  const std::string msg = e == cudaSuccess ? "" : ::emu::last_error_detail();
  bool ok = want.empty() ? e == cudaSuccess : e != cudaSuccess;
  if (ok && !want.empty()) {
    size_t from = 0;
    while (from <= want.size()) {
      const size_t bar = want.find('|', from);
      const std::string part = want.substr(from, bar == std::string::npos ? std::string::npos : bar - from);
      if (msg.find(part) == std::string::npos) ok = false;
      if (bar == std::string::npos) break;
      from = bar + 1;
    }
  }
  if (ok) {
    std::printf("ok %s%s%s\n", name, msg.empty() ? "" : ": ", msg.c_str());
  } else {
    ++failures;
    std::printf("FAIL %s: wanted %s, got %s\n", name, want.empty() ? "no hazard" : want.c_str(),
                msg.empty() ? "no hazard" : msg.c_str());
  }
}

}  // namespace

int main() {
  float* out = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&out), 1024 * sizeof(float));
  uint16_t* h = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&h), 64 * sizeof(uint16_t));

  expect("raw_shared", "hazard in (anonymous namespace)::raw_shared(float*, bool)|race_selftest.cpp:", raw_shared, 1, 64, 0, out, false);
  expect("raw_shared synced", "", raw_shared, 1, 64, 0, out, true);
  expect("war_shared", "hazard in (anonymous namespace)::war_shared", war_shared, 1, 64, 0, out, false);
  expect("war_shared synced", "", war_shared, 1, 64, 0, out, true);
  expect("waw_shared", "write-after-write hazard|static __shared__ memory at", waw_shared, 1, 64, 0, out, true);
  expect("waw_shared one writer", "", waw_shared, 1, 64, 0, out, false);
  expect("warp_shared", "hazard in (anonymous namespace)::warp_shared", warp_shared, 1, 32, 0, out, 0);
  expect("warp_shared __syncwarp", "", warp_shared, 1, 32, 0, out, 1);
  expect("warp_shared shuffle", "read-after-write hazard", warp_shared, 1, 32, 0, out, 2);
  expect("two_warps __syncwarp", "read-after-write hazard", two_warps, 1, 64, 0, out);
  expect("atomics", "", atomics, 1, 64, 0, out);
  expect("waw_global", "write-after-write hazard|global memory at", waw_global, 1, 64, 0, out, true);
  expect("waw_global distinct", "", waw_global, 1, 64, 0, out, false);
  expect("halves", "", halves, 1, 64, 0, h);
  expect("raw_dynamic", "hazard|dynamic shared memory byte", raw_dynamic, 1, 32, 32 * sizeof(float),
         out);
  // Blocks run one after another here and a grid's blocks never share a barrier: the same racy
  // kernel in several blocks reports once, and a clean kernel in many blocks stays clean.
  expect("raw_shared 4 blocks", "hazard in (anonymous namespace)::raw_shared", raw_shared, 4, 64, 0, out, false);
  expect("raw_shared synced 4 blocks", "", raw_shared, 4, 64, 0, out, true);
  float* part = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&part), 4 * 64 * sizeof(float));
  int* counter = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&counter), sizeof(int));
  cudaMemset(counter, 0, sizeof(int));
  // (a write-after-read where block 1 runs first)
  expect("cross_raw", "hazard between blocks|global memory at", cross_raw, 2, 64, 0, out);
  expect("cross_waw", "write-after-write hazard between blocks", cross_waw, 3, 64, 0, out);
  expect("cross_war", "hazard between blocks", cross_war, 3, 64, 0, part, out);
  expect("last_block_sums fenced", "", last_block_sums, 4, 64, 0, part, counter, out, true);
  expect("last_block_sums unfenced", "read-after-write hazard between blocks", last_block_sums, 4, 64, 0, part,
         counter, out, false);
  cudaFree(part);
  cudaFree(counter);
  cudaFree(out);
  cudaFree(h);
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
