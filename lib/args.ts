/** Argument checks shared by the public entry points: each gives an ArgumentError naming the op and the argument. */
import { ArgumentError } from './errors.js';

export function num(x: unknown, what: string, op: string, check?: (v: number) => boolean, expect?: string): number {
  if (typeof x !== 'number' || Number.isNaN(x)) throw new ArgumentError(`${op}: ${what} must be a number, got ${show(x)}`);
  if (check && !check(x)) throw new ArgumentError(`${op}: ${what} must be ${expect}, got ${x}`);
  return x;
}

export function int(x: unknown, what: string, op: string, min = -Infinity, max = Infinity): number {
  if (typeof x !== 'number' || !Number.isInteger(x)) throw new ArgumentError(`${op}: ${what} must be an integer, got ${show(x)}`);
  if (x < min) throw new ArgumentError(`${op}: ${what} must be ≥ ${min}, got ${x}`);
  if (x > max) throw new ArgumentError(`${op}: ${what} must be ≤ ${max}, got ${x}`);
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

/** A value in an error message (never throws: objects by their tag, symbols and bigints spelt out). */
export function show(x: unknown): string {
  if (typeof x === 'bigint') return `${x}n`;
  if (typeof x === 'symbol') return x.toString();
  if (typeof x === 'function') return 'a function';
  if (Array.isArray(x)) return `[${x.map(show).join(', ')}]`;
  return typeof x === 'object' && x !== null ? Object.prototype.toString.call(x) : String(x);
}

/**
 * Refuses an async fn's result for a scope that must hold around all of fn (tidy, noGrad, autocast,
 * captureGraph): an ArgumentError to the caller, and the dropped promise's rejection caught, which
 * would otherwise be unhandled and end the Node process. `why` says what would go wrong after the
 * first await.
 */
export function refuseAsync(result: unknown, call: string, why: string): void {
  if (!(result instanceof Promise)) return;
  result.catch(() => {});
  throw new ArgumentError(`${call}: fn must be synchronous (${why}; the async fn was started and its promise dropped)`);
}
