// GEMM family on the CPU: sgemm (row-major, optional transposes), batched matmul, linear fwd/bwd.
//
// sgemm is a BLIS/GotoBLAS-style driver over a run-time chosen micro-kernel (gemm_kernel.h):
//   for jc in N step NC:                      (B block kc x nc lives in L3)
//     for pc in K step KC:                    (beta applies on the first pc block only)
//       for row chunks of C (parallel):       first, all threads together pack op(B)[pc.., jc..]
//                                             into NR-column panels; each chunk packs its own
//                                             MC x kc A block (L2)
//         for jr over NR panels: for ir over MR panels: micro-kernel (kc x NR B panel stays in L1/L2)
// Threading splits the rows of C ("row mode"; the B block is packed cooperatively by the threads at
// the start of the same parallel region). When C has too few rows to share, the A block is
// packed once and the columns are split instead ("column mode": each chunk packs its own B panels).
// Below kMinParallelMacs the whole GEMM stays on the calling thread. Results do not depend on the
// thread count: every C element sees the same kc blocks in the same order.
// Called from inside a parallel_for, every parallel_for here runs inline: the same code is then a
// serial GEMM, which is what attention relies on when it calls sgemm per (batch, head).
// Pack buffers are thread-local and only grow; the B block belongs to the calling thread and the A
// blocks to whichever thread runs the chunk, so nested and concurrent callers never share one.
//
// linear_forward folds the bias into the micro-kernel's store (no separate pass over y); linear_fused
// (inference) also runs GELU and/or a residual add on each row block of C right after its last K
// block;
// linear_backward reduces gbias in float64 partial sums over row blocks; matmul runs batches
// in parallel (each GEMM serial) when there are enough of them, else one threaded GEMM at a time.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gemm_kernel.h"
#include "vitrim/cpuinfo.h"
#include "vitrim/op_args.h"
#include "vitrim/ops.h"
#include "vitrim/parallel.h"

namespace vitrim::cpu {
namespace {

using gemm::Kernel;
using gemm::active_kernel;

const Kernel& cpuid_kernel() {
#if defined(__x86_64__) || defined(_M_X64)
  if (cpu_has_avx512f()) return gemm::kernel_avx512();
  if (cpu_has_avx2_fma()) return gemm::kernel_avx2();
#endif
  return gemm::kernel_generic();
}

std::atomic<const Kernel*> g_kernel{nullptr};  // set by gemm_set_isa; null = the CPUID choice


// 64-byte aligned scratch that only grows (one per thread and role).
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      VITRIM_CHECK(p, Memory, "sgemm: could not allocate ", bytes, " bytes of packing scratch");
      cap = n;
    }
    return p;
  }
};
thread_local Scratch t_apack, t_bpack;

// Below this many multiply-adds a GEMM runs on the calling thread: waking the pool costs more.
// Measured on the 2-vCPU dev VM: 128^3 (2M) 42 us serial / 55 us on 2 threads, 160^3 (4M) even,
// 192^3 (6.8M) 132 / 123 us, 384^3 1.1 ms / 0.69 ms.
constexpr double kMinParallelMacs = 1 << 22;
// Busy-wait step for the short waits of cooperative packing: pause, and after a while let the OS
// run something else (a descheduled packer on a loaded machine).
inline void cpu_relax(int spins) {
  if (spins < 4096) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    std::this_thread::yield();
  }
}

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  parallel_for(M, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(N, 1)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* c = C + m * ldc;
      if (beta == 0.f) std::memset(c, 0, sizeof(float) * N);
      else if (beta != 1.f)
        for (int64_t n = 0; n < N; ++n) c[n] *= beta;
    }
  });
}

