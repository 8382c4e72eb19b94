// Backend tables and the run-time loader of the CUDA backend.
//
// The CPU table is static. The CUDA one comes from libvitrim_cuda.so, looked up (in this order) at
// $VITRIM_CUDA_LIB, then next to the loaded vitrim.node (CMake puts both in one folder; a prebuild
// ships them together). It is opened once, on the first request, with RTLD_LOCAL so that its
// statically linked cudart stays private. Every failed step is kept as a reason for backends():
// library not built, dlopen error (e.g. libcublasLt.so missing), ABI or build mismatch, no driver,
// no visible GPU. VITRIM_DISABLE_CUDA=1 skips the attempt (and says so).
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "vitrim/backend.h"

namespace vitrim {

#ifndef VITRIM_BUILD_ID
#define VITRIM_BUILD_ID "dev"
#endif

static Backend make_cpu_backend() {
  Backend b;
  b.device = Device::CPU;
  b.empty = [](const Shape& s, DType d) { return vitrim::empty(s, d, Device::CPU); };
  b.copy_from_host = [](const Tensor& dst, const void* src, size_t n) {
    VITRIM_CHECK(n <= dst.nbytes(), Internal, "copy_from_host: ", n, " bytes into a ", dst.nbytes(), "-byte tensor");
    if (n) std::memcpy(dst.raw(), src, n);
  };
  b.copy_to_host = [](void* dst, const Tensor& src, size_t n) {
    VITRIM_CHECK(n <= src.nbytes(), Internal, "copy_to_host: ", n, " bytes from a ", src.nbytes(), "-byte tensor");
    if (n) std::memcpy(dst, src.raw(), n);
  };
  b.copy_device = [](const Tensor& dst, const Tensor& src, size_t n) {
    VITRIM_CHECK(n <= dst.nbytes() && n <= src.nbytes(), Internal, "copy_device: ", n, " bytes between tensors of ",
                 src.nbytes(), " and ", dst.nbytes(), " bytes");
    if (n && dst.raw() != src.raw()) std::memcpy(dst.raw(), src.raw(), n);
  };
  b.synchronize = [] {};
  b.memory_stats = [] { return memory_stats(Device::CPU); };
  b.empty_cache = [] { vitrim::empty_cache(); };
  b.alloc_faults = &cpu_alloc_faults;
  b.describe = [] { return std::string("cpu"); };
  b.set_allow_tf32 = [](bool) {};
#define VITRIM_CPU_MEMBER(name) b.name = &cpu::name;
  VITRIM_BACKEND_OPS(VITRIM_CPU_MEMBER)
#undef VITRIM_CPU_MEMBER
  return b;
}

namespace {
struct CudaState {
  std::once_flag once;
  std::atomic<const Backend*> table{nullptr};
  std::vector<std::string> reasons;
};
CudaState& cuda_state() {
  static CudaState* s = new CudaState();  // never destroyed: tensors may be freed during teardown
  return *s;
}

std::string own_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&own_dir), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string p = info.dli_fname;
  size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
}

void try_load_cuda(CudaState& st) {
  if (const char* off = std::getenv("VITRIM_DISABLE_CUDA"); off && *off && std::string(off) != "0") {
    st.reasons.push_back("disabled by VITRIM_DISABLE_CUDA");
    return;
  }
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("VITRIM_CUDA_LIB"); env && *env) candidates.push_back(env);
  std::string dir = own_dir();
  if (!dir.empty()) candidates.push_back(dir + "/libvitrim_cuda.so");
  for (const std::string& path : candidates) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      std::string msg = e ? e : "unknown dlopen error";
      const bool missing = msg.find("No such file") != std::string::npos;
      // scripts/install.cjs leaves a note beside the addon when the CUDA build failed at install
      std::string note;
      if (missing && !dir.empty() && path == dir + "/libvitrim_cuda.so") {
        std::ifstream f(dir + "/cuda-build-error.txt");
        std::getline(f, note);
      }
      if (!note.empty())
        st.reasons.push_back(note);
      else if (missing)
        st.reasons.push_back(path + " not found (it is built only where the CUDA toolkit with cuBLASLt is installed)");
      else
        st.reasons.push_back("cannot load " + path + ": " + msg);
      continue;
    }
    auto open = reinterpret_cast<CudaOpenFn>(dlsym(h, VITRIM_CUDA_OPEN_SYMBOL));
    if (!open) {
      st.reasons.push_back(path + " does not export " VITRIM_CUDA_OPEN_SYMBOL " (not a vitrim CUDA backend?)");
      dlclose(h);
      continue;
    }
    char why[512] = {0};
    const Backend* table = open(kBackendAbi, VITRIM_BUILD_ID, why, sizeof why);
    if (!table) {
      st.reasons.push_back(path + ": " + (why[0] ? why : "initialisation failed"));
      // Deliberately not dlclose'd: the library may have registered state with the driver.
      continue;
    }
    st.table.store(table);  // the library stays loaded for the life of the process
    return;
  }
}
}  // namespace

static const Backend& cpu_backend() {
  static const Backend* b = new Backend(make_cpu_backend());
  return *b;
}

static CudaState& ensure_cuda() {
  CudaState& st = cuda_state();
  std::call_once(st.once, [&] { try_load_cuda(st); });
  return st;
}

const Backend& backend(Device d) {
  if (d == Device::CPU) return cpu_backend();
  CudaState& st = ensure_cuda();
  if (const Backend* t = st.table.load()) return *t;
  std::string why;
  for (const std::string& r : st.reasons) why += "\n  - " + r;
  fail(ErrorKind::Device, "the cuda backend is not available:", why);
}

const Backend* loaded_backend(Device d) {
  if (d == Device::CPU) return &cpu_backend();
  return cuda_state().table.load(std::memory_order_acquire);
}

std::vector<BackendStatus> backend_status() {
  std::vector<BackendStatus> out;
  BackendStatus c;
  c.device = Device::CPU;
  c.available = true;
  c.detail = "cpu";
  out.push_back(c);
  CudaState& st = ensure_cuda();
  BackendStatus g;
  g.device = Device::CUDA;
  const Backend* t = st.table.load();
  g.available = t != nullptr;
  g.reasons = st.reasons;
  if (t) {
    try {
      g.detail = t->describe();
    } catch (const std::exception& e) {
      g.detail = std::string("(describe failed: ") + e.what() + ")";
    }
  }
  out.push_back(g);
  return out;
}

}  // namespace vitrim
