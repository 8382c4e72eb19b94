// The row kernels (rowkernels_impl.h) for the baseline ISA, and the run-time choice between the
// baseline, AVX2 and AVX-512 builds of them.
#include "rowkernels_impl.h"
#include "vitrim/cpuinfo.h"

VITRIM_ROW_KERNELS_TABLE(row_kernels_generic, "generic")

namespace vitrim::cpu {

const RowKernels& row_kernels() {
  static const RowKernels* chosen = [] {
#if defined(__x86_64__) || defined(_M_X64)
    if (cpu_has_avx512f()) return &row_kernels_avx512();
    if (cpu_has_avx2_fma()) return &row_kernels_avx2();
#endif
    return &row_kernels_generic();
  }();
  return *chosen;
}

}  // namespace vitrim::cpu
