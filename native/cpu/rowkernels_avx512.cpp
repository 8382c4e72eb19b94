// The row kernels (rowkernels_impl.h) built with AVX-512; entered only via row_kernels() after the
// CPUID check.
#include "rowkernels_impl.h"

VITRIM_ROW_KERNELS_TABLE(row_kernels_avx512, "avx512")