// What the fused linear does to C after the bias: GELU, then add a residual matrix R (same layout as
// C, leading dimension ldr: element (i, j) of C gets R[i, j]). Applied to each row block of C as soon
// as its last K block is done (by the thread that computed it, while the block is still in L2), in
// long contiguous row loops: per 12 x 32 tile it measured 25% slower (the latency-bound GELU chain
// restarts every 24 vectors).
struct Epilogue {
  const float* res = nullptr;
  int64_t ldr = 0;
  bool gelu = false;
  bool any() const { return res || gelu; }
  // The m x n block at c, whose element (0, 0) is C's (i, j).
  void apply(const Kernel& kr, float* c, int64_t ldc, int64_t m, int64_t n, int64_t i, int64_t j) const {
    if (gelu) kr.gelu_rows(c, ldc, m, n);
    if (res)
      for (int64_t r = 0; r < m; ++r) {
        float* __restrict cr = c + r * ldc;
        const float* __restrict rr = res + (i + r) * ldr + j;
        for (int64_t k = 0; k < n; ++k) cr[k] += rr[k];
      }
  }
};

// The macro-kernel: C[mlen x ncols] (+)= alpha * Ap Bp over packed blocks.
void macro(const Kernel& kr, int64_t kc, const float* ap, int64_t mlen, const float* bp, int64_t ncols, float* c,
           int64_t ldc, float alpha, float beta, const float* bias) {
  const int64_t MR = kr.mr, NR = kr.nr;
  for (int64_t jr = 0; jr < ncols; jr += NR) {
    const int n = (int)std::min(NR, ncols - jr);
    const float* bpanel = bp + (jr / NR) * NR * kc;
    for (int64_t ir = 0; ir < mlen; ir += MR) {
      const int m = (int)std::min(MR, mlen - ir);
      kr.micro(kc, ap + (ir / MR) * MR * kc, bpanel, c + ir * ldc + jr, ldc, alpha, beta, bias ? bias + jr : nullptr,
               m, n);
    }
  }
}

// op(B) already packed by `kr` for every K block: block pc (of KC) starts at data + NRp * pc, with
// NRp = ceil(N / NR) * NR, and holds the panels of all N columns (so N <= NC: a single jc block).
struct Prepacked {
  const Kernel* kr = nullptr;
  const float* data = nullptr;
};

