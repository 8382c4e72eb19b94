// GEMM tuning harness (C++, outside the addon): times vitrim's sgemm, its micro-kernel alone and its
// packing routines, built straight from native/ sources so kernel variants can be compared without
// Node. Used to pick the shipped tile and blocking (bench/gemm-variants.md has the figures).
//
// Build (from the repository root; optionally `git apply bench/gemm-tune.patch` first, which makes
// the AVX-512 tile/blocking selectable with VITRIM_GEMM_TUNE=MRxNV:mc:kc:nc):
//   O=/tmp/vitrim-tune; mkdir -p $O; F="-O3 -std=c++17 -Inative/include"
//   g++ $F -c native/cpu/gemm_avx512.cpp -o $O/a512.o -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma
//   g++ $F -c native/cpu/gemm_avx2.cpp -o $O/a2.o -mavx2 -mfma
//   for f in native/cpu/gemm.cpp native/cpu/gemm_generic.cpp native/core/*.cpp; do
//     g++ $F -c $f -o $O/$(basename $f .cpp).o; done
//   g++ $F bench/gemm_tune.cpp $O/*.o -o $O/gemm_tune -lpthread
// Run:
//   $O/gemm_tune gemm [isa=auto] [threads=2] [reps=15]   GFLOP/s at the bench shapes, NN and NT;
//                                                          with threads=1 the time is thread CPU
//                                                          time (robust on a shared machine)
//   $O/gemm_tune kernel [isa=auto] [kc=512]               micro-kernel alone on L1/L2-resident panels
//   $O/gemm_tune pack [isa=auto]                          packing time for 1576x384 (A) / 384x1152 (B)
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../native/cpu/gemm_kernel.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

using namespace vitrim;

static double thread_cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double wall() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static const cpu::gemm::Kernel& kernel_for(const std::string& isa) {
#if defined(__x86_64__)
  if (isa == "avx512" || (isa == "auto" && std::string(cpu::gemm_isa()) == "avx512")) return cpu::gemm::kernel_avx512();
  if (isa == "avx2" || (isa == "auto" && std::string(cpu::gemm_isa()) == "avx2")) return cpu::gemm::kernel_avx2();
#endif
  return cpu::gemm::kernel_generic();
}

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "gemm";
  std::string isa = argc > 2 ? argv[2] : "auto";
  cpu::gemm_set_isa(isa);
  std::vector<float> buf;
  auto fill = [](std::vector<float>& v) {
    for (auto& x : v) x = rand() / (float)RAND_MAX - 0.5f;
  };
  if (mode == "gemm") {
    int threads = argc > 3 ? atoi(argv[3]) : 2, reps = argc > 4 ? atoi(argv[4]) : 15;
    set_num_threads(threads);
    long shapes[][3] = {{1576, 1152, 384}, {1576, 384, 1536}, {12608, 768, 192}};
    for (int tb = 0; tb < 2; ++tb) {
      for (auto& s : shapes) {
        long M = s[0], N = s[1], K = s[2];
        std::vector<float> A(M * K), B(K * N), C(M * N);
        fill(A);
        fill(B);
        std::vector<double> t;
        for (int r = 0; r < reps + 2; ++r) {
          double c0 = thread_cpu(), w0 = wall();
          cpu::sgemm(false, tb, M, N, K, 1.f, A.data(), K, B.data(), tb ? K : N, 0.f, C.data(), N);
          double d = threads == 1 ? thread_cpu() - c0 : wall() - w0;
          if (r >= 2) t.push_back(d);
        }
        std::sort(t.begin(), t.end());
        double f = 2.0 * M * N * K * 1e-9;
        std::printf("%s %s %ldx%ldx%ld %d thr: median %.1f best %.1f GFLOP/s\n", cpu::gemm_isa(), tb ? "NT" : "NN", M,
                    N, K, threads, f / t[t.size() / 2], f / t[0]);
      }
    }
  } else if (mode == "kernel") {
    const auto& kr = kernel_for(isa);
    long kc = argc > 3 ? atol(argv[3]) : 512;
    const int panels = 16;  // A panels per B panel, as in one MC block
    std::vector<float> A(kr.mr * kc * panels), B(kr.nr * kc), C(kr.mr * panels * kr.nr);
    fill(A);
    fill(B);
    for (int rep = 0; rep < 3; ++rep) {
      double t0 = thread_cpu();
      long calls = 0;
      for (int r = 0; r < 2000; ++r)
        for (int p = 0; p < panels; ++p, ++calls)
          kr.micro(kc, A.data() + p * kr.mr * kc, B.data(), C.data() + p * kr.mr * kr.nr, kr.nr, 1.f, 0.f, nullptr,
                   kr.mr, kr.nr);
      double t = thread_cpu() - t0;
      std::printf("%s micro-kernel %dx%d kc %ld: %.1f GFLOP/s\n", kr.isa, kr.mr, kr.nr, kc,
                  2.0 * kr.mr * kr.nr * kc * calls / t * 1e-9);
    }
  } else if (mode == "pack") {
    const auto& kr = kernel_for(isa);
    long M = 1576, K = 384, N = 1152;
    std::vector<float> A(M * K), B(K * N), out(M * K + N * K + 100000);
    fill(A);
    fill(B);
    for (int rep = 0; rep < 3; ++rep) {
      double t0 = thread_cpu();
      for (long i = 0; i < M; i += kr.mc) kr.pack_a(false, A.data() + i * K, K, std::min<long>(kr.mc, M - i), K, out.data());
      double t1 = thread_cpu();
      for (long i = 0; i < M; i += kr.mc) kr.pack_a(true, A.data() + i, M, std::min<long>(kr.mc, M - i), K, out.data());
      double t2 = thread_cpu();
      kr.pack_b(false, B.data(), N, N, K, out.data());
      double t3 = thread_cpu();
      kr.pack_b(true, B.data(), K, N, K, out.data());
      double t4 = thread_cpu();
      std::printf("%s pack A (N) %.3f ms, A (T) %.3f ms, B (N) %.3f ms, B (T) %.3f ms\n", kr.isa, (t1 - t0) * 1e3,
                  (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3);
    }
  } else {
    std::fprintf(stderr, "usage: gemm_tune gemm|kernel|pack [isa] ...\n");
    return 2;
  }
  return 0;
}
