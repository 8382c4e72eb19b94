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