// sgemm plus an optional per-column bias added to C (with the first K block, so exactly once), an
// optional epilogue (with the last K block) and an optional pre-packed B.
void sgemm_bias(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias,
                const Epilogue& epi = Epilogue(), const Prepacked& pre = Prepacked()) {
  VITRIM_CHECK(M >= 0 && N >= 0 && K >= 0, Argument, "sgemm: negative size M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  VITRIM_CHECK(C && ldc >= N, Argument, "sgemm: C is null or ldc=", ldc, " < N=", N);
  if (K == 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    if (bias)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) C[m * ldc + n] += bias[n];
    if (epi.any()) epi.apply(active_kernel(), C, ldc, M, N, 0, 0);
    return;
  }
  VITRIM_CHECK(A && B, Argument, "sgemm: A or B is null");
  VITRIM_CHECK(lda >= (transA ? M : K) && ldb >= (transB ? K : N), Argument, "sgemm: leading dimension too small: lda=",
               lda, " ldb=", ldb, " for M=", M, " N=", N, " K=", K);

  const Kernel& kr = pre.kr ? *pre.kr : active_kernel();
  const int64_t MR = kr.mr, NR = kr.nr;
  const int64_t MC = kr.mc, KC = kr.kc, NC = kr.nc;
  VITRIM_CHECK(!pre.data || N <= NC, Internal, "sgemm: a pre-packed B must fit one column block");
  const int threads = num_threads();
  const bool par = threads > 1 && (double)M * N * K >= kMinParallelMacs;
  const int64_t m_units = (M + MR - 1) / MR;
  // Row mode needs enough MR panels to give every thread a few; otherwise split columns.
  const bool row_mode = !par || m_units >= 3 * threads || (N + NR - 1) / NR < m_units;

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t n_units = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.f;
      const float* bias_k = pc == 0 && bias ? bias + jc : nullptr;
      const bool epi_k = pc + kc == K && epi.any();
      // Element (0, pc) of op(A) and (pc, jc) of op(B); row i / column j offsets from there:
      const float* a0 = transA ? A + pc * lda : A + pc;
      const float* b0 = transB ? B + jc * ldb + pc : B + pc * ldb + jc;
      auto a_row = [&](int64_t i) { return transA ? a0 + i : a0 + i * lda; };
      auto b_col = [&](int64_t j) { return transB ? b0 + j * ldb : b0 + j; };
      float* c0 = C + jc;

      if (row_mode) {
        // Every row chunk needs the whole packed B block. The threads pack it together at the start
        // of their first chunk: each claims NR-column panels from a counter until none are left,
        // then waits until all claimed panels are done (each claim is held by a thread that is
        // running and packing, so the wait always ends). One pool wake-up instead of two, and no
        // serial packing of the weight while the other threads idle.
        const int64_t ready = pre.data ? n_units : 0;
        const float* bp = pre.data ? pre.data + n_units * NR * pc : t_bpack.get((size_t)(n_units * NR * kc));
        float* bw = const_cast<float*>(bp);  // written only when not pre-packed (ready == 0)
        std::atomic<int64_t> next_panel{ready}, packed{ready};
        auto ensure_packed = [&] {
          for (int64_t u; (u = next_panel.fetch_add(1, std::memory_order_relaxed)) < n_units;) {
            kr.pack_b(transB, b_col(u * NR), ldb, std::min(NR, nc - u * NR), kc, bw + u * NR * kc);
            packed.fetch_add(1, std::memory_order_release);
          }
          for (int spins = 0; packed.load(std::memory_order_acquire) < n_units; ++spins) cpu_relax(spins);
        };
        parallel_for(m_units, par ? 1 : m_units, [&](int64_t u0, int64_t u1) {
          ensure_packed();
          const int64_t i_end = std::min(M, u1 * MR);
          float* ap = t_apack.get((size_t)(std::min(MC, i_end - u0 * MR) + MR) * kc);
          for (int64_t i = u0 * MR; i < i_end; i += MC) {
            const int64_t mlen = std::min(MC, i_end - i);
            kr.pack_a(transA, a_row(i), lda, mlen, kc, ap);
            macro(kr, kc, ap, mlen, bp, nc, c0 + i * ldc, ldc, alpha, beta_k, bias_k);
            if (epi_k) epi.apply(kr, c0 + i * ldc, ldc, mlen, nc, i, jc);
          }
        });
      } else {
        float* ap = t_apack.get((size_t)(m_units * MR * kc));
        kr.pack_a(transA, a_row(0), lda, M, kc, ap);
        parallel_for(n_units, 1, [&](int64_t u0, int64_t u1) {
          const int64_t j_end = std::min(nc, u1 * NR);
          const float* bp;
          if (pre.data) {
            bp = pre.data + n_units * NR * pc + u0 * NR * kc;
          } else {
            float* b = t_bpack.get((size_t)((u1 - u0) * NR * kc));
            kr.pack_b(transB, b_col(u0 * NR), ldb, j_end - u0 * NR, kc, b);
            bp = b;
          }
          macro(kr, kc, ap, M, bp, j_end - u0 * NR, c0 + u0 * NR, ldc, alpha, beta_k,
                bias_k ? bias_k + u0 * NR : nullptr);
          if (epi_k) epi.apply(kr, c0 + u0 * NR, ldc, M, j_end - u0 * NR, 0, jc + u0 * NR);
        });
      }
    }
  }
}

// ---- Packed-weight cache of linear_fused (inference) ----
// A linear layer's weight W [N, K] is op(B) transposed, and packing it (a transpose into NR-column
// panels) is a pass over W that in a forward pass comes from L3 or memory: at batch 1 it measured
// 5-9 % of a DeiT-Tiny forward. linear_fused therefore keeps W packed, per weight storage, and
// reuses the packed copy while the storage is unchanged: entries are keyed by Storage::uid (unique
// for the process) and valid while Storage::version equals the version read before packing (every
// in-place writer bumps it, tensor.h). Bounded by VITRIM_PACK_CACHE_MB (default 1024; 0 disables),
// least recently used first out; entries of freed storages are dropped on the next miss or by
// clear_linear_cache(). The packed bytes are not storages, so memory_stats does not count them.
struct PackedWeight {
  std::weak_ptr<Storage> owner;
  uint64_t version = 0, last_use = 0;
  const Kernel* kr = nullptr;
  const float* src = nullptr;
  int64_t N = 0, K = 0;
  std::shared_ptr<float> data;
  size_t bytes = 0;
};

