// Thread pool: a job is (fn, n, chunk) and an atomic cursor hands out chunks; the calling thread
// works on the job too. One job at a time (a mutex serialises concurrent callers from different JS
// workers); nested calls from inside a job run inline on the caller.
//
// A forward pass issues hundreds of short parallel_for calls back to back, so the hand-offs are
// built to cost little both on an idle machine and on one shared with other processes:
//   - Workers that finish a job spin on the job generation for up to kSpinNs (pause, with a
//     sched_yield every ~64 pauses so that a spinning worker never holds a core that the caller
//     or another process is waiting for), then register as sleepers and wait on a condition
//     variable. The caller publishes a job by bumping the generation and takes the mutex to notify
//     only when a worker is registered as sleeping (the worker re-checks the generation under the
//     mutex after registering, so no wake-up is lost).
//   - The caller never waits for a worker that has not joined the job. A worker joins by
//     incrementing `active_` and then checking that the job is still open; the caller, once the
//     cursor is exhausted and its own chunks are done, closes the job and waits only for the
//     workers inside it (which are running chunks). Both sides use seq_cst on (active_, closed_),
//     so either the caller sees the joiner or the joiner sees the job closed and backs out without
//     touching it. A late or descheduled worker therefore costs the caller nothing; before this
//     the caller slept until every worker had woken and checked in (~6 us idle, up to a
//     scheduler slice on a loaded machine).
#include "vitrim/parallel.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace vitrim {
namespace {

thread_local bool t_in_job = false;

constexpr int64_t kSpinNs = 50000;  // how long an idle worker spins before it sleeps: 50 us

inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Pool {
 public:
  Pool() {
    int n = (int)std::thread::hardware_concurrency();
    if (const char* e = std::getenv("VITRIM_NUM_THREADS")) {
      int v = std::atoi(e);
      if (v > 0) n = v;
    }
    threads_ = n < 1 ? 1 : (n > 256 ? 256 : n);
  }
  ~Pool() { stop(); }

  int threads() const { return threads_; }
  void set_threads(int n) {
    std::lock_guard<std::mutex> job(job_mu_);
    stop();
    threads_ = n;
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (grain < 1) grain = 1;
    int64_t max_chunks = (n + grain - 1) / grain;
    if (t_in_job || threads_ == 1 || max_chunks <= 1) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> job(job_mu_);
    start();
    // The previous job is closed and active_ is 0 here: no worker reads the fields below until
    // closed_ is cleared, and that store publishes them.
    int64_t chunks = std::min<int64_t>(max_chunks, (int64_t)threads_ * 4);
    fn_ = &fn;
    n_ = n;
    chunk_ = (n + chunks - 1) / chunks;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    closed_.store(false, std::memory_order_seq_cst);
    generation_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    work();
    closed_.store(true, std::memory_order_seq_cst);
    for (int spins = 0; active_.load(std::memory_order_seq_cst) != 0; ++spins) {
      if ((spins & 63) == 63) std::this_thread::yield();
      else cpu_pause();
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    bool prev = t_in_job;
    t_in_job = true;
    for (;;) {
      int64_t b = next_.fetch_add(chunk_);
      if (b >= n_) break;
      int64_t e = std::min(n_, b + chunk_);
      try {
        (*fn_)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    t_in_job = prev;
  }

  // Waits until the generation differs from `seen` or the pool quits; returns the generation.
  uint64_t await_job(uint64_t seen) {
    const int64_t t0 = now_ns();
    for (int spins = 1;; ++spins) {
      const uint64_t g = generation_.load(std::memory_order_acquire);
      if (g != seen || quit_.load(std::memory_order_acquire)) return g;
      if ((spins & 63) == 0) {
        if (now_ns() - t0 > kSpinNs) break;
        std::this_thread::yield();
      } else {
        cpu_pause();
      }
    }
    std::unique_lock<std::mutex> lk(mu_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    cv_.wait(lk, [&] {
      return generation_.load(std::memory_order_seq_cst) != seen || quit_.load(std::memory_order_acquire);
    });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return generation_.load(std::memory_order_acquire);
  }

  void start() {
    if (!workers_.empty() || threads_ <= 1) return;
    quit_.store(false);
    const uint64_t g0 = generation_.load();
    for (int i = 1; i < threads_; ++i) {
      workers_.emplace_back([this, g0] {
        uint64_t seen = g0;
        for (;;) {
          seen = await_job(seen);
          if (quit_.load(std::memory_order_acquire)) return;
          active_.fetch_add(1, std::memory_order_seq_cst);
          if (!closed_.load(std::memory_order_seq_cst)) work();
          active_.fetch_sub(1, std::memory_order_seq_cst);
        }
      });
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex job_mu_, mu_, err_mu_;
  std::condition_variable cv_;
  std::atomic<bool> quit_{false}, closed_{true};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0}, sleepers_{0};
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int num_threads() { return pool().threads(); }
void set_num_threads(int n) { pool().set_threads(n < 1 ? 1 : (n > 256 ? 256 : n)); }
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  pool().run(n, grain, fn);
}

}  // namespace vitrim
