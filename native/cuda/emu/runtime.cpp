// The CPU side of the CUDA emulation (see emu.h): fibers for the threads of a block, barriers and
// warp collectives between them, the subset of the CUDA runtime API the backend calls (memory is
// host memory; copies are memcpy; one in-order stream; graph capture records launches and copies),
// and a naive cuBLASLt (double-precision accumulation) behind the declarations of cublaslt_api.h.
// Nothing here is fast: it exists so that test/cuda can run without a GPU.
#include <dlfcn.h>
#include <link.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "../cublaslt_api.h"
#include "emu.h"

#undef warpSize  // cudaDeviceProp has a field of that name

namespace emu {

namespace {
constexpr size_t kStack = 256 * 1024;
constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kMaxSmem = 227 * 1024;  // an H100's opt-in maximum per block

enum class State { Ready, AtBarrier, AtWarp, Done };

// A fiber's saved context. On x86-64 (outside AddressSanitizer builds, whose stack bookkeeping
// follows swapcontext) a switch saves the callee-saved registers and the FPU / SSE control words on
// the fiber's own stack and swaps stack pointers (emu_switch below): no system call, where glibc's
// swapcontext makes one (sigprocmask) each way, the emulation's largest single cost.
// -DVITRIM_EMU_UCONTEXT=1 keeps swapcontext (to compare, or to rule the switch out).
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(VITRIM_EMU_UCONTEXT)
#define VITRIM_EMU_ASM_SWITCH 1
struct Context {
  void* sp = nullptr;
};
#else
struct Context {
  ucontext_t uc;
};
#endif

struct Fiber {
  Context ctx;
  char* stack = nullptr;
  State state = State::Ready;
  Lane lane{};
  unsigned linear = 0;      // thread index within the block
  unsigned warp_mask = 0;   // mask of the collective this fiber waits in
  uint64_t warp_gen = 0;    // which collective (per-warp sequence number)
  bool warp_is_sync = false;  // the collective it waits in is __syncwarp (orders memory; shuffles do not)
  uint32_t fences = 0;        // __threadfence()s made (the race check)
  struct Copy {
    void* dst;
    const void* src;
    int src_size;
  };
  std::vector<Copy> cp_open;                 // cp.async copies not yet committed
  std::vector<std::vector<Copy>> cp_groups;  // committed, not yet waited for (oldest first)
};

struct Warp {
  uint64_t gen = 0;             // collectives completed
  uint32_t syncs = 0;           // __syncwarp()s completed (the race check's intra-warp ordering)
  uint64_t slots[2][32] = {};   // published values, double-buffered by gen parity
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Context sched;
  Fiber* running = nullptr;
  dim3 bdim, gdim;
  std::vector<unsigned char> smem;
  const std::function<void()>* body = nullptr;
  const void* kernel = nullptr;
  std::string error;
};

Block* g_block = nullptr;
Lane g_host_lane{};  // threadIdx/blockIdx outside a kernel (never meaningful; avoids a null deref)
dim3 g_host_dim(1, 1, 1);

// ---- race check (libvitrim_cuda_emu_race.so; VITRIM_EMU_RACE) ----
// The stand-in for compute-sanitizer's racecheck where no GPU is: the kernel sources of that library
// are compiled with GCC's -fsanitize=thread instrumentation, which calls __tsan_readN/__tsan_writeN
// before every memory access; the hooks (below, in this uninstrumented file) keep a shadow record
// per byte touched from kernel code: the thread that last wrote it and the last reader, each with
// the barrier epoch and its warp's __syncwarp count at the time. An access is a hazard when another
// thread of the same block wrote (read-after-write, write-after-write) or read (write-after-read)
// the byte in the same epoch (no __syncthreads between them) and the two are not lanes of one warp
// with a __syncwarp between them. Shuffles and the other warp collectives do not order memory (the
// CUDA programming guide says as much), so they do not count. Both shared and global memory are
// checked within a block (racecheck checks shared memory only). Global memory is also checked
// between the blocks of one launch, which a GPU runs in no set order: a byte two blocks write, or
// one writes and another reads, is a hazard, unless the read is published: the writer made a
// __threadfence() after its write and the reader one before its read (split-K's last CTA: fence,
// atomic count, fence, read the others' partials). Not checked: accesses to a fiber's own stack,
// atomics (emu.h's atomic* pause the check), accesses in different launches (stream order).
// Simplifications: a __syncwarp with a partial mask orders the whole warp; the reader's fence may
// precede the atomic that tells it the writers are done (it does in split-K); cp.async copies count
// as the issuing thread's accesses when its wait_group retires them.
// The first hazard fails the launch with both accesses' kernel, threads and source lines (addr2line,
// where it is installed). VITRIM_EMU_RACECHECK=0 turns the check off in that library.
uint32_t g_epoch = 1;
void race_new_epoch() { ++g_epoch; }
#ifdef VITRIM_EMU_RACE
struct Shadow {
  uint32_t w_epoch, w_sync, w_pc;  // last write: epoch, the writer's warp's __syncwarp count, code offset
  uint32_t r_epoch, r_sync, r_pc;  // last read, the same
  uint32_t w_block, r_block;       // the last writer's and reader's block (linear index in the grid)
  uint32_t w_fence;                // __threadfence()s the writer had made in this launch before the write
  uint16_t w_tid, r_tid;           // linear thread indices within the block
  uint8_t r_many;                  // this epoch's readers: 0 one thread, 1 several of one warp, 2 of several warps
  uint8_t r_blocks;                // this launch's readers: 0 one block, 1 several blocks
};
constexpr size_t kPage = 4096;
std::unordered_map<uintptr_t, std::unique_ptr<Shadow[]>> g_shadow;
uintptr_t g_shadow_last_key = ~uintptr_t(0);
Shadow* g_shadow_last = nullptr;
uint32_t g_launch_epoch = 0;                     // the first epoch of the running launch
std::unordered_map<uint64_t, uint32_t> g_fences;  // (block, thread) -> __threadfence()s in this launch
int g_race_quiet = 0;  // > 0 inside an emulated atomic
const bool g_race_on = [] {
  const char* e = std::getenv("VITRIM_EMU_RACECHECK");
  return !(e && std::strcmp(e, "0") == 0);
}();
uintptr_t lib_base() {
  static uintptr_t base = [] {
    Dl_info info;
    return dladdr(reinterpret_cast<const void*>(&lib_base), &info) ? (uintptr_t)info.dli_fbase : 0;
  }();
  return base;
}
// The library's own image (code, data, and the static `__shared__` arrays, which are per block on a
// GPU and so never shared between blocks).
std::pair<uintptr_t, uintptr_t> lib_image() {
  static const std::pair<uintptr_t, uintptr_t> range = [] {
    std::pair<uintptr_t, uintptr_t> r{lib_base(), lib_base()};
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) {
          auto* r = static_cast<std::pair<uintptr_t, uintptr_t>*>(data);
          if ((uintptr_t)info->dlpi_addr != r->first) return 0;
          for (int i = 0; i < info->dlpi_phnum; ++i)
            if (info->dlpi_phdr[i].p_type == PT_LOAD)
              r->second = std::max<uintptr_t>(r->second, info->dlpi_addr + info->dlpi_phdr[i].p_vaddr +
                                                             info->dlpi_phdr[i].p_memsz);
          return 1;
        },
        &r);
    return r;
  }();
  return range;
}
uint64_t fence_key(uint32_t block, unsigned tid) { return (uint64_t)block << 11 | tid; }
void race_fence() {
  if (g_block && g_block->running) {
    Fiber* f = g_block->running;
    const Lane& l = f->lane;
    const uint32_t blk = l.bid.x + g_block->gdim.x * (l.bid.y + g_block->gdim.y * l.bid.z);
    g_fences[fence_key(blk, f->linear)] = ++f->fences;
  }
}
void race_launch() {
  g_launch_epoch = g_epoch + 1;  // the first block's start opens the next epoch
  g_fences.clear();
  // Records of earlier epochs never match again; drop them when they grow past ~1 GiB of shadow.
  if (g_shadow.size() * kPage * sizeof(Shadow) > ((size_t)1 << 30)) {
    g_shadow.clear();
    g_shadow_last_key = ~uintptr_t(0);
    g_shadow_last = nullptr;
  }
}
Shadow& shadow_of(uintptr_t a) {
  const uintptr_t key = a / kPage;
  if (key != g_shadow_last_key) {
    auto& page = g_shadow[key];
    if (!page) {
      page.reset(new Shadow[kPage]);
      std::memset(page.get(), 0, kPage * sizeof(Shadow));
    }
    g_shadow_last_key = key;
    g_shadow_last = page.get();
  }
  return g_shadow_last[a % kPage];
}
// addr2line's lines for `args` (one per output line, the build folder's path dropped), or none
// where it is missing.
std::vector<std::string> addr2line(const char* args, uint32_t pc) {
  std::vector<std::string> out;
  Dl_info info;
  if (!dladdr(reinterpret_cast<const void*>(lib_base() + pc), &info) || !info.dli_fname) return out;
  char cmd[1024];
  std::snprintf(cmd, sizeof cmd, "addr2line %s -e '%s' 0x%x 2>/dev/null", args, info.dli_fname, pc);
  if (FILE* p = popen(cmd, "r")) {
    char line[1024];
    while (std::fgets(line, sizeof line, p)) {
      std::string l = line;
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (l.find('/') != std::string::npos && l.find(':') != std::string::npos) l = l.substr(l.rfind('/') + 1);
      const size_t disc = l.find(" (discriminator");
      if (disc != std::string::npos) l.erase(disc);
      if (!l.empty() && l.rfind("??", 0) != 0) out.push_back(l);
    }
    pclose(p);
  }
  return out;
}
std::string where(uint32_t pc) {
  // The return address is the instruction after the call to the hook; one byte back lies inside it.
  std::string lines;
  for (const std::string& l : addr2line("-C -i", pc - 1)) lines += (lines.empty() ? "" : " <- ") + l;
  if (!lines.empty()) return lines;
  char buf[32];
  std::snprintf(buf, sizeof buf, "+0x%x", pc);
  return buf;
}
std::string thread_name(const Block& b, unsigned linear) {
  char buf[64];
  const dim3& d = b.bdim;
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", linear % d.x, linear / d.x % d.y, linear / (d.x * d.y));
  return buf;
}
std::string kernel_name(const void* k) {
  // The library exports none of its kernels' symbols (dladdr finds no name): its debug information does.
  const uint32_t off = (uint32_t)((uintptr_t)k - lib_base());
  const std::vector<std::string> l = addr2line("-C -f", off);
  if (!l.empty()) return l[0];
  char buf[32];
  std::snprintf(buf, sizeof buf, "kernel +0x%x", off);
  return buf;
}
constexpr uint32_t kAnotherBlock = ~uint32_t(0);  // a block of the launch the record does not name
std::string block_name(const Block& b, uint32_t linear) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", linear % b.gdim.x, linear / b.gdim.x % b.gdim.y,
                linear / (b.gdim.x * b.gdim.y));
  return buf;
}
// `other_block` is the block of the other access: this one's for a hazard within the block.
void race_report(Block& b, const char* kind, uintptr_t addr, unsigned me, uint32_t my_pc, uint32_t my_block,
                 unsigned other, uint32_t other_pc, uint32_t other_block, bool other_wrote) {
  if (!b.error.empty()) return;
  const uintptr_t lo = (uintptr_t)b.smem.data();
  char mem[96];
  if (addr - lo < b.smem.size())
    std::snprintf(mem, sizeof mem, "dynamic shared memory byte %zu", (size_t)(addr - lo));
  else if (addr - lib_image().first < lib_image().second - lib_image().first)
    // `__shared__` arrays are statics of the library here (emu.h)
    std::snprintf(mem, sizeof mem, "static __shared__ memory at %p", (void*)addr);
  else
    std::snprintf(mem, sizeof mem, "global memory at %p", (void*)addr);
  const bool across = other_block != my_block;
  const std::string whom = other_block == kAnotherBlock
                               ? "a thread of another block"
                               : "thread " + thread_name(b, other) +
                                     (across ? " of block " + block_name(b, other_block) : std::string()) + " at " +
                                     where(other_pc);
  b.error = std::string("race check: ") + kind + " hazard " + (across ? "between blocks " : "") + "in " +
            kernel_name(b.kernel) + ", block " + block_name(b, my_block) + ", " + mem + ": thread " +
            thread_name(b, me) + " at " + where(my_pc) + (kind[0] == 'r' ? " reads" : " writes") + " what " + whom +
            (other_wrote ? " wrote" : " read") +
            (across ? " in the same launch (a grid's blocks run in no set order: only the writer's __threadfence "
                      "after its write and the reader's after an atomic that saw it order them)"
                    : " with no __syncthreads (or __syncwarp, within a warp) between them");
}
void race_access(const void* p, size_t n, bool write, const void* ret) {
  Block* b = g_block;
  if (!b || !b->running || g_race_quiet > 0 || !g_race_on || !b->error.empty()) return;
  Fiber* f = b->running;
  const uintptr_t a = (uintptr_t)p;
  if (a - (uintptr_t)f->stack < kStack) return;  // the thread's own locals
  const unsigned me = f->linear, warp = me / 32;
  const uint32_t sync = b->warps[warp].syncs, ep = g_epoch, pc = (uint32_t)((uintptr_t)ret - lib_base());
  const Lane& l = f->lane;
  const uint32_t blk = l.bid.x + b->gdim.x * (l.bid.y + b->gdim.y * l.bid.z);
  // Shared memory is the block's own: only global memory is checked between blocks.
  static const std::pair<uintptr_t, uintptr_t> image = lib_image();
  const bool global = a - (uintptr_t)b->smem.data() >= b->smem.size() && a - image.first >= image.second - image.first;
  // Another thread's access is ordered before this one if it was by a lane of this warp before a
  // __syncwarp this lane has passed since.
  auto ordered = [&](unsigned other, uint32_t other_sync) {
    return other == me || (other / 32 == warp && other_sync != sync);
  };
  // One shadow page lookup for an access within a page (all but the rare straddling ones).
  Shadow* run = (a % kPage) + n <= kPage ? &shadow_of(a) : nullptr;
  for (size_t i = 0; i < n; ++i) {
    Shadow& s = run ? run[i] : shadow_of(a + i);
    const bool w_this_launch = global && s.w_epoch >= g_launch_epoch && s.w_block != blk;
    const bool r_this_launch = global && s.r_epoch >= g_launch_epoch && (s.r_block != blk || s.r_blocks);
    if (write) {
      if (s.w_epoch == ep && !ordered(s.w_tid, s.w_sync))
        return race_report(*b, "write-after-write", a + i, me, pc, blk, s.w_tid, s.w_pc, blk, true);
      if (w_this_launch)
        return race_report(*b, "write-after-write", a + i, me, pc, blk, s.w_tid, s.w_pc, s.w_block, true);
      // several readers of one warp: ordered only by a __syncwarp after the latest of them
      const bool war = s.r_epoch == ep && (s.r_many == 2   ? true
                                           : s.r_many == 1 ? s.r_tid / 32 != warp || s.r_sync == sync
                                                           : !ordered(s.r_tid, s.r_sync));
      if (war) return race_report(*b, "write-after-read", a + i, me, pc, blk, s.r_tid, s.r_pc, blk, false);
      if (r_this_launch)  // the last reader may be this block, after another block's read (r_blocks)
        return race_report(*b, "write-after-read", a + i, me, pc, blk, s.r_tid, s.r_pc,
                           s.r_block != blk ? s.r_block : kAnotherBlock, false);
      s.w_epoch = ep;
      s.w_tid = (uint16_t)me;
      s.w_sync = sync;
      s.w_pc = pc;
      s.w_block = blk;
      s.w_fence = f->fences;
    } else {
      if (s.w_epoch == ep && !ordered(s.w_tid, s.w_sync))
        return race_report(*b, "read-after-write", a + i, me, pc, blk, s.w_tid, s.w_pc, blk, true);
      if (w_this_launch) {
        // Published: the writer fenced after writing, and this thread fenced (after the atomic that
        // told it so) before reading.
        auto wf = f->fences > 0 ? g_fences.find(fence_key(s.w_block, s.w_tid)) : g_fences.end();
        const bool published = wf != g_fences.end() && wf->second > s.w_fence;
        if (!published)
          return race_report(*b, "read-after-write", a + i, me, pc, blk, s.w_tid, s.w_pc, s.w_block, true);
      }
      if (s.r_epoch < g_launch_epoch) s.r_blocks = 0;
      else if (s.r_block != blk) s.r_blocks = 1;
      if (s.r_epoch != ep) {
        s.r_epoch = ep;
        s.r_many = 0;
      } else if (s.r_tid != me) {
        s.r_many = std::max<uint8_t>(s.r_many, s.r_tid / 32 == warp ? 1 : 2);
      }
      s.r_tid = (uint16_t)me;
      s.r_sync = sync;
      s.r_pc = pc;
      s.r_block = blk;
    }
  }
}
#else
void race_launch() {}
void race_fence() {}
inline void race_access(const void*, size_t, bool, const void*) {}
int g_race_quiet = 0;
#endif

