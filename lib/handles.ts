/**
 * Native handles made by a composition of native calls (a backward node, a statistic formed in
 * several ops) are freed by the code that made them; when a call in the middle throws (out of device
 * memory, say) the handles made before it would be left to the GC, which does not see device memory
 * and so may hold them through the caller's retry. `freeOnThrow(fn)` runs fn inside a native tracking
 * scope (native.trackBegin / trackEnd): on a throw, every handle fn made is freed before the error goes
 * on; on a return nothing is touched. fn must be synchronous and must not keep a handle it made
 * anywhere that outlives the throw (a cache, say): that handle would be freed too.
 */
import { native } from './native.js';

export function freeOnThrow<R>(fn: () => R): R {
  const scope = native.trackBegin();
  let ok = false;
  try {
    const r = fn();
    ok = true;
    return r;
  } finally {
    native.trackEnd(scope, !ok);
  }
}