class PackCache {
 public:
  PackCache() {
    double mb = 1024;
    if (const char* e = std::getenv("VITRIM_PACK_CACHE_MB")) mb = std::atof(e);
    limit_ = mb > 0 ? (size_t)(mb * 1024 * 1024) : 0;
  }
  size_t limit() const { return limit_; }

  std::shared_ptr<float> find(const Tensor& w, const Kernel& kr) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = map_.find(w.storage->uid);
    if (it == map_.end()) return nullptr;
    PackedWeight& e = it->second;
    if (e.kr != &kr || e.src != w.f32() || e.N != w.size(0) || e.K != w.size(1) ||
        e.version != w.storage->version.load(std::memory_order_acquire))
      return nullptr;
    e.last_use = ++tick_;
    return e.data;
  }

  void insert(const Tensor& w, const Kernel& kr, uint64_t version, std::shared_ptr<float> data, size_t bytes) {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = map_.begin(); it != map_.end();)
      if (it->second.owner.expired()) it = erase(it);
      else ++it;
    if (auto it = map_.find(w.storage->uid); it != map_.end()) erase(it);
    while (total_ + bytes > limit_ && !map_.empty()) {
      auto lru = map_.begin();
      for (auto it = map_.begin(); it != map_.end(); ++it)
        if (it->second.last_use < lru->second.last_use) lru = it;
      erase(lru);
    }
    if (total_ + bytes > limit_) return;
    PackedWeight& e = map_[w.storage->uid];
    e.owner = w.storage;
    e.version = version;
    e.last_use = ++tick_;
    e.kr = &kr;
    e.src = w.f32();
    e.N = w.size(0);
    e.K = w.size(1);
    e.data = std::move(data);
    e.bytes = bytes;
    total_ += bytes;
  }

  void clear() {
    std::lock_guard<std::mutex> lk(mu_);
    map_.clear();
    total_ = 0;
  }

  std::pair<int64_t, int64_t> stats() {
    std::lock_guard<std::mutex> lk(mu_);
    return {(int64_t)map_.size(), (int64_t)total_};
  }

 private:
  std::unordered_map<uint64_t, PackedWeight>::iterator erase(std::unordered_map<uint64_t, PackedWeight>::iterator it) {
    total_ -= it->second.bytes;
    return map_.erase(it);
  }
  std::mutex mu_;
  std::unordered_map<uint64_t, PackedWeight> map_;
  size_t total_ = 0, limit_ = 0;
  uint64_t tick_ = 0;
};

PackCache& pack_cache() {
  static PackCache* c = new PackCache();  // never destroyed: calls may come during static teardown
  return *c;
}

// W [N, K] packed as op(B) = W^T for kr, every K block (layout of Prepacked), panels in parallel.
std::shared_ptr<float> pack_weight(const Kernel& kr, const float* w, int64_t N, int64_t K, size_t& bytes) {
  const int64_t NR = kr.nr, KC = kr.kc, n_units = (N + NR - 1) / NR, n_blocks = (K + KC - 1) / KC;
  bytes = ((size_t)(n_units * NR * K) * sizeof(float) + 63) / 64 * 64;
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  VITRIM_CHECK(p, Memory, "linear_fused: could not allocate ", bytes, " bytes for a packed weight");
  std::shared_ptr<float> data(p, [](float* q) { std::free(q); });
  parallel_for(n_blocks * n_units, std::max<int64_t>(1, (1 << 16) / (NR * std::min(KC, K))),
               [&](int64_t t0, int64_t t1) {
                 for (int64_t t = t0; t < t1; ++t) {
                   const int64_t pc = (t / n_units) * KC, u = t % n_units;
                   const int64_t kc = std::min(KC, K - pc);
                   kr.pack_b(true, w + u * NR * K + pc, K, std::min(NR, N - u * NR), kc,
                             p + n_units * NR * pc + u * NR * kc);
                 }
               });
  return data;
}

}  // namespace

