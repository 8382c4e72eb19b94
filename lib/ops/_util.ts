/** Shared plumbing for the functional ops: argument checks, native calls with typed errors. */
import { ArgumentError, rethrow } from '../errors.js';
import type { NativeTensor } from '../native.js';
import { handleOf, Tensor } from '../tensor.js';

export { handleOf };

/** Calls native code, mapping its errors to typed errors prefixed with the op name. */
export function call<R>(op: string, f: () => R): R {
  try {
    return f();
  } catch (e) {
    rethrow(e, op);
  }
}

export function out(h: NativeTensor): Tensor {
  return new Tensor(h);
}

export function optHandle(x: Tensor | null | undefined, what: string, op: string): NativeTensor | null {
  return x === null || x === undefined ? null : handleOf(x, what, op);
}

export function num(x: unknown, what: string, op: string, check?: (v: number) => boolean, expect?: string): number {
  if (typeof x !== 'number' || Number.isNaN(x)) throw new ArgumentError(`${op}: ${what} must be a number, got ${String(x)}`);
  if (check && !check(x)) throw new ArgumentError(`${op}: ${what} must be ${expect}, got ${x}`);
  return x;
}

export function int(x: unknown, what: string, op: string, min = -Infinity): number {
  if (typeof x !== 'number' || !Number.isInteger(x)) throw new ArgumentError(`${op}: ${what} must be an integer, got ${String(x)}`);
  if (x < min) throw new ArgumentError(`${op}: ${what} must be ≥ ${min}, got ${x}`);
  return x;
}

/** Frees intermediate native handles (backward helpers). */
export function free(...hs: (NativeTensor | null | undefined)[]): void {
  for (const h of hs) h?.free();
}
