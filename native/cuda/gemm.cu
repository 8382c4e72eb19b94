// GEMMs on CUDA through cuBLASLt: matmul, linear_forward / linear_fused / linear_backward, the same
// names and signatures as native/cpu/gemm.cpp.
//
// Layout: our tensors are row-major, cuBLASLt is column-major. A row-major C[M,N] = op(A) op(B) is
// the column-major C^T[N,M] = op(B)^T op(A)^T, so every call passes B's memory as cuBLASLt's first
// operand and A's as its second, with the transposes kept (see lt_gemm). A bias over the output
// features is then a bias over cuBLASLt's rows: its BIAS epilogue.
// Precision: float32 tensors use CUBLAS_COMPUTE_32F (TF32 only after set_allow_tf32(true)); bf16
// tensors are bf16 in, fp32 accumulate, bf16 out. Bias has the dtype of the weight.
// GELU stays timm's exact erf: cuBLASLt's GELU epilogue is the tanh approximation, so linear_fused
// with GELU runs the GEMM with its bias epilogue and then one elementwise pass (gelu (+ residual)).
// Without GELU the residual is the GEMM's C (beta = 1, C != D), so it costs no extra pass.
// Mixed precision: bf16 x and weight with a float32 residual (autocast's residual stream) give a
// float32 y from one GEMM with bf16 A/B and float32 C/D: y = residual + x w^T + bias, accumulated
// in fp32 and rounded once to float32 (the bias may then be float32: the master bias, no cast). This
// replaces autocast eager's bf16 GEMM output + a float32 add pass (one write and a read+write of
// [M, N] less); the product is not rounded to bf16 first, so y differs from eager autocast's by at
// most that rounding. Where cuBLASLt has no kernel for the mixed types, the fallback is eager's
// numerics: the bf16 GEMM into a temporary, then one pass adding bias and residual in fp32.
// float32 linear_fused with TF32 off may instead run our 3xTF32 tensor-core kernel
// (VITRIM_CUDA_GEMM_F32=3xtf32; gemm_f32tc.cu), bf16 linear_fused our bf16 one
// (VITRIM_CUDA_GEMM_BF16=mma; gemm_bf16tc.cu), GELU and residual in their epilogues.
// linear_backward: gx = gy W and gw = gy^T x as two GEMMs, gb = the column sum of gy (own kernel,
// fp32 accumulation in a [row-block, N] partial buffer, then a second pass).
// Heuristic results are cached per problem (shapes, layouts, dtype, epilogue), so steady-state calls
// do no algorithm search.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "common.cuh"
#include "cublaslt_api.h"
#include "gemm_tc.cuh"
#include "vitrim/op_args.h"

namespace vitrim::cuda {

namespace {
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 32u << 20;
  bool tf32 = false;
  std::mutex mu;
  std::unordered_map<std::string, cublasLtMatmulAlgo_t> algos;
  std::unordered_set<std::string> none;  // problems without an algorithm (lt_gemm falls back)
};
Lt& lt() {
  static Lt* l = new Lt();
  return *l;
}

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(ErrorKind::Internal, "cuBLASLt ", what, " failed: ", cublasLtGetStatusString(s), " (", (int)s, ")");
}

// RAII holders so that a failing call never leaks descriptors.
struct Desc {
  cublasLtMatmulDesc_t d = nullptr;
  ~Desc() {
    if (d) cublasLtMatmulDescDestroy(d);
  }
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  ~Layout() {
    if (l) cublasLtMatrixLayoutDestroy(l);
  }
};
struct Pref {
  cublasLtMatmulPreference_t p = nullptr;
  ~Pref() {
    if (p) cublasLtMatmulPreferenceDestroy(p);
  }
};

