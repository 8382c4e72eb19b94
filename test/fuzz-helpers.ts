/**
 * Shared by the public-API fuzzers (fuzz-ops, fuzz-api, fuzz-data, io-fuzz): what counts as an
 * accepted failure, how a call is named in a counterexample, and the property loop over plain
 * argument tuples. (The native fuzzer, fuzz-native.ts, checks error codes of untyped native errors.)
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { Tensor, VitrimError } from '../lib/index.js';
import { RUN_SEED } from './helpers.js';

/** A failure the library may end a bad call with: a typed VitrimError other than an internal one. */
export function isTypedError(e: unknown): boolean {
  return e instanceof VitrimError && e.code !== 'ERR_VITRIM_INTERNAL';
}

/** f() returns (a returned Tensor is disposed) or throws a typed error; anything else fails, naming `what`. */
export function expectTypedOrOk(what: string, f: () => unknown): void {
  try {
    const r = f();
    if (r instanceof Tensor) r.dispose();
  } catch (e) {
    if (!isTypedError(e)) throw new Error(`${what} threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
  }
}

/** An argument as a counterexample shows it (bigints, functions and typed arrays spelt out; never throws). */
export function showArg(x: unknown): string {
  try {
    return JSON.stringify(x, (_, v) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'function' ? 'fn'
      : ArrayBuffer.isView(v) ? `${v.constructor.name}(${(v as Uint8Array).length})` : v)) ?? String(x);
  } catch {
    return String(x);
  }
}

/** `runs` calls of f on argument tuples drawn from `arbs`: each returns or throws a typed error. */
export function fuzzCalls<A extends unknown[]>(arbs: { [K in keyof A]: fc.Arbitrary<A[K]> }, name: string, f: (...a: A) => unknown,
  seed: number, runs: number): void {
  fc.assert(
    fc.property(fc.tuple(...(arbs as fc.Arbitrary<unknown>[])), (args) =>
      expectTypedOrOk(`${name}(${(args as unknown[]).map(showArg).join(', ')})`, () => f(...(args as A)))),
    { numRuns: runs, seed: RUN_SEED + seed },
  );
}

/** f() throws an error of class `cls` whose message matches `msg`. */
export function expectThrowsLike(f: () => unknown, cls: new (...a: never[]) => Error, msg: RegExp): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, String(f)).toBeInstanceOf(cls);
  expect((err as Error).message).toMatch(msg);
}