std::vector<char*>& stack_pool() {
  static std::vector<char*> p;
  return p;
}
char* get_stack() {
  auto& p = stack_pool();
  if (!p.empty()) {
    char* s = p.back();
    p.pop_back();
    return s;
  }
  void* m = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::runtime_error("emu: cannot map a fiber stack");
  return static_cast<char*>(m);
}

#ifdef VITRIM_EMU_ASM_SWITCH
}  // namespace
}  // namespace emu
// emu_switch(save, to): pushes rbp, rbx, r12-r15 and the x87 / MXCSR control words, stores the stack
// pointer in *save, loads `to` and pops the same from there. A new fiber's stack is laid out as if
// it had been switched away from at the start of emu_fiber_start, which calls r13(r12).
extern "C" void vitrim_emu_switch(void** save, void* to);
extern "C" void vitrim_emu_fiber_start();
asm(R"(
  .text
  .p2align 4
  .globl vitrim_emu_switch
  .hidden vitrim_emu_switch
  .type vitrim_emu_switch,@function
vitrim_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  fnstcw (%rsp)
  stmxcsr 8(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  fldcw (%rsp)
  ldmxcsr 8(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size vitrim_emu_switch, .-vitrim_emu_switch

  .p2align 4
  .globl vitrim_emu_fiber_start
  .hidden vitrim_emu_fiber_start
  .type vitrim_emu_fiber_start,@function
vitrim_emu_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size vitrim_emu_fiber_start, .-vitrim_emu_fiber_start
)");
namespace emu {
namespace {
void context_switch(Context& save, Context& to) { vitrim_emu_switch(&save.sp, to.sp); }
void context_make(Context& c, char* stack, size_t size, void (*fn)(Fiber*), Fiber* f) {
  // From the top (16-byte aligned): the return address into emu_fiber_start (so that its call
  // finds the stack aligned as the ABI wants), rbp, rbx, r12 = f, r13 = fn, r14, r15, then the
  // control words, copied from this thread's.
  uint64_t* top = reinterpret_cast<uint64_t*>(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
  uint64_t* sp = top - 9;
  std::memset(sp, 0, 9 * sizeof(uint64_t));
  top[-1] = (uint64_t)(uintptr_t)&vitrim_emu_fiber_start;
  top[-4] = (uint64_t)(uintptr_t)f;
  top[-5] = (uint64_t)(uintptr_t)fn;
  uint16_t cw;
  uint32_t mxcsr;
  asm volatile("fnstcw %0" : "=m"(cw));
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  std::memcpy(&sp[0], &cw, sizeof cw);
  std::memcpy(&sp[1], &mxcsr, sizeof mxcsr);
  c.sp = sp;
}
#else
void context_switch(Context& save, Context& to) { swapcontext(&save.uc, &to.uc); }
void fiber_entry_uc(unsigned lo, unsigned hi);
void context_make(Context& c, char* stack, size_t size, void (*)(Fiber*), Fiber* f) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(f);
  makecontext(&c.uc, (void (*)())fiber_entry_uc, 2, (unsigned)(p & 0xffffffffu), (unsigned)(p >> 32));
}
#endif

void fiber_main(Fiber* f) {
  try {
    (*g_block->body)();
  } catch (const std::exception& e) {
    if (g_block->error.empty()) g_block->error = std::string("exception in kernel: ") + e.what();
  } catch (...) {  // nothing may unwind past this frame: the fiber's stack has no caller
    if (g_block->error.empty()) g_block->error = "exception in kernel";
  }
  f->state = State::Done;
  context_switch(f->ctx, g_block->sched);  // never resumed
}
#ifndef VITRIM_EMU_ASM_SWITCH
void fiber_entry_uc(unsigned lo, unsigned hi) { fiber_main(reinterpret_cast<Fiber*>(((uintptr_t)hi << 32) | lo)); }
#endif

void yield_to_scheduler() {
  Fiber* f = g_block->running;
  context_switch(f->ctx, g_block->sched);
}

// One pass: run every ready fiber until it blocks or ends; then release a barrier or a warp
// collective whose participants have all arrived. Returns false on deadlock.
// VITRIM_EMU_ORDER=reverse|random runs the ready fibers of each pass in another order: code that
// reads shared memory another thread writes without a barrier between them then sees stale data
// in one of the orders (a GPU would interleave them in any order). It orders a grid's blocks too
// (run_kernel). The shuffle's state carries over from launch to launch: one process, one sequence,
// which VITRIM_EMU_SEED (an integer, read once; the test runner sets it from its input seed) picks,
// so that runs differ in their interleavings and a failing one can be replayed.
enum class Order { Forward, Reverse, Random };
Order order_from_env() {
  const char* e = std::getenv("VITRIM_EMU_ORDER");
  if (!e || !*e || std::strcmp(e, "forward") == 0) return Order::Forward;
  if (std::strcmp(e, "reverse") == 0) return Order::Reverse;
  if (std::strcmp(e, "random") == 0) return Order::Random;
  // a test knob, not an API: said once on stderr rather than thrown from a launch
  static bool said = false;
  if (!said) std::fprintf(stderr, "vitrim emu: VITRIM_EMU_ORDER='%s' is not forward, reverse or random; forward\n", e);
  said = true;
  return Order::Forward;
}
// Read at each launch, so that a test can set it around the calls it is about.
Order g_order = Order::Forward;
uint64_t order_seed() {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  if (const char* e = std::getenv("VITRIM_EMU_SEED")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(e, &end, 10);
    if (end != e && *end == 0) s ^= v * 0xbf58476d1ce4e5b9ull;  // splitmix's multiplier spreads small seeds
  }
  return s ? s : 1;  // xorshift's state must not be 0
}
uint64_t g_order_state = order_seed();

// 0 .. n-1 in VITRIM_EMU_ORDER's order (forward, reverse, or a fresh shuffle each call).
std::vector<size_t> run_order(size_t n) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = g_order == Order::Reverse ? n - 1 - i : i;
  if (g_order == Order::Random)
    for (size_t i = n; i > 1; --i) {
      g_order_state ^= g_order_state << 13;
      g_order_state ^= g_order_state >> 7;
      g_order_state ^= g_order_state << 17;
      std::swap(idx[i - 1], idx[g_order_state % i]);
    }
  return idx;
}

bool step(Block& b) {
  bool progressed = false;
  const size_t n = b.fibers.size();
  const std::vector<size_t> idx = run_order(n);
  for (size_t k = 0; k < n; ++k) {
    Fiber& f = b.fibers[idx[k]];
    if (f.state != State::Ready) continue;
    b.running = &f;
    context_switch(b.sched, f.ctx);
    b.running = nullptr;
    progressed = true;
    if (!b.error.empty()) return true;
  }
  // Block barrier: every live fiber waits at __syncthreads (exited ones do not count).
  size_t live = 0, at_barrier = 0;
  for (Fiber& f : b.fibers) {
    if (f.state != State::Done) ++live;
    if (f.state == State::AtBarrier) ++at_barrier;
  }
  if (live > 0 && at_barrier == live) {
    for (Fiber& f : b.fibers)
      if (f.state == State::AtBarrier) f.state = State::Ready;
    race_new_epoch();
    return true;
  }
  // Warp collectives: release a warp when every lane of the mask is waiting in it.
  const unsigned nthreads = (unsigned)b.fibers.size();
  for (unsigned w = 0; w < b.warps.size(); ++w) {
    unsigned waiting = 0, mask = 0;
    bool any = false;
    for (unsigned l = 0; l < 32; ++l) {
      unsigned t = w * 32 + l;
      if (t >= nthreads) break;
      Fiber& f = b.fibers[t];
      if (f.state == State::AtWarp) {
        waiting |= 1u << l;
        if (!any) mask = f.warp_mask;
        any = true;
      }
    }
    if (!any) continue;
    if ((waiting & mask) == mask) {
      bool is_sync = false;
      for (unsigned l = 0; l < 32; ++l)
        if (mask >> l & 1u) {
          is_sync |= b.fibers[w * 32 + l].warp_is_sync;
          b.fibers[w * 32 + l].state = State::Ready;
        }
      b.warps[w].gen++;
      if (is_sync) b.warps[w].syncs++;
      progressed = true;
    }
  }
  return progressed;
}

std::string describe_stuck(Block& b) {
  size_t bar = 0, warp = 0, done = 0;
  for (Fiber& f : b.fibers) {
    if (f.state == State::AtBarrier) ++bar;
    if (f.state == State::AtWarp) ++warp;
    if (f.state == State::Done) ++done;
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "deadlock in block (%u,%u,%u): %zu threads at __syncthreads, %zu in a warp collective, %zu exited "
                "(a barrier or collective not reached by every thread it names)",
                b.fibers.empty() ? 0 : b.fibers[0].lane.bid.x, b.fibers.empty() ? 0 : b.fibers[0].lane.bid.y,
                b.fibers.empty() ? 0 : b.fibers[0].lane.bid.z, bar, warp, done);
  return buf;
}

cudaError_t g_last = cudaSuccess;
std::string g_last_detail;

void set_error(cudaError_t e, const std::string& detail) {
  if (g_last == cudaSuccess) g_last = e;
  g_last_detail = detail;
  std::fprintf(stderr, "[cuda-emu] %s\n", detail.c_str());
}

// ---- graph capture ----
bool g_capturing = false;
bool g_capture_invalid = false;
// A recorded op and the kind of graph node it would be on a GPU (cudaGraphNodeGetType).
struct CapturedOp {
  cudaGraphNodeType type;
  std::function<void()> run;
};
std::vector<CapturedOp>* g_capture = nullptr;
std::unordered_map<const void*, size_t> g_func_smem;
}  // namespace

std::string last_error_detail() { return g_last_detail; }
Lane& cur() { return g_block && g_block->running ? g_block->running->lane : g_host_lane; }
const dim3& block_dim() { return g_block ? g_block->bdim : g_host_dim; }
const dim3& grid_dim() { return g_block ? g_block->gdim : g_host_dim; }
void* dyn_smem() { return g_block ? g_block->smem.data() : nullptr; }
size_t dyn_smem_size() { return g_block ? g_block->smem.size() : 0; }
unsigned lane_id() { return g_block && g_block->running ? g_block->running->linear % 32 : 0; }

void syncthreads() {
  g_block->running->state = State::AtBarrier;
  yield_to_scheduler();
}

const uint64_t* warp_exchange(unsigned mask, uint64_t v) {
  Fiber* f = g_block->running;
  unsigned lane = f->linear % 32, w = f->linear / 32;
  if (!(mask >> lane & 1u)) {
    g_block->error = "a warp collective called by a lane that is not in its mask";
    return g_block->warps[w].slots[0];
  }
  Warp& wp = g_block->warps[w];
  uint64_t gen = wp.gen;
  wp.slots[gen & 1][lane] = v;
  f->state = State::AtWarp;
  f->warp_mask = mask;
  f->warp_gen = gen;
  yield_to_scheduler();
  f->warp_is_sync = false;
  return wp.slots[gen & 1];
}

void syncwarp(unsigned mask) {
  g_block->running->warp_is_sync = true;
  warp_exchange(mask, 0);
}

void cp_async16(void* dst, const void* src, int src_size) {
  Fiber* f = g_block ? g_block->running : nullptr;
  if (!f) throw std::runtime_error("cp.async outside a kernel");
  if (((uintptr_t)dst | (uintptr_t)src) % 16 != 0 || src_size < 0 || src_size > 16) {
    g_block->error = "cp.async: misaligned address or src_size outside [0, 16]";
    return;
  }
  // The destination is shared memory; the kernels that use cp.async stage into dynamic shared memory.
  const uintptr_t lo = (uintptr_t)g_block->smem.data(), d = (uintptr_t)dst;
  if (d < lo || d + 16 > lo + g_block->smem.size()) {
    g_block->error = "cp.async: the destination is outside the block's dynamic shared memory";
    return;
  }
  f->cp_open.push_back({dst, src, src_size});
}
void cp_async_commit() {
  Fiber* f = g_block->running;
  f->cp_groups.push_back(std::move(f->cp_open));
  f->cp_open.clear();
}
void cp_async_wait(int n) {
  Fiber* f = g_block->running;
  while ((int)f->cp_groups.size() > n) {
    for (const Fiber::Copy& c : f->cp_groups.front()) {
      race_access(c.src, (size_t)c.src_size, false, __builtin_return_address(0));
      race_access(c.dst, 16, true, __builtin_return_address(0));
      std::memcpy(c.dst, c.src, (size_t)c.src_size);
      std::memset(static_cast<char*>(c.dst) + c.src_size, 0, (size_t)(16 - c.src_size));
    }
    f->cp_groups.erase(f->cp_groups.begin());
  }
}

static void run_block(const Cfg& cfg, const std::function<void()>& body, uint3 bid, Block& b) {
  const unsigned n = cfg.block.x * cfg.block.y * cfg.block.z;
  b.fibers.assign(n, Fiber{});
  b.warps.assign((n + 31) / 32, Warp{});
  std::fill(b.smem.begin(), b.smem.end(), (unsigned char)0xff);
  race_new_epoch();  // nothing a block does is ordered with another block's threads by a barrier
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.linear = i;
    f.lane.tid = make_uint3(i % cfg.block.x, (i / cfg.block.x) % cfg.block.y, i / (cfg.block.x * cfg.block.y));
    f.lane.bid = bid;
    f.stack = get_stack();
    context_make(f.ctx, f.stack, kStack, fiber_main, &f);
  }
  // Fibers that exited while others wait in a warp collective naming them: a GPU would hang or
  // read garbage; report it.
  while (true) {
    bool all_done = true;
    for (Fiber& f : b.fibers) all_done &= f.state == State::Done;
    if (all_done || !b.error.empty()) break;
    if (!step(b)) {
      b.error = describe_stuck(b);
      break;
    }
  }
  for (Fiber& f : b.fibers) stack_pool().push_back(f.stack);
  (void)body;
}

// VITRIM_EMU_LAUNCH_LOG=file: every distinct (kernel, block shape, dynamic shared memory) this
// process launches is appended to the file as one line, "<kernel's offset in this library> <block x>
// <y> <z> <dynamic shared bytes>" (O_APPEND: the test workers share one file). scripts/launch-check.mjs
// matches the offsets to the library's symbols and checks each launch against the registers,
// static shared memory and __launch_bounds__ that nvcc gives the same kernel: the limits a GPU
// enforces at launch ("too many resources requested") and this emulation cannot know.
void log_launch(const void* kernel, const Cfg& cfg) {
  static const char* const path = std::getenv("VITRIM_EMU_LAUNCH_LOG");
  if (!path || !*path) return;
  static std::mutex mu;
  static std::set<std::tuple<const void*, unsigned, unsigned, unsigned, size_t>> seen;
  std::lock_guard<std::mutex> lock(mu);
  if (!seen.insert({kernel, cfg.block.x, cfg.block.y, cfg.block.z, cfg.smem}).second) return;
  Dl_info info;
  if (!dladdr(kernel, &info) || !info.dli_fbase) return;
  char line[128];
  const int n = std::snprintf(line, sizeof line, "%zx %u %u %u %zu\n",
                              (size_t)((const char*)kernel - (const char*)info.dli_fbase), cfg.block.x, cfg.block.y,
                              cfg.block.z, cfg.smem);
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!::write(fd, line, (size_t)n);
  ::close(fd);
}

cudaError_t run_kernel(const Cfg& cfg, std::function<void()> body, const void* kernel) {
  log_launch(kernel, cfg);
  const dim3 g = cfg.grid, bl = cfg.block;
  const unsigned long long threads = (unsigned long long)bl.x * bl.y * bl.z;
  char buf[256];
  if (g.x == 0 || g.y == 0 || g.z == 0 || bl.x == 0 || bl.y == 0 || bl.z == 0 || threads > 1024 || bl.z > 64 ||
      g.y > 65535 || g.z > 65535 || g.x > 2147483647u) {
    std::snprintf(buf, sizeof buf, "invalid launch configuration: grid (%u,%u,%u) block (%u,%u,%u)", g.x, g.y, g.z,
                  bl.x, bl.y, bl.z);
    set_error(cudaErrorInvalidConfiguration, buf);
    return cudaErrorInvalidConfiguration;
  }
  auto granted = g_func_smem.find(kernel);
  if (cfg.smem > kDefaultSmem && (granted == g_func_smem.end() || cfg.smem > granted->second)) {
    std::snprintf(buf, sizeof buf, "launch asks for %zu bytes of dynamic shared memory (limit %zu without "
                  "cudaFuncSetAttribute)", cfg.smem, (size_t)kDefaultSmem);
    set_error(cudaErrorInvalidValue, buf);
    return cudaErrorInvalidValue;
  }
  if (cfg.smem > kMaxSmem) {
    set_error(cudaErrorInvalidValue, "dynamic shared memory above the device maximum");
    return cudaErrorInvalidValue;
  }
  if (g_capturing) {
    g_capture->push_back({cudaGraphNodeTypeKernel, [cfg, body, kernel]() { run_kernel(cfg, body, kernel); }});
    return cudaSuccess;
  }
  if (g_block) {
    set_error(cudaErrorNotSupported, "a kernel launched from inside a kernel (dynamic parallelism)");
    return cudaErrorNotSupported;
  }
  g_order = order_from_env();
  Block b;
  b.bdim = bl;
  b.gdim = g;
  b.smem.assign(cfg.smem, 0xff);
  b.body = &body;
  b.kernel = kernel;
  race_launch();
  g_block = &b;
  // The blocks, too, run in VITRIM_EMU_ORDER's order where it is set: a GPU runs them in no set
  // order (split-K's last CTA, for one, may be any split of its tile). Grids past 2^24 blocks keep
  // the forward order (the index list would be large).
  const size_t nblocks = (size_t)g.x * g.y * g.z;
  const bool shuffled = g_order != Order::Forward && nblocks <= (size_t(1) << 24);
  const std::vector<size_t> order = shuffled ? run_order(nblocks) : std::vector<size_t>();
  for (size_t i = 0; i < nblocks && b.error.empty(); ++i) {
    const size_t k = shuffled ? order[i] : i;
    run_block(cfg, body, make_uint3((unsigned)(k % g.x), (unsigned)(k / g.x % g.y), (unsigned)(k / g.x / g.y)), b);
  }
  g_block = nullptr;
  if (!b.error.empty()) {
    // A fault inside a kernel surfaces at the next synchronising call, as on a GPU.
    set_error(cudaErrorLaunchFailure, "kernel failed: " + b.error);
  }
  return cudaSuccess;
}

// Called by the graph API below.
void capture_begin() {
  g_capturing = true;
  g_capture_invalid = false;
  g_capture = new std::vector<CapturedOp>();
}
bool capturing() { return g_capturing; }
void capture_invalidate() { g_capture_invalid = true; }

}  // namespace emu