cudaDataType_t lt_type(DType d) { return d == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

void make_layout(Layout& L, DType dt, uint64_t rows, uint64_t cols, int64_t ld, int batch, int64_t stride) {
  lt_check(cublasLtMatrixLayoutCreate(&L.l, lt_type(dt), rows, cols, ld), "MatrixLayoutCreate");
  if (batch > 1) {
    int32_t b = batch;
    lt_check(cublasLtMatrixLayoutSetAttribute(L.l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b), "BATCH_COUNT");
    lt_check(cublasLtMatrixLayoutSetAttribute(L.l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
             "STRIDED_BATCH_OFFSET");
  }
}
}  // namespace

// Row-major D[M,N] = op(A)[M,K] op(B)[K,N] (+ bias[N]) (+ C[M,N] when C != nullptr, beta = 1), over
// `batch` problems at element strides sA, sB, sD (sB = 0: B shared). A and B have dtype dt, C and D
// dto, the bias dbias.
// Returns false, having run nothing, when cuBLASLt offers no algorithm for the problem (remembered).
static bool lt_gemm_try(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const void* A,
                        int64_t lda, int64_t sA, const void* B, int64_t ldb, int64_t sB, void* D, int64_t ldd,
                        int64_t sD, const void* bias, const void* C, int batch, DType dto, DType dbias) {
  Lt& L = lt();
  VITRIM_CHECK(L.handle != nullptr, Internal, "cuBLASLt is not initialised");
  if (K == 0) {
    // cuBLASLt rejects K = 0; the product is zero, so D = bias (+ C) is an elementwise fill.
    fail(ErrorKind::Internal, "lt_gemm: K = 0 must be handled by the caller");
  }
  // Each pointer's alignment (part of the algorithm cache's key below). cuBLASLt's heuristic
  // assumes 256-byte aligned operands unless told otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*,
  // default 256) and may pick a kernel that faults on a less aligned one, so the preferences carry
  // the true alignment. Every tensor starts at an allocation (256-aligned) today; this keeps a
  // future view at an offset correct.
  auto align = [](const void* p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p) % a != 0) a >>= 1;
    return (int)a;
  };
  // Those preferences do not cover the BIAS epilogue's vector, whose kernels may assume 16 bytes:
  // an under-aligned bias takes the fallback (the plain GEMM, then a bias pass).
  if (bias && align(bias) < 16) return false;
  const bool tf32 = dt == DType::F32 && L.tf32;
  Desc op;
  lt_check(cublasLtMatmulDescCreate(&op.d, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F),
           "MatmulDescCreate");
  // cuBLASLt's first operand is our B, its second our A (see the header).
  cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N, opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  lt_check(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSA, &opB, sizeof opB), "TRANSA");
  lt_check(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSB, &opA, sizeof opA), "TRANSB");
  if (bias) {
    uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
    lt_check(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
    lt_check(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
             "BIAS_POINTER");
    cudaDataType_t bt = lt_type(dbias);
    lt_check(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt),
             "BIAS_DATA_TYPE");
  }
  // Column-major views: our B is [N,K] (transB) or [K,N] row-major -> col-major rows/cols swap.
  Layout la, lb, lc, lo;
  make_layout(la, dt, transB ? K : N, transB ? N : K, ldb, batch, sB);
  make_layout(lb, dt, transA ? M : K, transA ? K : M, lda, batch, sA);
  make_layout(lc, dto, N, M, ldd, batch, sD);
  // Out of place (a residual C that is not D): D gets a descriptor of its own, as cuBLASLt's API
  // tells the two cases apart (in place: C == D with Cdesc == Ddesc); not every algorithm writes
  // out of place.
  const bool out_of_place = C && C != D;
  if (out_of_place) make_layout(lo, dto, N, M, ldd, batch, sD);
  cublasLtMatrixLayout_t ld_l = out_of_place ? lo.l : lc.l;

  // Algorithm: cached per problem; the key holds everything the heuristic depends on.
  const uint32_t align_lt[4] = {(uint32_t)align(B), (uint32_t)align(A), (uint32_t)align(C ? C : D),
                                (uint32_t)align(D)};  // cuBLASLt's A, B, C, D
  char key[256];
  std::snprintf(key, sizeof key, "%d%d%d%d%d%d|%lld,%lld,%lld|%lld,%lld,%lld|%lld,%lld,%lld|%d|%d%d|%u,%u,%u,%u,%d", (int)dt,
                (int)dto, (int)dbias, transA, transB, tf32, (long long)M, (long long)N, (long long)K, (long long)lda,
                (long long)ldb, (long long)ldd, (long long)sA, (long long)sB, (long long)sD, batch, bias != nullptr,
                C ? 1 + out_of_place : 0, align_lt[0], align_lt[1], align_lt[2], align_lt[3], bias ? align(bias) : 0);
  // A problem without an algorithm is remembered (with L.mu held); the caller falls back.
  auto remember_none = [&] {
    if (L.none.size() > 4096) L.none.clear();
    L.none.emplace(key);
    return false;
  };
  cublasLtMatmulAlgo_t algo;
  bool have = false;
  {
    std::lock_guard<std::mutex> lk(L.mu);
    if (L.none.count(key)) return false;
    auto it = L.algos.find(key);
    if (it != L.algos.end()) {
      algo = it->second;
      have = true;
    }
  }
  if (!have) {
    Pref pref;
    lt_check(cublasLtMatmulPreferenceCreate(&pref.p), "PreferenceCreate");
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &L.workspace_bytes, sizeof L.workspace_bytes),
             "MAX_WORKSPACE_BYTES");
    const cublasLtMatmulPreferenceAttributes_t min_align[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; ++i)
      lt_check(cublasLtMatmulPreferenceSetAttribute(pref.p, min_align[i], &align_lt[i], sizeof align_lt[i]),
               "MIN_ALIGNMENT");
    cublasLtMatmulHeuristicResult_t res{};
    int n = 0;
    // cuBLASLt says "no algorithm" in either of two ways: CUBLAS_STATUS_NOT_SUPPORTED (what it does
    // for a type combination or epilogue it has no kernel for), or success with a count of 0.
    // Both are the fallback's case, not an error.
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(L.handle, op.d, la.l, lb.l, lc.l, ld_l, pref.p, 1, &res, &n);
    if (hs == CUBLAS_STATUS_NOT_SUPPORTED) n = 0;
    else lt_check(hs, "AlgoGetHeuristic");
    std::lock_guard<std::mutex> lk(L.mu);
    // A returned result carries its own status (the header: "inspect heuristicResultsArray[..].state").
    if (n <= 0 || res.state != CUBLAS_STATUS_SUCCESS) return remember_none();
    algo = res.algo;
    if (L.algos.size() > 4096) L.algos.clear();  // bound: shapes of a varlen workload keep changing
    L.algos.emplace(key, algo);
  }
  const float one = 1.f, zero = 0.f;
  const cublasStatus_t ms = cublasLtMatmul(L.handle, op.d, &one, B, la.l, A, lb.l, C ? &one : &zero, C ? C : D, lc.l,
                                           D, ld_l, &algo, L.workspace, L.workspace_bytes, stream());
  if (ms == CUBLAS_STATUS_NOT_SUPPORTED) {
    // The heuristic's algorithm turned out not to run this problem (it ran nothing): the problem
    // joins those without one, and the caller falls back.
    std::lock_guard<std::mutex> lk(L.mu);
    L.algos.erase(key);
    return remember_none();
  }
  lt_check(ms, "Matmul");
  return true;
}

