/** Reductions over axes: sum, mean (differentiable), max (values only, no gradient). */
import { highIn, release } from '../autocast.js';
import { needsGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, int, intList, out } from './_util.js';

function normAxes(axes: number | readonly number[] | null | undefined, rank: number, op: string): number[] {
  if (axes === undefined || axes === null) return [];
  const list = typeof axes === 'number' ? [int(axes, 'axes', op)] : intList(axes, 'axes', op);
  return list.map((a) => (a < 0 ? a + rank : a));
}

function reduceOp(kind: 'sum' | 'mean', x0: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  handleOf(x0, 'x', kind);
  const temps: Tensor[] = [];
  const x = highIn(x0, temps); // float32 under autocast
  const hx = x.handle;
  const ax = normAxes(axes, x.rank, kind);
  const y = out(call(kind, () => native.reduce(kind, hx, ax, keepDims)));
  if (needsGrad(x)) {
    const xs = [...x.shape];
    const all = ax.length === 0 ? xs.map((_, i) => i) : ax;
    const kshape = xs.map((d, i) => (all.includes(i) ? 1 : d));
    const count = all.reduce((p, i) => p * xs[i], 1);
    record(y, kind, [x], (g) => {
      const gk = g.reshape(kshape);
      const z = native.full(xs, 0, gk.dtype, gk.device);
      const s = native.binary('add', z, gk);
      z.free();
      gk.free();
      if (kind === 'sum') return [s];
      const r = native.affine(s, 1 / count, 0);
      s.free();
      return [r];
    });
  }
  release(temps);
  return y;
}

/** Sum over `axes` (all when omitted). */
export const sum = (x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor => reduceOp('sum', x, axes, keepDims);
/** Mean over `axes` (all when omitted). */
export const mean = (x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor => reduceOp('mean', x, axes, keepDims);
/** Max over `axes` (no gradient). */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const hx = handleOf(x, 'x', 'max');
  const ax = normAxes(axes, x.rank, 'max');
  return out(call('max', () => native.reduce('max', hx, ax, keepDims)));
}
