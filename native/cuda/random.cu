// CUDA counterpart of cpu::random for the uniform / Gumbel / logistic / normal streams.
// Same Philox keying as native/include/vitrim/philox.h (seed, offset, logical element index), so a
// seed gives the same bytes on both devices. Compiled on every machine with nvcc; it is wired into
// the loadable CUDA backend by the CUDA issue and has not been run on a GPU yet.
#include <cstdint>

#include "vitrim/philox.h"

namespace vitrim::cuda {

enum class Dist : int { Uniform = 0, Normal = 1, Gumbel = 2, Logistic = 3 };

__global__ void random_kernel(float* out, int64_t n, int dist, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v;
    switch (dist) {
      case 1: v = philox_normal(seed, offset, (uint64_t)i); break;
      case 2: v = philox_gumbel(seed, offset, (uint64_t)i); break;
      case 3: v = philox_logistic(seed, offset, (uint64_t)i); break;
      default: v = philox_uniform(seed, offset, (uint64_t)i); break;
    }
    out[i] = v;
  }
}

cudaError_t random_launch(float* out, int64_t n, int dist, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int64_t blocks = (n + 255) / 256;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  random_kernel<<<(unsigned)blocks, 256, 0, stream>>>(out, n, dist, seed, offset);
  return cudaGetLastError();
}

}  // namespace vitrim::cuda
