/** Environment switches that pick a native code path for one call (bench rows, CUDA tests). */

/**
 * Runs fn with the environment variable set (undefined: unset; the native side reads it at each
 * call), then restores it. The bench and the CUDA tests use it to pick a native code path.
 */
export function withEnv<R>(name: string, value: string | undefined, fn: () => R): R {
  const prev = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env[name];
    else process.env[name] = prev;
  }
}

/**
 * Runs fn with every Linear on cuBLASLt (VITRIM_CUDA_GEMM_F32 / _BF16 = cublaslt): the bench's
 * baseline rows and the tests name that path rather than assume it is the default.
 */
export function withCublasLt<R>(fn: () => R): R {
  return withEnv('VITRIM_CUDA_GEMM_F32', 'cublaslt', () => withEnv('VITRIM_CUDA_GEMM_BF16', 'cublaslt', fn));
}