namespace {
// y[m, n] = (src ? src[m, n] : y[m, n]) + bias[n] (+ c[m, n]) over row-major [M, N], in fp32.
template <class TD, class TS, class TB>
__global__ void add_bias_kernel(TD* y, const TS* src, const TB* bias, const TD* c, int64_t M, int64_t N) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x) {
    float v = src ? to_f(src[i]) : to_f(y[i]);
    if (bias) v += to_f(bias[i % N]);
    if (c) v += to_f(c[i]);
    y[i] = from_f<TD>(v);
  }
}
}  // namespace

// Test hook of the mixed fallback: VITRIM_CUDA_LT_NO_MIXED=1 treats every mixed-dtype problem as one
// cuBLASLt has no algorithm for (the emulation has them all). Read per call (a getenv is nothing
// next to a GEMM launch), so a test can flip it.
static bool lt_no_mixed() {
  const char* e = std::getenv("VITRIM_CUDA_LT_NO_MIXED");
  return e && *e && std::strcmp(e, "0") != 0;
}

// lt_gemm_try, or its fallbacks:
// - no algorithm for a strided batch (a batch count above 1; matmul's shared B with transA has a B
//   stride of 0, which not every algorithm may take): the batch's problems one at a time, each
//   with the single-problem fallbacks below. Slow (a launch per problem) but correct.
// The single-problem fallbacks (dense D):
// - no algorithm for bf16 A/B with float32 C/D: the bf16 GEMM (with the bias when it is bf16) into a
//   temporary, then one pass D = tmp (+ float32 bias) (+ C) in fp32;
// - no algorithm with the BIAS epilogue (alignment or dtype restrictions of the epilogue kernels):
//   the plain GEMM, then a bias pass;
// - no algorithm that writes out of place (a residual C that is not D): C copied into D, then the
//   GEMM in place (C == D), with the bias epilogue or else a bias pass.
static void lt_gemm(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                    int64_t sA, const void* B, int64_t ldb, int64_t sB, void* D, int64_t ldd, int64_t sD,
                    const void* bias, const void* C, int batch = 1, std::optional<DType> out_dtype = std::nullopt,
                    std::optional<DType> bias_dtype = std::nullopt) {
  if (M == 0 || N == 0) return;
  const DType dto = out_dtype.value_or(dt), dbias = bias_dtype.value_or(dto);
  const bool mixed = dto != dt;
  if (!(mixed && lt_no_mixed()) &&
      lt_gemm_try(dt, transA, transB, M, N, K, A, lda, sA, B, ldb, sB, D, ldd, sD, bias, C, batch, dto, dbias))
    return;
  auto none = [&] {
    fail(ErrorKind::Internal, "cuBLASLt has no algorithm for a ", dtype_name(dt), " GEMM M=", M, " N=", N, " K=", K,
         " (transA=", transA, ", transB=", transB, ", lda=", lda, ", ldb=", ldb, ", ldd=", ldd, ", batch=", batch,
         ", output ", dtype_name(dto), ")");
  };
  if (batch != 1) {
    const size_t ea = dtype_size(dt), ed = dtype_size(dto);
    for (int i = 0; i < batch; ++i)
      lt_gemm(dt, transA, transB, M, N, K, static_cast<const char*>(A) + i * sA * ea, lda, 0,
              static_cast<const char*>(B) + i * sB * ea, ldb, 0, static_cast<char*>(D) + i * sD * ed, ldd, 0, bias,
              C ? static_cast<const char*>(C) + i * sD * ed : nullptr, 1, dto, dbias);
    return;
  }
  if (ldd != N) none();
  if (mixed) {  // bf16 A/B, float32 C/D: the one mix linear_fused makes
    VITRIM_CHECK(dt == DType::BF16 && dto == DType::F32, Internal, "lt_gemm: unsupported dtype mix");
    Tensor tmp = alloc({M, N}, dt);
    const bool bias_in_gemm = bias && dbias == dt;
    lt_gemm(dt, transA, transB, M, N, K, A, lda, sA, B, ldb, sB, tmp.raw(), N, 0, bias_in_gemm ? bias : nullptr,
            nullptr);
    add_bias_kernel<float, bf16, float><<<grid_for(M * N, 256), 256, 0, stream()>>>(
        static_cast<float*>(D), ptr<bf16>(tmp), bias_in_gemm ? nullptr : static_cast<const float*>(bias),
        static_cast<const float*>(C), M, N);
    VITRIM_CUDA_LAUNCHED();
    return;
  }
  // The plain GEMM (the first attempt had the bias epilogue), then in place: C copied into D.
  auto plain_then_bias = [&](const void* c) {
    if (!bias || !lt_gemm_try(dt, transA, transB, M, N, K, A, lda, sA, B, ldb, sB, D, ldd, sD, nullptr, c, batch, dto,
                              dto))
      return false;
    dispatch_float(dt, "bias", [&](auto tag) {
      using T = decltype(tag);
      add_bias_kernel<T, T, T><<<grid_for(M * N, 256), 256, 0, stream()>>>(static_cast<T*>(D), nullptr,
                                                                          static_cast<const T*>(bias), nullptr, M, N);
      VITRIM_CUDA_LAUNCHED();
    });
    return true;
  };
  if (plain_then_bias(C)) return;
  if (C && C != D) {
    VITRIM_CUDA_CHECK(cudaMemcpyAsync(D, C, (size_t)(M * N) * dtype_size(dto), cudaMemcpyDeviceToDevice, stream()));
    if (lt_gemm_try(dt, transA, transB, M, N, K, A, lda, sA, B, ldb, sB, D, ldd, sD, bias, D, batch, dto, dbias) ||
        plain_then_bias(D))
      return;
  }
  none();
}

