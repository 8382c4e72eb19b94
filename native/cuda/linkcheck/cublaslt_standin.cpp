// A stand-in for libcublasLt, for a link check only; never a GEMM library.
//
// Where nvcc exists but cuBLASLt does not (our CI), CMake still compiles every .cu file, and also
// links those same objects into libvitrim_cuda_linkcheck.so against this library, with
// -Wl,--no-undefined and the real library's version script. test/cuda-link.test.ts then loads it
// through the addon's loader (dlopen RTLD_NOW, the exported open function, the ABI and build-id
// checks, cudart's driver check), so a symbol that only a GPU machine would find missing (a cudart
// or driver entry point outside cudart_static, a declared but undefined function, a broken export)
// fails on CI instead.
//
// The definitions take their signatures from native/cuda/cublaslt_api.h's fallback declarations, the
// ones the objects were compiled against. Each one fails with CUBLAS_STATUS_NOT_INITIALIZED (1), so
// that a backend opened on a GPU machine against this library reports its cuBLASLt as unusable
// instead of computing anything.
#include "cublaslt_api.h"

#if defined(VITRIM_HAVE_CUBLASLT)
#error "the cuBLASLt stand-in is built only where the real cuBLASLt is absent"
#endif

namespace {
constexpr cublasStatus_t kStandIn = static_cast<cublasStatus_t>(1);
}

extern "C" {
cublasStatus_t cublasLtCreate(cublasLtHandle_t*) { return kStandIn; }
const char* cublasLtGetStatusString(cublasStatus_t) {
  return "vitrim's link-check stand-in, not cuBLASLt (libvitrim_cuda_linkcheck.so is for the link check only)";
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t*, cublasComputeType_t, cudaDataType_t) { return kStandIn; }
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t) { return kStandIn; }
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t, cublasLtMatmulDescAttributes_t, const void*, size_t) {
  return kStandIn;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t*, cudaDataType, uint64_t, uint64_t, int64_t) {
  return kStandIn;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t) { return kStandIn; }
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t, cublasLtMatrixLayoutAttribute_t, const void*,
                                                size_t) {
  return kStandIn;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t*) { return kStandIn; }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t) { return kStandIn; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                                    const void*, size_t) {
  return kStandIn;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int, cublasLtMatmulHeuristicResult_t[],
                                              int* returned) {
  if (returned) *returned = 0;
  return kStandIn;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t, const void*, const void*, cublasLtMatrixLayout_t,
                              const void*, cublasLtMatrixLayout_t, const void*, const void*, cublasLtMatrixLayout_t,
                              void*, cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
  return kStandIn;
}
}
