// The row kernels (rowkernels_impl.h) built with AVX-512; entered only via row_kernels() after the
// CPUID check. 256-bit vectors are preferred: with 512-bit auto-vectorisation these short, exp-bound
// rows (N = 197 at ViT lengths) measured ~10% slower than the AVX2 build on the development machine
// (AMD EPYC, Zen 4), and 1 ms slower per DeiT-S x8 attention forward; with 256-bit vectors
// (AVX-512VL encodings, 32 registers) they match or beat it.
#pragma GCC target("prefer-vector-width=256")
#include "rowkernels_impl.h"

VITRIM_ROW_KERNELS_TABLE(row_kernels_avx512, "avx512")