std::string gemm_init() {
  Lt& L = lt();
  cublasStatus_t s = cublasLtCreate(&L.handle);
  if (s != CUBLAS_STATUS_SUCCESS) return std::string("cublasLtCreate failed: ") + cublasLtGetStatusString(s);
  cudaError_t e = cudaMalloc(&L.workspace, L.workspace_bytes);
  if (e != cudaSuccess) return std::string("cannot allocate the cuBLASLt workspace: ") + cudaGetErrorString(e);
  return gemm_tc_init();
}

void set_allow_tf32(bool allow) { lt().tf32 = allow; }

// ---- elementwise helpers of this family ----
namespace {
template <class T, class TB>
__global__ void fill_bias_kernel(T* y, const TB* bias, const T* res, int64_t M, int64_t N) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x) {
    float v = bias ? to_f(bias[i % N]) : 0.f;
    if (res) v += to_f(res[i]);
    y[i] = from_f<T>(v);
  }
}

template <class T>
__global__ void gelu_residual_kernel(T* y, const T* res, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = gelu_exact(to_f(y[i]));
    if (res) v += to_f(res[i]);
    y[i] = from_f<T>(v);
  }
}

// The same over 16-byte packs (8 bf16 or 4 float32): the pass is memory-bound, and 2-byte accesses
// leave much of the bandwidth unused.
template <class T>
struct alignas(16) Pack16 {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};
template <class T>
__global__ void gelu_residual_pack_kernel(T* y, const T* res, int64_t npack) {
  using P = Pack16<T>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < npack; i += (int64_t)gridDim.x * blockDim.x) {
    P a = reinterpret_cast<const P*>(y)[i];
    P r;
    if (res) r = reinterpret_cast<const P*>(res)[i];
#pragma unroll
    for (int k = 0; k < P::kN; ++k) {
      float v = gelu_exact(to_f(a.v[k]));
      if (res) v += to_f(r.v[k]);
      a.v[k] = from_f<T>(v);
    }
    reinterpret_cast<P*>(y)[i] = a;
  }
}