// ---------------------------------------------------------------------------------------------
// CUDA runtime API (the subset the backend uses)
// ---------------------------------------------------------------------------------------------
using emu::g_last;

namespace {
struct Graph {
  std::vector<emu::CapturedOp> ops;
};
cudaError_t sticky_or(cudaError_t e) { return e; }
// Synchronising calls report the first error a kernel raised since the last check.
cudaError_t take_error() {
  cudaError_t e = emu::g_last;
  emu::g_last = cudaSuccess;
  return e;
}
cudaError_t capture_refuses(const char* what) {
  if (!emu::g_capturing) return cudaSuccess;
  emu::capture_invalidate();
  emu::set_error(cudaErrorStreamCaptureUnsupported, std::string(what) + " during a graph capture");
  return cudaErrorStreamCaptureUnsupported;
}
}  // namespace

extern "C" {

float rsqrtf(float x) { return 1.0f / sqrtf(x); }
double rsqrt(double x) { return 1.0 / sqrt(x); }
float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }

cudaError_t cudaGetLastError(void) {
  cudaError_t e = emu::g_last;
  emu::g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return emu::g_last; }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated; see the [cuda-emu] line on stderr)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing (emulated)";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture (emulated)";
    default: return "cuda error (emulated)";
  }
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    default: return "cudaError(emulated)";
  }
}

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
// The SM count: 4 by default, small, so that grid-stride loops iterate and stay cheap to emulate.
// VITRIM_EMU_SMS=132 (an H100 SXM) makes the launch planning (tiles, split-K, grid caps) take the
// paths it takes on that GPU.
static int emu_sms() {
  const char* e = std::getenv("VITRIM_EMU_SMS");
  const int v = e && *e ? std::atoi(e) : 4;
  return v >= 1 && v <= 1024 ? v : 4;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "CPU emulation of a CUDA device");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = emu_sms();
  p->totalGlobalMem = (size_t)8 << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->maxThreadsPerBlock = 1024;
  p->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = emu_sms(); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 * 1024; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    default: *v = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  static int dummy;
  *s = reinterpret_cast<cudaStream_t>(&dummy);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  if (cudaError_t e = capture_refuses("cudaStreamSynchronize")) return e;
  return take_error();
}
// Events: kernels run at launch here, so a recorded event is complete at once; it carries the error
// raised before it was recorded, which cudaEventSynchronize reports (from any thread: it reads only
// the event).
namespace {
struct EmuEvent {
  cudaError_t err = cudaSuccess;
};
}  // namespace
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) {
  *e = reinterpret_cast<cudaEvent_t>(new EmuEvent());
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (cudaError_t c = capture_refuses("cudaEventRecord")) return c;
  reinterpret_cast<EmuEvent*>(e)->err = take_error();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  auto* ev = reinterpret_cast<EmuEvent*>(e);
  cudaError_t r = ev->err;
  ev->err = cudaSuccess;
  return r;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return reinterpret_cast<EmuEvent*>(e)->err; }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<EmuEvent*>(e);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = capture_refuses("cudaDeviceSynchronize")) return e;
  return take_error();
}

