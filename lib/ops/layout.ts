/** Layout ops: reshape (a free view), permute, slice, concat. */
import { promote, release } from '../autocast.js';
import { needsGrad, record } from '../autograd.js';
import { ArgumentError } from '../errors.js';
import { native, type NativeTensor } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, int, intList, out } from './_util.js';

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const hx = handleOf(x, 'x', 'reshape');
  const s = intList(shape, 'shape', 'reshape');
  const y = out(call('reshape', () => hx.reshape(s)));
  if (needsGrad(x)) {
    const xs = [...x.shape];
    record(y, 'reshape', [x], (g) => [g.reshape(xs)]);
  }
  return y;
}

export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const hx = handleOf(x, 'x', 'permute');
  const p = intList(perm, 'perm', 'permute');
  const y = out(call('permute', () => native.permute(hx, p)));
  if (needsGrad(x)) {
    const inv = new Array<number>(p.length);
    p.forEach((q, i) => (inv[q] = i));
    record(y, 'permute', [x], (g) => [native.permute(g, inv)]);
  }
  return y;
}

/** Swaps two axes. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  handleOf(x, 'x', 'transpose');
  int(a, 'a', 'transpose');
  int(b, 'b', 'transpose');
  const r = x.rank;
  const perm = Array.from({ length: r }, (_, i) => i);
  const ia = a < 0 ? a + r : a;
  const ib = b < 0 ? b + r : b;
  if (!(ia >= 0 && ia < r && ib >= 0 && ib < r)) throw new ArgumentError(`transpose: axes ${a}, ${b} out of range for rank ${r}`);
  [perm[ia], perm[ib]] = [perm[ib], perm[ia]];
  return permute(x, perm);
}

/** x[..., start:end, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const hx = handleOf(x, 'x', 'slice');
  int(axis, 'axis', 'slice');
  int(start, 'start', 'slice');
  int(end, 'end', 'slice');
  const y = out(call('slice', () => native.slice(hx, axis, start, end)));
  if (needsGrad(x)) {
    const xs = [...x.shape];
    const ax = axis < 0 ? axis + xs.length : axis;
    const st = start < 0 ? start + xs[ax] : start;
    record(y, 'slice', [x], (g) => [native.sliceBackward(g, xs, ax, st)]);
  }
  return y;
}

/** Concatenates along `axis`; float32 with bfloat16 inputs gives float32 (type promotion). */
export function concat(xs0: readonly Tensor[], axis: number): Tensor {
  if (!Array.isArray(xs0) || xs0.length === 0) throw new ArgumentError('concat: needs a non-empty array of tensors');
  xs0.forEach((x, i) => handleOf(x, `xs[${i}]`, 'concat'));
  const temps: Tensor[] = [];
  const xs = promote(xs0, temps);
  const hs: NativeTensor[] = xs.map((x) => x.handle);
  int(axis, 'axis', 'concat');
  const y = out(call('concat', () => native.concat(hs, axis)));
  if (needsGrad(...xs)) {
    const rank = xs[0].rank;
    const ax = axis < 0 ? axis + rank : axis;
    const sizes = xs.map((x) => x.shape[ax]);
    record(y, 'concat', [...xs], (g) => {
      let at = 0;
      return sizes.map((n) => {
        const r = native.slice(g, ax, at, at + n);
        at += n;
        return r;
      });
    });
  }
  release(temps);
  return y;
}