// y = gelu(y) (+ res), in place: packs where y and res are 16-byte aligned, the tail element-wise.
template <class T>
void gelu_residual(T* y, const T* res, int64_t n) {
  int64_t done = 0;
  if ((uintptr_t)y % 16 == 0 && (uintptr_t)res % 16 == 0) {
    const int64_t npack = n / Pack16<T>::kN;
    if (npack) {
      gelu_residual_pack_kernel<T><<<grid_for(npack, 256), 256, 0, stream()>>>(y, res, npack);
      VITRIM_CUDA_LAUNCHED();
    }
    done = npack * Pack16<T>::kN;
  }
  if (done < n) {
    gelu_residual_kernel<T><<<grid_for(n - done, 256), 256, 0, stream()>>>(y + done, res ? res + done : nullptr,
                                                                            n - done);
    VITRIM_CUDA_LAUNCHED();
  }
}

// gb[n] = sum_m gy[m, n]: blocks of 32 columns x 8 row-groups; each thread sums a strided set of rows
// of one column (coalesced across the warp), partials reduced in shared memory, then written once
// per (row-chunk, column) and summed by a second tiny launch when more than one chunk.
template <class T>
__global__ void colsum_kernel(const T* g, float* part, int64_t M, int64_t N, int64_t rows_per_chunk) {
  __shared__ float sh[8][33];
  int64_t n = blockIdx.x * 32 + threadIdx.x;
  int64_t m0 = blockIdx.y * rows_per_chunk, m1 = min(M, m0 + rows_per_chunk);
  float acc = 0.f;
  if (n < N)
    for (int64_t m = m0 + threadIdx.y; m < m1; m += 8) acc += to_f(g[m * N + n]);
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && n < N) {
    float s = 0.f;
    for (int r = 0; r < 8; ++r) s += sh[r][threadIdx.x];
    part[blockIdx.y * N + n] = s;
  }
}
template <class T>
__global__ void colsum_finish_kernel(const float* part, T* out, int64_t chunks, int64_t N) {
  int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (n >= N) return;
  float s = 0.f;
  for (int64_t c = 0; c < chunks; ++c) s += part[c * N + n];
  out[n] = from_f<T>(s);
}
}  // namespace

