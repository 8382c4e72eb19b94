// Run-time CPU feature detection (CPUID via the compiler builtins): a prebuilt binary must run on a
// machine without AVX-512, so SIMD paths are chosen here rather than at compile time.
#pragma once

namespace vitrim {
bool cpu_has_avx2_fma();
bool cpu_has_avx512f();
const char* cpu_isa();  // "avx512", "avx2" or "generic"; VITRIM_ISA=avx2|generic can lower it
}  // namespace vitrim
