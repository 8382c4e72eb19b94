// CPU inference tuning harness (C++, outside the addon): times single ops of a DeiT-Tiny block at a
// batch size by thread CPU time on ONE thread (min over many short rounds, which filters out rounds
// disturbed by other jobs on a shared machine), or by wall time on the pool. Links the object files
// of an existing build, so the library must be built first (npx cmake-js compile ...).
// Build (repository root):
//   O=build/CMakeFiles/vitrim.dir/native; g++ -O3 -std=c++17 -Inative/include bench/infer_tune.cpp \
//     $O/cpu/*.o $O/core/*.o -o /tmp/infer_tune -lpthread
// Run: /tmp/infer_tune [batch=8] [threads=1] [filter]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "vitrim/ops.h"
#include "vitrim/parallel.h"

using namespace vitrim;

// Built with -DVITRIM_TUNE_UNFUSED against a library without linear_fused (e.g. the commit before
// it), the fused cases run as the unfused composition instead, for before/after figures.
#ifdef VITRIM_TUNE_UNFUSED
namespace vitrim::cpu {
enum class Activation { None, Gelu };
static Tensor linear_fused(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, Activation act,
                           const std::optional<Tensor>& res) {
  Tensor y = linear_forward(x, w, b);
  if (act == Activation::Gelu) y = unary(UnaryOp::Gelu, y);
  if (res) y = binary(BinaryOp::Add, y, *res);
  return y;
}
}  // namespace vitrim::cpu
#endif

static double thread_cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static Tensor rnd(const Shape& s, float scale, uint32_t seed) {
  Tensor t = empty(s, DType::F32);
  float* p = t.f32();
  uint32_t z = seed * 2654435761u + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    z = z * 1103515245u + 12345u;
    p[i] = ((z >> 8) * (1.f / 16777216.f) * 2.f - 1.f) * scale;
  }
  return t;
}

int main(int argc, char** argv) {
  const int64_t B = argc > 1 ? std::atoi(argv[1]) : 8;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::string filter = argc > 3 ? argv[3] : "";
  set_num_threads(threads);
  const int64_t N = 197, C = 192, H = 3, F = 768, M = B * N;
  Tensor x = rnd({B, N, C}, 1, 1), xh = rnd({B, N, F}, 1, 2), qkv = rnd({B, N, 3 * C}, 1, 3);
  Tensor wqkv = rnd({3 * C, C}, 0.05f, 4), bqkv = rnd({3 * C}, 0.1f, 5), wp = rnd({C, C}, 0.05f, 6), bp = rnd({C}, 0.1f, 7);
  Tensor w1 = rnd({F, C}, 0.05f, 8), b1 = rnd({F}, 0.1f, 9), w2 = rnd({C, F}, 0.05f, 10), b2 = rnd({C}, 0.1f, 11);
  Tensor lw = rnd({C}, 1, 12), lb = rnd({C}, 1, 13);
  // "cold" cases cycle through 12 copies of the weights (DeiT-Tiny's depth): ~21 MB, as in a forward
  // pass, where each layer's weights come from L3 or memory rather than L2.
  std::vector<Tensor> cq, cp, c1, c2;
  for (int i = 0; i < 12; ++i) {
    cq.push_back(rnd({3 * C, C}, 0.05f, 100 + i));
    cp.push_back(rnd({C, C}, 0.05f, 200 + i));
    c1.push_back(rnd({F, C}, 0.05f, 300 + i));
    c2.push_back(rnd({C, F}, 0.05f, 400 + i));
  }
  int ci = 0;
  struct Case {
    const char* name;
    double flops;
    std::function<void()> fn;
  };
  std::vector<Case> cases = {
      {"linear qkv", 2.0 * M * C * 3 * C, [&] { cpu::linear_forward(x, wqkv, bqkv); }},
      {"linear proj+res", 2.0 * M * C * C, [&] { cpu::linear_fused(x, wp, bp, cpu::Activation::None, x); }},
      {"linear fc1+gelu", 2.0 * M * C * F, [&] { cpu::linear_fused(x, w1, b1, cpu::Activation::Gelu, std::nullopt); }},
      {"linear fc1", 2.0 * M * C * F, [&] { cpu::linear_forward(x, w1, b1); }},
      {"linear fc2+res", 2.0 * M * F * C, [&] { cpu::linear_fused(xh, w2, b2, cpu::Activation::None, x); }},
      {"cold block linears", 2.0 * M * C * (3 * C + C + 2 * F),
       [&] {
         ci = (ci + 1) % 12;
         cpu::linear_forward(x, cq[ci], bqkv);
         cpu::linear_fused(x, cp[ci], bp, cpu::Activation::None, x);
         cpu::linear_fused(x, c1[ci], b1, cpu::Activation::Gelu, std::nullopt);
         cpu::linear_fused(xh, c2[ci], b2, cpu::Activation::None, x);
       }},
      {"hot block linears", 2.0 * M * C * (3 * C + C + 2 * F),
       [&] {
         cpu::linear_forward(x, wqkv, bqkv);
         cpu::linear_fused(x, wp, bp, cpu::Activation::None, x);
         cpu::linear_fused(x, w1, b1, cpu::Activation::Gelu, std::nullopt);
         cpu::linear_fused(xh, w2, b2, cpu::Activation::None, x);
       }},
      {"attention", 4.0 * B * H * N * N * 64, [&] { cpu::attention_forward(qkv, H, 0.125, std::nullopt, std::nullopt, 0); }},
      {"gelu", 0, [&] { cpu::unary(cpu::UnaryOp::Gelu, xh); }},
      {"layernorm", 0, [&] { cpu::layernorm_forward(x, lw, lb, 1e-6); }},
  };
  for (auto& c : cases) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    for (int i = 0; i < 3; ++i) c.fn();
    double best_cpu = 1e9, best_wall = 1e9;
    const double t_end = wall() + 1.5;
    int rounds = 0;
    while (wall() < t_end || rounds < 5) {
      const double c0 = thread_cpu(), w0 = wall();
      c.fn();
      best_cpu = std::min(best_cpu, thread_cpu() - c0);
      best_wall = std::min(best_wall, wall() - w0);
      ++rounds;
    }
    const double t = threads == 1 ? best_cpu : best_wall;
    std::printf("%-16s %8.3f ms  %s", c.name, t * 1e3, threads == 1 ? "(thread cpu, min)" : "(wall, min)");
    if (c.flops > 0) std::printf("  %6.1f GFLOP/s", c.flops / t * 1e-9);
    std::printf("  [%d rounds]\n", rounds);
  }
}