static void column_sum(const Tensor& g, int64_t M, int64_t N, Tensor& out) {
  int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, M / 256), 4 * (int64_t)sm_count());
  int64_t rows_per_chunk = (M + chunks - 1) / chunks;
  chunks = M ? (M + rows_per_chunk - 1) / rows_per_chunk : 1;
  Tensor part = alloc({chunks, N}, DType::F32);
  dim3 block(32, 8), grid((unsigned)((N + 31) / 32), (unsigned)chunks);
  dispatch_float(g.dtype, "gy", [&](auto tag) {
    using T = decltype(tag);
    if (M == 0) {
      VITRIM_CUDA_CHECK(cudaMemsetAsync(part.raw(), 0, part.nbytes(), stream()));
    } else {
      colsum_kernel<T><<<grid, block, 0, stream()>>>(ptr<T>(g), ptr<float>(part), M, N, rows_per_chunk);
      VITRIM_CUDA_LAUNCHED();
    }
    colsum_finish_kernel<T><<<(unsigned)((N + 255) / 256), 256, 0, stream()>>>(ptr<float>(part), ptr<T>(out), chunks, N);
    VITRIM_CUDA_LAUNCHED();
  });
}

// ---- argument checks shared by the linear ops (same messages as the CPU's check_linear) ----
static void check_linear(const Tensor& x, const Tensor& w, const char* op) {
  check_float_cuda(x, "x");
  check_float_cuda(w, "weight");
  VITRIM_CHECK(x.dtype == w.dtype, DType, op, ": x is ", dtype_name(x.dtype), " but weight is ", dtype_name(w.dtype));
  check_rank(w, 2, "weight");
  VITRIM_CHECK(x.dim() >= 1, Shape, op, ": x must have at least 1 dimension");
  VITRIM_CHECK(x.size(-1) == w.size(1), Shape, op, ": x ", shape_str(x.shape), " has ", x.size(-1),
               " features but weight ", shape_str(w.shape), " expects ", w.size(1));
}
// The bias has the weight's dtype; with a float32 output from bf16 operands (mixed) it may also be
// float32.
static void check_bias(const std::optional<Tensor>& bias, const Tensor& w, int64_t N, bool mixed = false) {
  if (!bias) return;
  check_float_cuda(*bias, "bias");
  VITRIM_CHECK(bias->dtype == w.dtype || (mixed && bias->dtype == DType::F32), DType, "bias is ",
               dtype_name(bias->dtype), " but weight is ", dtype_name(w.dtype));
  check_shape(*bias, {N}, "bias");
}

