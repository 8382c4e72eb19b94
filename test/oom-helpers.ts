/**
 * Helpers of the out-of-memory tests (test/oom.test.ts, test/fuzz-ops.test.ts, test/cuda/oom.test.ts):
 * a training step's values with its gradients dropped afterwards, and the fault-injection sweep that
 * fails each allocation of a run on one device in turn (native.allocFaults).
 */
import { expect } from 'vitest';
import { tidy, type Device, type Tensor } from '../lib/index.js';
import { MemoryError } from '../lib/errors.js';
import { native } from '../lib/native.js';
import { RUN_SEED } from './helpers.js';

/** t's values; t disposed. */
export function readAndDispose(t: Tensor): number[] {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

/**
 * A training step's forward and backward (in tidy): the loss and the first 4 values of each of
 * `params`' gradients, which are dropped afterwards, also when the step throws (what a failed
 * backward accumulated into .grad is the caller's, as in PyTorch), so that a run leaves nothing.
 */
export function stepValues(params: Iterable<Tensor>, loss: () => Tensor): number[] {
  const ps = [...params];
  try {
    const l = tidy(() => {
      const t = loss();
      t.backward();
      return t;
    });
    const grads = ps.flatMap((q) => (q.grad ? Array.from(q.grad.dataSync().subarray(0, 4)) : []));
    return [...readAndDispose(l), ...grads];
  } finally {
    for (const q of ps) {
      q.grad?.dispose();
      q.grad = null;
    }
  }
}

/**
 * Runs `run` once as it is (then `plain(result, allocs)`, allocs: the allocations it made on
 * `device`, default cpu), then once per allocation k, failing the k-th and every later one, and
 * calls `failed(err, what)` after each with the hook disarmed (err: what run threw, undefined if
 * nothing). Returns the count.
 */
export async function eachAllocFailing<R>(
  run: () => R | Promise<R>,
  checks: { plain?: (result: R, allocs: number) => void; failed: (err: unknown, what: string) => void },
  device: Device = 'cpu',
): Promise<number> {
  native.allocFaults(device, 0);
  const result = await run();
  const allocs = native.allocFaults(device, 0);
  checks.plain?.(result, allocs);
  for (let k = 1; k <= allocs; k++) {
    native.allocFaults(device, k);
    let err: unknown;
    try {
      await run();
    } catch (e) {
      err = e;
    } finally {
      native.allocFaults(device, 0);
    }
    checks.failed(err, `failing from ${device} allocation ${k} of ${allocs} (seed ${RUN_SEED})`);
  }
  return allocs;
}

/**
 * eachAllocFailing over named entry points: a plain run leaves `live()` unchanged and makes more than
 * 3 allocations on `device`; each failing run throws a MemoryError (and passes `alsoFailed`) with
 * `live()` unchanged; after the sweep the entry point gives the plain run's numbers. Returns the
 * failure points checked.
 */
export async function eachCaseAllocFailing(
  cases: [string, () => number[]][],
  live: () => number,
  device: Device = 'cpu',
  alsoFailed?: (err: unknown, what: string) => void,
): Promise<number> {
  let points = 0;
  for (const [name, run] of cases) {
    const before = live();
    let want: number[] = [];
    const allocs = await eachAllocFailing(run, {
      plain: (result, n) => {
        want = result;
        expect(live(), `${name}: a plain run`).toBe(before);
        expect(n, name).toBeGreaterThan(3);
      },
      failed: (err, at) => {
        const what = `${name}, ${at}`;
        expect(err, `${what}: ${String(err)}`).toBeInstanceOf(MemoryError);
        alsoFailed?.(err, what);
        expect(live(), what).toBe(before);
        points++;
      },
    }, device);
    expect(run(), `${name}: after ${allocs} failures`).toEqual(want);
  }
  return points;
}