void clear_linear_cache() { pack_cache().clear(); }
std::pair<int64_t, int64_t> linear_cache_stats() { return pack_cache().stats(); }

namespace gemm {
const Kernel& active_kernel() {
  const Kernel* k = g_kernel.load(std::memory_order_relaxed);
  return k ? *k : cpuid_kernel();
}
}  // namespace gemm

const char* gemm_isa() { return active_kernel().isa; }

void gemm_set_isa(const std::string& isa) {
  if (isa.empty() || isa == "auto") {
    g_kernel.store(nullptr);
    return;
  }
  const Kernel* k = nullptr;
  if (isa == "generic") k = &gemm::kernel_generic();
#if defined(__x86_64__) || defined(_M_X64)
  else if (isa == "avx2" && cpu_has_avx2_fma()) k = &gemm::kernel_avx2();
  else if (isa == "avx512" && cpu_has_avx512f()) k = &gemm::kernel_avx512();
#endif
  VITRIM_CHECK(k, Argument, "gemm_set_isa: '", isa, "' is not available here (CPU: ", cpu_isa(),
               "); expected generic|avx2|avx512|auto");
  g_kernel.store(k);
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_bias(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool transA, bool transB) {
  check_f32_cpu(a, "a");
  check_f32_cpu(b, "b");
  const MatmulPlan plan = plan_matmul(a, b, transA, transB);
  const int64_t M = plan.M, N = plan.N, K = plan.K, nb = plan.batch;
  const bool shared_b = plan.shared_b;
  const Shape& os = plan.out;
  Tensor c = empty(os, DType::F32);
  if (c.numel() == 0) return c;
  const int64_t lda = a.size(-1), ldb = b.size(-1);
  const float* A = a.f32();
  const float* B = b.f32();
  float* C = c.f32();
  // Shared b with a non-transposed a: the batch is one tall GEMM ([nb*M, K] x [K, N]).
  if (shared_b && !transA) {
    sgemm(false, transB, nb * M, N, K, 1.f, A, lda, B, ldb, 0.f, C, N);
    return c;
  }
  auto one = [&](int64_t i) {
    sgemm(transA, transB, M, N, K, 1.f, A + i * M * K, lda, B + (shared_b ? 0 : i * K * N), ldb, 0.f, C + i * M * N, N);
  };
  // Many GEMMs (attention's batch x heads), ones too small to thread, or a count the threads divide:
  // one whole GEMM per task, each serial inside. Otherwise one after the other, each threaded.
  const int threads = num_threads();
  const bool each_small = (double)M * N * K < kMinParallelMacs;
  if (nb >= 4 * threads || (nb >= 2 && (each_small || nb % threads == 0))) {
    parallel_for(nb, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) one(i);
    });
  } else {
    for (int64_t i = 0; i < nb; ++i) one(i);
  }
  return c;
}

static void check_linear(const Tensor& x, const Tensor& w, const char* op) {
  check_f32_cpu(x, "x");
  check_f32_cpu(w, "weight");
  check_rank(w, 2, "weight");
  VITRIM_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), Shape, op, ": x ", shape_str(x.shape),
               " does not match weight ", shape_str(w.shape), " (last dim of x must equal weight.shape[1])");
}

Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias) {
  check_linear(x, w, "linear");
  int64_t N = w.size(0), K = w.size(1);
  int64_t M = K ? x.numel() / K : shape_numel(Shape(x.shape.begin(), x.shape.end() - 1));
  if (bias) {
    check_f32_cpu(*bias, "bias");
    check_shape(*bias, {N}, "bias");
  }
  Shape os = x.shape;
  os.back() = N;
  Tensor y = empty(os, DType::F32);
  if (y.numel() == 0) return y;
  sgemm_bias(false, true, M, N, K, 1.f, x.f32(), K, w.f32(), K, 0.f, y.f32(), N, bias ? bias->f32() : nullptr);
  return y;
}