// y = bias (+ res) when K = 0 (the GEMM's sum is empty).
static void fill_k0(const Tensor& y, const std::optional<Tensor>& bias, const Tensor* res, int64_t M, int64_t N) {
  dispatch_float(y.dtype, "y", [&](auto tag) {
    using T = decltype(tag);
    dispatch_float(bias ? bias->dtype : y.dtype, "bias", [&](auto btag) {
      using TB = decltype(btag);
      // a float32 bias comes only with a float32 y (check_bias): no bf16 y / float32 bias kernel
      if constexpr (std::is_same_v<T, bf16> && !std::is_same_v<TB, bf16>) {
        fail(ErrorKind::Internal, "linear: a float32 bias with a bfloat16 output");
      } else {
        fill_bias_kernel<T, TB><<<grid_for(M * N, 256), 256, 0, stream()>>>(
            ptr<T>(y), bias ? ptr<TB>(*bias) : nullptr, res ? ptr<T>(*res) : nullptr, M, N);
        VITRIM_CUDA_LAUNCHED();
      }
    });
  });
}

Tensor matmul(const Tensor& a, const Tensor& b, bool transA, bool transB) {
  check_float_cuda(a, "a");
  check_float_cuda(b, "b");
  VITRIM_CHECK(a.dtype == b.dtype, DType, "matmul: a is ", dtype_name(a.dtype), " but b is ", dtype_name(b.dtype));
  const MatmulPlan plan = plan_matmul(a, b, transA, transB);
  const int64_t M = plan.M, N = plan.N, K = plan.K, nb = plan.batch;
  const bool shared_b = plan.shared_b;
  const Shape& os = plan.out;
  Tensor c = alloc(os, a.dtype);
  if (c.numel() == 0) return c;
  if (K == 0) {
    fill_k0(c, std::nullopt, nullptr, nb * M, N);
    return c;
  }
  const int64_t lda = a.size(-1), ldb = b.size(-1);
  if (shared_b && !transA) {
    lt_gemm(a.dtype, false, transB, nb * M, N, K, a.raw(), lda, 0, b.raw(), ldb, 0, c.raw(), N, 0, nullptr, nullptr);
    return c;
  }
  // cuBLASLt's batch count is an int32; split larger batches.
  const int64_t esz = (int64_t)dtype_size(a.dtype);
  for (int64_t i0 = 0; i0 < nb; i0 += (1 << 30)) {
    int cnt = (int)std::min<int64_t>(nb - i0, 1 << 30);
    const char* A = static_cast<const char*>(a.raw()) + i0 * M * K * esz;
    const char* B = static_cast<const char*>(b.raw()) + (shared_b ? 0 : i0 * K * N * esz);
    char* C = static_cast<char*>(c.raw()) + i0 * M * N * esz;
    lt_gemm(a.dtype, transA, transB, M, N, K, A, lda, M * K, B, ldb, shared_b ? 0 : K * N, C, N, M * N, nullptr,
            nullptr, cnt);
  }
  return c;
}

Tensor linear_fused(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias, cpu::Activation act,
                    const std::optional<Tensor>& residual);

Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias) {
  return cuda::linear_fused(x, w, bias, cpu::Activation::None, std::nullopt);
}