// VITRIM_EMU_DEVICE_MB=N: a device with N MiB (a decimal: 0.25 is 256 KiB) for what is allocated
// while it is set (read at each cudaMalloc; such blocks count until freed, also after it is unset),
// so that a test can fill the device and see the allocator's retry with its cache freed, or run an
// entry point out of memory. cudaMemGetInfo reports that device.
namespace {
std::mutex g_cap_mu;
std::unordered_map<void*, size_t> g_capped;  // blocks allocated under the cap, and their sizes
size_t g_capped_bytes = 0;
size_t device_cap() {
  const char* e = std::getenv("VITRIM_EMU_DEVICE_MB");
  return e && *e ? (size_t)(std::strtod(e, nullptr) * (1 << 20)) : 0;
}
}  // namespace

cudaError_t cudaMalloc(void** p, size_t n) {
  // Tests ask for impossible sizes on purpose; refuse them as a GPU would.
  const size_t cap = device_cap();
  bool over = n > ((size_t)8 << 30);
  if (cap) {
    std::lock_guard<std::mutex> lk(g_cap_mu);
    over = over || n > cap - std::min(cap, g_capped_bytes);
  }
  if (over) {
    *p = nullptr;
    return cudaErrorMemoryAllocation;
  }
  // cudaMalloc's memory is at least 256-byte aligned (CUDA C++ Programming Guide; cuBLASLt's
  // heuristic assumes as much unless told otherwise), malloc's only 16.
  *p = std::aligned_alloc(256, (std::max<size_t>(n, 1) + 255) / 256 * 256);
  if (!*p) return cudaErrorMemoryAllocation;
  // Fresh device memory holds whatever was there before; large host allocations come from mmap,
  // zero-filled, which would hide a kernel that reads memory nobody wrote. Fill it as shared memory
  // is filled (0xff: NaN as float or bf16, -1 as an integer), so such a read shows.
  std::memset(*p, 0xff, n);
  if (cap) {
    std::lock_guard<std::mutex> lk(g_cap_mu);
    g_capped[*p] = n;
    g_capped_bytes += n;
  }
  return cudaSuccess;
}
// Pinned host memory is ordinary memory here: copies complete at once.
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned int) {
  // pinned host memory is page-aligned; at least cudaMalloc's 256 bytes here
  *p = std::aligned_alloc(256, (std::max<size_t>(n, 1) + 255) / 256 * 256);
  if (!*p) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xff, n);  // not zeroed on a GPU machine either: as cudaMalloc
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (cudaError_t e = capture_refuses("cudaFree")) return e;
  {
    std::lock_guard<std::mutex> lk(g_cap_mu);
    auto it = g_capped.find(p);
    if (it != g_capped.end()) {
      g_capped_bytes -= it->second;
      g_capped.erase(it);
    }
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
  const size_t cap = device_cap();
  *total_b = cap ? cap : (size_t)8 << 30;
  std::lock_guard<std::mutex> lk(g_cap_mu);
  *free_b = cap ? cap - std::min(cap, g_capped_bytes) : *total_b;
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t) {
  if (emu::g_capturing) {
    if (kind != cudaMemcpyDeviceToDevice) return capture_refuses("a host copy");
    emu::g_capture->push_back({cudaGraphNodeTypeMemcpy, [dst, src, n]() { std::memmove(dst, src, n); }});
    return cudaSuccess;
  }
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (cudaError_t e = capture_refuses("cudaMemcpy")) return e;
  (void)kind;
  if (n) std::memmove(dst, src, n);
  return take_error();
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  if (emu::g_capturing) {
    emu::g_capture->push_back({cudaGraphNodeTypeMemset, [p, v, n]() { std::memset(p, v, n); }});
    return cudaSuccess;
  }
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  if (cudaError_t e = capture_refuses("cudaMemset")) return e;
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || (size_t)value > 227 * 1024) return cudaErrorInvalidValue;
    emu::g_func_smem[f] = (size_t)value;  // per kernel, as on a GPU
  }
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void*, int block, size_t) {
  *n = block > 0 ? std::max(1, 2048 / block) : 0;
  return cudaSuccess;
}

