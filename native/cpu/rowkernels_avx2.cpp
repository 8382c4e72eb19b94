// The row kernels (rowkernels_impl.h) built with AVX2+FMA; entered only via row_kernels() after the
// CPUID check.
#include "rowkernels_impl.h"

VITRIM_ROW_KERNELS_TABLE(row_kernels_avx2, "avx2")