Tensor linear_fused(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias, cpu::Activation act,
                    const std::optional<Tensor>& residual) {
  check_linear(x, w, "linear");
  VITRIM_CHECK(act == cpu::Activation::None || act == cpu::Activation::Gelu, Argument,
               "linear_fused: unknown activation");
  int64_t N = w.size(0), K = w.size(1);
  int64_t M = shape_numel(Shape(x.shape.begin(), x.shape.end() - 1));
  Shape os = x.shape;
  os.back() = N;
  // bf16 operands with a float32 residual: a float32 y (see the header).
  bool mixed = false;
  if (residual) {
    check_float_cuda(*residual, "residual");
    mixed = x.dtype == DType::BF16 && residual->dtype == DType::F32;
    VITRIM_CHECK(residual->dtype == x.dtype || mixed, DType, "residual is ", dtype_name(residual->dtype),
                 " but x is ", dtype_name(x.dtype));
    check_shape(*residual, os, "residual");
  }
  check_bias(bias, w, N, mixed);
  const DType yt = mixed ? DType::F32 : x.dtype;
  Tensor y = alloc(os, yt);
  if (y.numel() == 0) return y;
  const bool gelu = act == cpu::Activation::Gelu;
  if (yt == DType::F32 && x.dtype == DType::F32 && !lt().tf32 && linear_f32tc_selected() &&
      linear_f32tc_fits(x.raw(), w.raw(), K)) {
    // 3xTF32 on tensor cores, bias, GELU and residual in its epilogue (gemm_f32tc.cu)
    linear_f32tc(ptr<float>(x), ptr<float>(w), bias ? ptr<float>(*bias) : nullptr,
                 residual ? ptr<float>(*residual) : nullptr, ptr<float>(y), M, N, K, gelu);
    return y;
  }
  if (x.dtype == DType::BF16 && linear_bf16tc_selected() && linear_bf16tc_fits(x.raw(), w.raw(), K)) {
    // our bf16 tensor-core kernel, bias, GELU and residual in its epilogue (gemm_bf16tc.cu)
    linear_bf16tc(ptr<bf16>(x), ptr<bf16>(w), bias ? bias->raw() : nullptr, bias ? bias->dtype : DType::BF16,
                  residual ? residual->raw() : nullptr, y.raw(), yt, M, N, K, gelu);
    return y;
  }
  // Without GELU the residual rides in the GEMM as C; with GELU it is added after the activation.
  const Tensor* res_in_gemm = (!gelu && residual) ? &*residual : nullptr;
  if (K == 0) {
    fill_k0(y, bias, res_in_gemm, M, N);
  } else {
    lt_gemm(x.dtype, false, true, M, N, K, x.raw(), K, 0, w.raw(), K, 0, y.raw(), N, 0, bias ? bias->raw() : nullptr,
            res_in_gemm ? res_in_gemm->raw() : nullptr, 1, yt, bias ? std::optional<DType>(bias->dtype) : std::nullopt);
  }
  if (gelu) {
    dispatch_float(y.dtype, "x", [&](auto tag) {
      using T = decltype(tag);
      gelu_residual<T>(ptr<T>(y), residual ? ptr<T>(*residual) : nullptr, y.numel());
    });
  }
  return y;
}

std::tuple<Tensor, Tensor, std::optional<Tensor>> linear_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                                                  bool need_bias) {
  check_linear(x, w, "linear_backward");
  check_float_cuda(gy, "gy");
  VITRIM_CHECK(gy.dtype == x.dtype, DType, "linear_backward: gy is ", dtype_name(gy.dtype), " but x is ",
               dtype_name(x.dtype));
  int64_t N = w.size(0), K = w.size(1);
  int64_t M = shape_numel(Shape(x.shape.begin(), x.shape.end() - 1));
  Shape gs = x.shape;
  gs.back() = N;
  check_shape(gy, gs, "gy");
  Tensor gx = alloc(x.shape, x.dtype);
  if (gx.numel()) {
    if (N == 0) VITRIM_CUDA_CHECK(cudaMemsetAsync(gx.raw(), 0, gx.nbytes(), stream()));
    else lt_gemm(x.dtype, false, false, M, K, N, gy.raw(), N, 0, w.raw(), K, 0, gx.raw(), K, 0, nullptr, nullptr);
  }
  Tensor gw = alloc(w.shape, w.dtype);
  if (gw.numel()) {
    if (M == 0) VITRIM_CUDA_CHECK(cudaMemsetAsync(gw.raw(), 0, gw.nbytes(), stream()));
    else lt_gemm(x.dtype, true, false, N, K, M, gy.raw(), N, 0, x.raw(), K, 0, gw.raw(), K, 0, nullptr, nullptr);
  }
  std::optional<Tensor> gb;
  if (need_bias) {
    gb = alloc({N}, w.dtype);
    if (N) column_sum(gy, M, N, *gb);
  }
  return {gx, gw, gb};
}

VITRIM_CUDA_OP(matmul);
VITRIM_CUDA_OP(linear_forward);
VITRIM_CUDA_OP(linear_fused);
VITRIM_CUDA_OP(linear_backward);

}  // namespace vitrim::cuda
