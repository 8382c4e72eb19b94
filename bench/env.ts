/** Environment switches for bench rows that compare two native code paths in one run. */

/** Runs fn with the environment variable set (the native side reads it at each call), then restores it. */
export function withEnv<R>(name: string, value: string, fn: () => R): R {
  const prev = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env[name];
    else process.env[name] = prev;
  }
}
