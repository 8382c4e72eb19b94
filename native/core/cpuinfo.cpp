#include "vitrim/cpuinfo.h"

#include <cstdlib>
#include <cstring>

namespace vitrim {

static int isa_level() {
  static int level = [] {
    int l = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = 1;
    if (l == 1 && __builtin_cpu_supports("avx512f")) l = 2;
#endif
    if (const char* e = std::getenv("VITRIM_ISA")) {
      if (!std::strcmp(e, "generic")) l = 0;
      else if (!std::strcmp(e, "avx2") && l > 1) l = 1;
    }
    return l;
  }();
  return level;
}

bool cpu_has_avx2_fma() { return isa_level() >= 1; }
bool cpu_has_avx512f() { return isa_level() >= 2; }
const char* cpu_isa() { return isa_level() == 2 ? "avx512" : isa_level() == 1 ? "avx2" : "generic"; }

}  // namespace vitrim