Tensor linear_fused(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias, Activation act,
                    const std::optional<Tensor>& residual) {
  check_linear(x, w, "linear_fused");
  VITRIM_CHECK(act == Activation::None || act == Activation::Gelu, Argument, "linear_fused: unknown activation");
  int64_t N = w.size(0), K = w.size(1);
  int64_t M = shape_numel(Shape(x.shape.begin(), x.shape.end() - 1));
  if (bias) {
    check_f32_cpu(*bias, "bias");
    check_shape(*bias, {N}, "bias");
  }
  Shape os = x.shape;
  os.back() = N;
  if (residual) {
    check_f32_cpu(*residual, "residual");
    check_shape(*residual, os, "residual");
  }
  Tensor y = empty(os, DType::F32);
  if (y.numel() == 0) return y;
  Epilogue epi;
  epi.gelu = act == Activation::Gelu;
  if (residual) {
    epi.res = residual->f32();
    epi.ldr = N;
  }
  const Kernel& kr = active_kernel();
  Prepacked pre;
  std::shared_ptr<float> packed;
  if (K > 0 && N <= kr.nc && pack_cache().limit() > 0) {
    packed = pack_cache().find(w, kr);
    if (!packed) {
      // The version is read before the data: a write that lands during packing leaves the entry stale.
      const uint64_t version = w.storage->version.load(std::memory_order_acquire);
      size_t bytes = 0;
      packed = pack_weight(kr, w.f32(), N, K, bytes);
      pack_cache().insert(w, kr, version, packed, bytes);
    }
    pre.kr = &kr;
    pre.data = packed.get();
  }
  sgemm_bias(false, true, M, N, K, 1.f, x.f32(), K, w.f32(), K, 0.f, y.f32(), N, bias ? bias->f32() : nullptr, epi,
             pre);
  return y;
}

std::tuple<Tensor, Tensor, std::optional<Tensor>> linear_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                                                  bool need_bias) {
  check_linear(x, w, "linear_backward");
  check_f32_cpu(gy, "gy");
  int64_t N = w.size(0), K = w.size(1);
  int64_t M = shape_numel(Shape(x.shape.begin(), x.shape.end() - 1));
  Shape gs = x.shape;
  gs.back() = N;
  check_shape(gy, gs, "gy");
  Tensor gx = empty(x.shape, DType::F32);
  if (gx.numel()) sgemm(false, false, M, K, N, 1.f, gy.f32(), N, w.f32(), K, 0.f, gx.f32(), K);
  Tensor gw = empty(w.shape, DType::F32);
  if (gw.numel()) sgemm(true, false, N, K, M, 1.f, gy.f32(), N, x.f32(), K, 0.f, gw.f32(), K);
  std::optional<Tensor> gb;
  if (need_bias) {
    gb = empty({N}, DType::F32);
    const float* g = gy.f32();
    float* o = gb->f32();
    // Row blocks, each summed into its own float64 partial row (M can be ~10^4 rows; the inner loop
    // runs along contiguous columns), then the partials are added up.
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(4 * num_threads(), M * N / (1 << 15)));
    std::vector<double> part((size_t)(blocks * N), 0.0);
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double* acc = part.data() + b * N;
        for (int64_t m = b * M / blocks, m_end = (b + 1) * M / blocks; m < m_end; ++m) {
          const float* row = g + m * N;
          for (int64_t n = 0; n < N; ++n) acc[n] += row[n];
        }
      }
    });
    for (int64_t n = 0; n < N; ++n) {
      double s = 0.0;
      for (int64_t b = 0; b < blocks; ++b) s += part[(size_t)(b * N + n)];
      o[n] = (float)s;
    }
  }
  return {gx, gw, gb};
}

}  // namespace vitrim::cpu
