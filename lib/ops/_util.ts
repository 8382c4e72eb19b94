/** Shared plumbing for the functional ops: argument checks, native calls with typed errors. */
import { rethrow } from '../errors.js';
import type { NativeTensor } from '../native.js';
import { handleOf, Tensor } from '../tensor.js';

export { handleOf };
export { boolOpt, int, intList, num, optsOf } from '../args.js';

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

/** Frees intermediate native handles (backward helpers). */
export function free(...hs: (NativeTensor | null | undefined)[]): void {
  for (const h of hs) h?.free();
}