// ---- graphs ----
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (emu::g_capturing) return cudaErrorIllegalState;
  emu::capture_begin();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* graph) {
  if (!emu::g_capturing) return cudaErrorIllegalState;
  emu::g_capturing = false;
  std::unique_ptr<std::vector<emu::CapturedOp>> ops(emu::g_capture);
  emu::g_capture = nullptr;
  if (emu::g_capture_invalid) {
    *graph = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  Graph* g = new Graph{std::move(*ops)};
  *graph = reinterpret_cast<cudaGraph_t>(g);
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  Graph* g = reinterpret_cast<Graph*>(graph);
  *exec = reinterpret_cast<cudaGraphExec_t>(new Graph(*g));
  return cudaSuccess;
}
// Nodes are the recorded ops, in order (a handle points at its op while the graph lives).
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  auto& ops = reinterpret_cast<Graph*>(graph)->ops;
  if (!nodes) {
    *numNodes = ops.size();
    return cudaSuccess;
  }
  const size_t n = std::min(*numNodes, ops.size());
  for (size_t i = 0; i < n; ++i) nodes[i] = reinterpret_cast<cudaGraphNode_t>(&ops[i]);
  *numNodes = n;
  return cudaSuccess;
}
cudaError_t cudaGraphNodeGetType(cudaGraphNode_t node, cudaGraphNodeType* type) {
  *type = reinterpret_cast<const emu::CapturedOp*>(node)->type;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<Graph*>(graph);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<Graph*>(exec);
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
  if (emu::g_capturing) return capture_refuses("cudaGraphLaunch");
  for (auto& op : reinterpret_cast<Graph*>(exec)->ops) op.run();
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// cuBLASLt, naive: D = alpha op(A) op(B) + beta C (+ bias per row of D), column-major, batched.
// ---------------------------------------------------------------------------------------------
struct EmuLayout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct EmuDesc {
  cublasComputeType_t compute;
  int32_t transa = 0, transb = 0;
  uint32_t epilogue = 1;
  const void* bias = nullptr;
  cudaDataType bias_type = CUDA_R_32F;
};
static_assert(sizeof(EmuLayout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "layout fits");
static_assert(sizeof(EmuDesc) <= sizeof(cublasLtMatmulDescOpaque_t), "desc fits");

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  static int dummy;
  *h = reinterpret_cast<cublasLtHandle_t>(&dummy);
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasLtGetStatusString(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? "success" : "error (emulated)"; }
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t c, cudaDataType_t) {
  auto* o = new cublasLtMatmulDescOpaque_t{};
  auto* e = new (o) EmuDesc();
  e->compute = c;
  *d = o;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void* buf,
                                              size_t size) {
  EmuDesc* e = reinterpret_cast<EmuDesc*>(d);
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: std::memcpy(&e->transa, buf, std::min(size, sizeof e->transa)); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: std::memcpy(&e->transb, buf, std::min(size, sizeof e->transb)); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: std::memcpy(&e->epilogue, buf, std::min(size, sizeof e->epilogue)); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: std::memcpy(&e->bias, buf, sizeof e->bias); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: std::memcpy(&e->bias_type, buf, sizeof e->bias_type); break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  if (ld < (int64_t)std::max<uint64_t>(1, rows)) return CUBLAS_STATUS_INVALID_VALUE;
  auto* o = new cublasLtMatrixLayoutOpaque_t{};
  auto* e = new (o) EmuLayout();
  e->type = t;
  e->rows = rows;
  e->cols = cols;
  e->ld = ld;
  *l = o;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                const void* buf, size_t) {
  EmuLayout* e = reinterpret_cast<EmuLayout*>(l);
  if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) std::memcpy(&e->batch, buf, sizeof e->batch);
  else if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) std::memcpy(&e->stride, buf, sizeof e->stride);
  else return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}
