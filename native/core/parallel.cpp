// Thread pool: workers sleep on a condition variable; a job is (fn, n, chunk) and an atomic cursor
// hands out chunks. One job at a time (a mutex serialises concurrent callers from different JS
// workers); nested calls from inside a job run inline on the caller.
#include "vitrim/parallel.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace vitrim {
namespace {

thread_local bool t_in_job = false;

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
    int64_t chunks = std::min<int64_t>(max_chunks, (int64_t)threads_ * 4);
    fn_ = &fn;
    n_ = n;
    chunk_ = (n + chunks - 1) / chunks;
    next_.store(0);
    error_ = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      pending_ = (int)workers_.size();
      ++generation_;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
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
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    t_in_job = prev;
  }

  void start() {
    if (!workers_.empty() || threads_ <= 1) return;
    quit_ = false;
    for (int i = 1; i < threads_; ++i) {
      workers_.emplace_back([this] {
        uint64_t seen = 0;
        for (;;) {
          {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
            if (quit_) return;
            seen = generation_;
          }
          work();
          std::lock_guard<std::mutex> lk(mu_);
          if (--pending_ == 0) done_cv_.notify_all();
        }
      });
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex job_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  bool quit_ = false;
  uint64_t generation_ = 0;
  int pending_ = 0;
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
