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

/** A list of integers (a shape, axes, a permutation); anything else is an ArgumentError. */
export function intList(x: unknown, what: string, op: string): number[] {
  if (!Array.isArray(x)) throw new ArgumentError(`${op}: ${what} must be an array of integers, got ${show(x)}`);
  for (const v of x) if (typeof v !== 'number' || !Number.isInteger(v)) throw new ArgumentError(`${op}: ${what} must hold integers, got ${show(v)}`);
  return [...x] as number[];
}

/** An optional boolean option: undefined means `dflt`; anything but a boolean is an ArgumentError. */
export function boolOpt(x: unknown, dflt: boolean, what: string, op: string): boolean {
  if (x === undefined) return dflt;
  if (typeof x !== 'boolean') throw new ArgumentError(`${op}: ${what} must be a boolean, got ${show(x)}`);
  return x;
}

/** An options argument: undefined or null mean none ({}); anything but an object is an ArgumentError. */
export function optsOf<O extends object>(x: O | null | undefined, op: string): Partial<O> {
  if (x === undefined || x === null) return {};
  if (typeof x !== 'object' || Array.isArray(x)) throw new ArgumentError(`${op}: options must be an object, got ${show(x)}`);
  return x;
}

function show(x: unknown): string {
  if (typeof x === 'bigint') return `${x}n`;
  if (Array.isArray(x)) return `[${x.map(show).join(', ')}]`;
  return typeof x === 'object' && x !== null ? Object.prototype.toString.call(x) : String(x);
}

/** Frees intermediate native handles (backward helpers). */
export function free(...hs: (NativeTensor | null | undefined)[]): void {
  for (const h of hs) h?.free();
}