// A preference holds the four minimum alignments (cuBLASLt's default: 256 bytes each). The
// heuristic copies them into the algorithm it returns, and cublasLtMatmul refuses a pointer less
// aligned than its algorithm assumed (up to the 16 bytes of a vectorised load): on a GPU such a
// kernel faults with a misaligned address. The BIAS epilogue's vector must be 16-byte aligned.
struct EmuPref {
  uint32_t min_align[4] = {256, 256, 256, 256};
};
static_assert(sizeof(EmuPref) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "preference fits");
static_assert(sizeof(EmuPref) <= sizeof(cublasLtMatmulAlgo_t), "algorithm fits");
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  auto* o = new cublasLtMatmulPreferenceOpaque_t{};
  new (o) EmuPref();
  *p = o;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a,
                                                    const void* buf, size_t size) {
  EmuPref* e = reinterpret_cast<EmuPref*>(p);
  switch (a) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return size == 8 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
      if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&e->min_align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, 4);
      return CUBLAS_STATUS_SUCCESS;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
}
// VITRIM_EMU_LT_NO_BIAS=1 answers "no algorithm" for every BIAS-epilogue problem, as cuBLASLt may
// for some alignments and dtypes: the tests then run lt_gemm's fallback (plain GEMM + bias pass).
// It answers as cuBLASLt does, with CUBLAS_STATUS_NOT_SUPPORTED; VITRIM_EMU_LT_NO_BIAS=count
// answers the other documented way, success with a count of 0.
// VITRIM_EMU_LT_IN_PLACE_ONLY has no algorithm write out of place (C != D), as some cuBLASLt
// algorithms cannot: =heuristic refuses a problem whose D has a descriptor other than C's; =matmul
// lets the heuristic answer and refuses at cublasLtMatmul, for C and D at different addresses.
// VITRIM_EMU_LT_NO_BATCH has no algorithm for a strided batch: =1 for any batch count above 1,
// =shared for one whose A or B has a batch stride of 0 (matmul's shared B with transA).
// All read at each call, so that a test can set them around the calls they are about.
static bool knob_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e && *e && std::strcmp(e, "0") != 0 && (!value || std::strcmp(e, value) == 0);
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Adesc,
                                              cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc,
                                              cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (knob_is("VITRIM_EMU_LT_NO_BIAS", nullptr) && reinterpret_cast<const EmuDesc*>(desc)->epilogue == 4) {
    *returned = 0;
    return knob_is("VITRIM_EMU_LT_NO_BIAS", "count") ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const EmuLayout& la = *reinterpret_cast<const EmuLayout*>(Adesc);
  const EmuLayout& lb = *reinterpret_cast<const EmuLayout*>(Bdesc);
  const EmuLayout& ld = *reinterpret_cast<const EmuLayout*>(Ddesc);
  if (ld.batch > 1 && (knob_is("VITRIM_EMU_LT_NO_BATCH", "1") ||
                       (knob_is("VITRIM_EMU_LT_NO_BATCH", "shared") && (la.stride == 0 || lb.stride == 0)))) {
    *returned = 0;
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (knob_is("VITRIM_EMU_LT_IN_PLACE_ONLY", "heuristic") && Cdesc != Ddesc) {
    *returned = 0;
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  results[0] = cublasLtMatmulHeuristicResult_t{};
  new (&results[0].algo) EmuPref(*reinterpret_cast<const EmuPref*>(pref));
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

static double ld_elem(const void* p, cudaDataType t, int64_t i) {
  if (t == CUDA_R_16BF) return (double)__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return (double)static_cast<const float*>(p)[i];
}
static void st_elem(void* p, cudaDataType t, int64_t i, double v) {
  if (t == CUDA_R_16BF) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn((float)v);
  else static_cast<float*>(p)[i] = (float)v;
}

static void naive_matmul(EmuDesc d, float alpha, const void* A, EmuLayout la, const void* B, EmuLayout lb, float beta,
                         const void* C, EmuLayout lc, void* D, EmuLayout ldd) {
  const uint64_t m = ldd.rows, n = ldd.cols;
  const uint64_t k = d.transa ? la.rows : la.cols;
  for (int32_t bt = 0; bt < ldd.batch; ++bt) {
    const int64_t oa = bt * la.stride, ob = bt * lb.stride, oc = bt * lc.stride, od = bt * ldd.stride;
    for (uint64_t i = 0; i < m; ++i)
      for (uint64_t j = 0; j < n; ++j) {
        double s = 0;
        for (uint64_t q = 0; q < k; ++q) {
          double a = d.transa ? ld_elem(A, la.type, oa + (int64_t)(q + i * la.ld)) : ld_elem(A, la.type, oa + (int64_t)(i + q * la.ld));
          double b = d.transb ? ld_elem(B, lb.type, ob + (int64_t)(j + q * lb.ld)) : ld_elem(B, lb.type, ob + (int64_t)(q + j * lb.ld));
          s += a * b;
        }
        double v = alpha * s;
        if (beta != 0.f) v += beta * ld_elem(C, lc.type, oc + (int64_t)(i + j * lc.ld));
        if (d.epilogue == 4 && d.bias) v += ld_elem(d.bias, d.bias_type, (int64_t)i);
        st_elem(D, ldd.type, od + (int64_t)(i + j * ldd.ld), v);
      }
  }
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo, void*, size_t,
                              cudaStream_t) {
  EmuDesc d = *reinterpret_cast<EmuDesc*>(desc);
  if (algo) {
    const EmuPref& ap = *reinterpret_cast<const EmuPref*>(algo);
    const void* ptrs[4] = {A, B, C, D};
    for (int i = 0; i < 4; ++i)
      if ((uintptr_t)ptrs[i] % std::min<uint32_t>(std::max<uint32_t>(ap.min_align[i], 1), 16) != 0) {
        std::fprintf(stderr, "emulated cuBLASLt: matrix %c at %p is less aligned than its algorithm assumes (%u bytes)\n",
                     "ABCD"[i], ptrs[i], ap.min_align[i]);
        return (cublasStatus_t)13;  // CUBLAS_STATUS_EXECUTION_FAILED: a GPU faults (misaligned address)
      }
  }
  if (knob_is("VITRIM_EMU_LT_IN_PLACE_ONLY", "matmul") && C != D) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.epilogue == 4 && (uintptr_t)d.bias % 16 != 0) {
    std::fprintf(stderr, "emulated cuBLASLt: the BIAS epilogue's vector at %p is not 16-byte aligned\n", d.bias);
    return (cublasStatus_t)13;
  }
  EmuLayout la = *reinterpret_cast<EmuLayout*>(Adesc), lb = *reinterpret_cast<EmuLayout*>(Bdesc);
  EmuLayout lc = *reinterpret_cast<EmuLayout*>(Cdesc), ldd = *reinterpret_cast<EmuLayout*>(Ddesc);
  // Shapes must agree as cuBLASLt requires: op(A) [m,k], op(B) [k,n], C/D [m,n].
  uint64_t m = d.transa ? la.cols : la.rows, k = d.transa ? la.rows : la.cols;
  uint64_t kb = d.transb ? lb.cols : lb.rows, n = d.transb ? lb.rows : lb.cols;
  if (k != kb || m != ldd.rows || n != ldd.cols || lc.rows != ldd.rows || lc.cols != ldd.cols) return CUBLAS_STATUS_INVALID_VALUE;
  float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  if (emu::g_capturing) {
    emu::g_capture->push_back({cudaGraphNodeTypeKernel, [=]() { naive_matmul(d, a, A, la, B, lb, b, C, lc, D, ldd); }});
    return CUBLAS_STATUS_SUCCESS;
  }
  naive_matmul(d, a, A, la, B, lb, b, C, lc, D, ldd);
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"

#ifdef VITRIM_EMU_RACE
// The hooks GCC's -fsanitize=thread instrumentation calls (the kernel sources of
// libvitrim_cuda_emu_race.so are compiled with it; this file is not, and no ThreadSanitizer runtime
// is linked: these are the whole of it). Hidden like the rest of the library.
namespace emu {
RaceQuiet::RaceQuiet() { ++g_race_quiet; }
RaceQuiet::~RaceQuiet() { --g_race_quiet; }
void threadfence() { race_fence(); }
}  // namespace emu
#define VITRIM_RACE_HOOKS(N)                                                                              \
  void __tsan_read##N(void* p) { emu::race_access(p, N, false, __builtin_return_address(0)); }           \
  void __tsan_write##N(void* p) { emu::race_access(p, N, true, __builtin_return_address(0)); }           \
  void __tsan_unaligned_read##N(void* p) { emu::race_access(p, N, false, __builtin_return_address(0)); } \
  void __tsan_unaligned_write##N(void* p) { emu::race_access(p, N, true, __builtin_return_address(0)); } \
  void __tsan_volatile_read##N(void* p) { emu::race_access(p, N, false, __builtin_return_address(0)); }  \
  void __tsan_volatile_write##N(void* p) { emu::race_access(p, N, true, __builtin_return_address(0)); }
extern "C" {
VITRIM_RACE_HOOKS(1)
VITRIM_RACE_HOOKS(2)
VITRIM_RACE_HOOKS(4)
VITRIM_RACE_HOOKS(8)
VITRIM_RACE_HOOKS(16)
void __tsan_read_range(void* p, unsigned long n) { emu::race_access(p, n, false, __builtin_return_address(0)); }
void __tsan_write_range(void* p, unsigned long n) { emu::race_access(p, n, true, __builtin_return_address(0)); }
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
// Compiler-generated atomics (guards of function-local statics, shared_ptr counts) in host code:
// done as the uninstrumented code would do them.
#define VITRIM_RACE_ATOMICS(N, T)                                                                             \
  T __tsan_atomic##N##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); }         \
  void __tsan_atomic##N##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); }         \
  T __tsan_atomic##N##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##N##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##N##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##N##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##N##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }   \
  T __tsan_atomic##N##_fetch_xor(volatile T* a, T v, int) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); } \
  int __tsan_atomic##N##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                          \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                     \
  }                                                                                                             \
  int __tsan_atomic##N##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                            \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                      \
  }                                                                                                             \
  T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                                \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                           \
    return c;                                                                                                   \
  }
VITRIM_RACE_ATOMICS(8, unsigned char)
VITRIM_RACE_ATOMICS(16, unsigned short)
VITRIM_RACE_ATOMICS(32, int)
VITRIM_RACE_ATOMICS(64, long)
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) {}
}
#else
namespace emu {
RaceQuiet::RaceQuiet() {}
RaceQuiet::~RaceQuiet() {}
void threadfence() {}
}  // namespace emu
#endif
