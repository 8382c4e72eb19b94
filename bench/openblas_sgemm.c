/* OpenBLAS side of the GEMM bench (bench/gemm.bench.ts compiles this at run time with
 * `cc -O2 openblas_sgemm.c -lopenblas`; it is a comparison only, never a dependency of vitrim).
 * Usage: openblas_sgemm REPS M,N,K,TA,TB [M,N,K,TA,TB ...]
 * Row-major C = A·B (TA/TB = 0|1 transposes), alpha 1, beta 0, inputs uniform in [-1, 1).
 * Prints one JSON object per line: first {"corename", "config", "threads"}, then per shape
 * {"M","N","K","ta","tb","median_s","best_s","gflops"} where gflops = 2MNK / median time,
 * measured after two warm-up calls. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char* openblas_get_corename(void);
extern char* openblas_get_config(void);
extern int openblas_get_num_threads(void);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s REPS M,N,K,TA,TB ...\n", argv[0]);
    return 2;
  }
  int reps = atoi(argv[1]);
  if (reps < 1) reps = 1;
  printf("{\"corename\":\"%s\",\"config\":\"%s\",\"threads\":%d}\n", openblas_get_corename(), openblas_get_config(),
         openblas_get_num_threads());
  fflush(stdout);
  unsigned s = 12345u;
  for (int a = 2; a < argc; ++a) {
    long M, N, K;
    int ta, tb;
    if (sscanf(argv[a], "%ld,%ld,%ld,%d,%d", &M, &N, &K, &ta, &tb) != 5) {
      fprintf(stderr, "bad shape %s\n", argv[a]);
      return 2;
    }
    float* A = malloc(sizeof(float) * M * K);
    float* B = malloc(sizeof(float) * K * N);
    float* C = malloc(sizeof(float) * M * N);
    double* t = malloc(sizeof(double) * reps);
    if (!A || !B || !C || !t) return 3;
    for (long i = 0; i < M * K; ++i) A[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    for (long i = 0; i < K * N; ++i) B[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    int lda = ta ? M : K, ldb = tb ? K : N;
    for (int w = 0; w < 2; ++w)
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                  lda, B, ldb, 0.0f, C, N);
    for (int r = 0; r < reps; ++r) {
      double t0 = now();
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                  lda, B, ldb, 0.0f, C, N);
      t[r] = now() - t0;
    }
    qsort(t, reps, sizeof(double), cmp);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    printf("{\"M\":%ld,\"N\":%ld,\"K\":%ld,\"ta\":%d,\"tb\":%d,\"median_s\":%.9f,\"best_s\":%.9f,\"gflops\":%.3f}\n", M,
           N, K, ta, tb, med, t[0], 2.0 * M * N * K / med * 1e-9);
    fflush(stdout);
    free(A);
    free(B);
    free(C);
    free(t);
  }
  return 0;
}
