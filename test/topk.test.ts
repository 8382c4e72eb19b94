/**
 * topk along the last axis (native/cpu/topk.cpp) against a JS full-sort reference with the documented
 * total order: numeric, -0 == +0, NaN above +inf, ties (and NaN vs NaN) broken by the lower index.
 * Data is quantised so that rows are full of ties, and sprinkled with NaN, ±inf and -0.
 */
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { expectCode, nt, numel, randn, rng } from './helpers.js';

function topkRef(x: Float32Array, shape: number[], k: number, largest: boolean) {
  const L = shape[shape.length - 1];
  const rows = L === 0 ? 0 : x.length / L;
  const vals = new Float32Array(rows * k);
  const idx = new Int32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: L }, (_, j) => j);
    const v = (j: number) => x[r * L + j];
    order.sort((a, b) => {
      const va = v(a);
      const vb = v(b);
      const na = Number.isNaN(va);
      const nb = Number.isNaN(vb);
      if (na && nb) return a - b;
      if (na) return largest ? -1 : 1;
      if (nb) return largest ? 1 : -1;
      if (va !== vb) return largest === va > vb ? -1 : 1; // -0 === 0: a tie
      return a - b;
    });
    for (let t = 0; t < k; t++) {
      idx[r * k + t] = order[t];
      vals[r * k + t] = v(order[t]);
    }
  }
  return { vals, idx };
}

/** Random data with many ties and special values. */
function tiedData(shape: number[], seed: number, specials: boolean): Float32Array {
  const x = randn(shape, seed, 2);
  const r = rng(seed + 1);
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.round(x[i] * 2) / 2; // a handful of distinct values: ties everywhere
    if (specials) {
      const u = r();
      if (u < 0.02) x[i] = Number.NaN;
      else if (u < 0.03) x[i] = Infinity;
      else if (u < 0.04) x[i] = -Infinity;
      else if (u < 0.08) x[i] = -0;
    }
  }
  return x;
}

function checkTopk(x: Float32Array, shape: number[], k: number, largest: boolean) {
  const [v, i] = native.topk(nt(x, shape), k, largest);
  const outShape = [...shape.slice(0, -1), k];
  expect(v.shape).toEqual(outShape);
  expect(i.shape).toEqual(outShape);
  expect(v.dtype).toBe('float32');
  expect(i.dtype).toBe('int32');
  const ref = topkRef(x, shape, k, largest);
  const gi = i.read() as Int32Array;
  const gv = v.read() as Float32Array;
  // indices exactly; values bit-for-bit (Object.is: NaN equals NaN, -0 differs from +0)
  for (let t = 0; t < gi.length; t++) {
    if (gi[t] !== ref.idx[t]) throw new Error(`index ${t}: got ${gi[t]}, want ${ref.idx[t]} (k=${k} largest=${largest} shape=${shape})`);
    if (!Object.is(gv[t], ref.vals[t])) throw new Error(`value ${t}: got ${gv[t]}, want ${ref.vals[t]}`);
  }
}

describe('topk', () => {
  const shapes: number[][] = [[1], [7], [3, 17], [2, 3, 197], [5, 1000], [2, 2, 2, 33]];
  for (const shape of shapes) {
    const L = shape[shape.length - 1];
    const ks = [...new Set([1, Math.max(1, L >> 2), Math.max(1, L - 1), L].filter((k) => k <= L))];
    for (const specials of [false, true]) {
      it(`shape [${shape}] with ties${specials ? ', NaN, ±inf, -0' : ''} matches the sort reference (k in ${ks})`, () => {
        const x = tiedData(shape, numel(shape) + (specials ? 1 : 0), specials);
        for (const k of ks) for (const largest of [true, false]) checkTopk(x, shape, k, largest);
      });
    }
  }

  it('on distinct random values returns the k extreme values in order', () => {
    const shape = [31, 150];
    const x = randn(shape, 5);
    for (const largest of [true, false]) {
      checkTopk(x, shape, 13, largest);
      const [v] = native.topk(nt(x, shape), 13, largest);
      const vv = v.read();
      for (let r = 0; r < 31; r++)
        for (let t = 1; t < 13; t++) {
          const a = vv[r * 13 + t - 1];
          const b = vv[r * 13 + t];
          expect(largest ? a >= b : a <= b).toBe(true);
        }
    }
  });

  it('all-equal rows give indices 0..k-1; NaN rows by index', () => {
    const x = new Float32Array(24).fill(0.25);
    for (let j = 12; j < 24; j++) x[j] = Number.NaN;
    const [, i] = native.topk(nt(x, [2, 12]), 5, true);
    expect(Array.from(i.read())).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    const [, i2] = native.topk(nt(x, [2, 12]), 5, false);
    expect(Array.from(i2.read())).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
  });

  it('k = 0 gives empty outputs; empty leading dimensions work', () => {
    const [v, i] = native.topk(nt(randn([3, 4], 9), [3, 4]), 0, true);
    expect(v.shape).toEqual([3, 0]);
    expect(i.shape).toEqual([3, 0]);
    const [v2, i2] = native.topk(nt(new Float32Array(0), [0, 5]), 2, true);
    expect(v2.shape).toEqual([0, 2]);
    expect(i2.shape).toEqual([0, 2]);
    const [v3] = native.topk(nt(new Float32Array(0), [4, 0]), 0, false);
    expect(v3.shape).toEqual([4, 0]);
  });

  it('is identical with 1 and 2 threads', () => {
    const shape = [600, 197];
    const x = nt(tiedData(shape, 77, true), shape);
    const threads = native.info().threads;
    try {
      native.setNumThreads(1);
      const [v1, i1] = native.topk(x, 70, true);
      native.setNumThreads(2);
      const [v2, i2] = native.topk(x, 70, true);
      expect(Buffer.from((i2.read() as Int32Array).buffer).equals(Buffer.from((i1.read() as Int32Array).buffer))).toBe(true);
      expect(Buffer.from((v2.read() as Float32Array).buffer).equals(Buffer.from((v1.read() as Float32Array).buffer))).toBe(true);
    } finally {
      native.setNumThreads(threads);
    }
  });

  it('throws typed errors on bad input and keeps working', () => {
    const x = nt(randn([3, 8], 11), [3, 8]);
    expectCode(() => native.topk(x, 9, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(x, -1, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(x, 1.5, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(x, Number.NaN, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(x, '2' as never, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(x, 2, 1 as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(nt([3], []), 1, true), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.topk(native.cast(x, 'int32'), 2, true), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.topk(native.cast(x, 'bfloat16'), 2, true), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.topk(undefined as never, 2, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(new Float32Array(4) as never, 2, true), 'ERR_VITRIM_ARGUMENT');
    const d = nt(randn([3, 8], 12), [3, 8]);
    d.free();
    expectCode(() => native.topk(d, 2, true), 'ERR_VITRIM_DISPOSED');
    checkTopk(x.read() as Float32Array, [3, 8], 3, true);
  });
});
