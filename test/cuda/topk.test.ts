/**
 * CUDA topk (native/cuda/topk.cu) against the CPU op on the same fresh random inputs, float32 and
 * bfloat16. The CPU's order is total (numeric; -0 == +0; NaN above +inf; ties to the lower index), so
 * the indices must be EQUAL and the values the same bits (Object.is: NaN, and the sign of zero).
 * Data is quantised (rows full of ties) and sprinkled with NaN, ±inf and -0. Shapes cover the
 * shared-memory sort (L <= 2048, down to L = 1), the global-memory fallback (L > 2048) and > 65535
 * rows.
 */
import { expect, it } from 'vitest';
import { native, type DType } from '../../lib/native.js';
import { expectCode, nt, numel, randn, rng } from '../helpers.js';
import { cudaAs, describeCuda, FLOAT_DTYPES, roundTo, toCuda, values } from './helpers.js';

/** Random data with many ties (multiples of 0.5, exact in bf16) and, optionally, special values. */
function tiedData(shape: number[], seed: number, specials: boolean): Float32Array {
  const x = randn(shape, seed, 2);
  const r = rng(seed + 1);
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.round(x[i] * 2) / 2;
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

function compare(data: Float32Array, shape: number[], k: number, largest: boolean, dtype: DType, what: string) {
  const x = roundTo(nt(data, shape), dtype);
  const [wv, wi] = native.topk(x, k, largest);
  const [gv, gi] = native.topk(cudaAs(x, dtype), k, largest);
  const outShape = [...shape.slice(0, -1), k];
  expect(gv.shape).toEqual(outShape);
  expect(gi.shape).toEqual(outShape);
  expect(gv.dtype).toBe(dtype);
  expect(gi.dtype).toBe('int32');
  expect(gi.device).toBe('cuda');
  const a = native.toDevice(gi, 'cpu').read() as Int32Array;
  const b = wi.read() as Int32Array;
  const av = values(gv);
  const bv = values(wv);
  for (let t = 0; t < b.length; t++) {
    if (a[t] !== b[t]) throw new Error(`${what}: index ${t} is ${a[t]}, the CPU says ${b[t]} (k=${k} largest=${largest})`);
    if (!Object.is(av[t], bv[t])) throw new Error(`${what}: value ${t} is ${av[t]}, the CPU says ${bv[t]}`);
  }
}

describeCuda('cuda topk', () => {
  const shapes: number[][] = [[1], [3], [17], [2, 3, 197], [8, 197], [64, 197], [5, 1000], [2, 2048], [3, 2049],
    [2, 5000], [70001, 3]];
  for (const dtype of FLOAT_DTYPES) {
    for (const specials of [false, true]) {
      it(`${dtype}${specials ? ' with NaN, ±inf, -0' : ''}: indices equal the CPU's, values bit-identical`, () => {
        shapes.forEach((shape, s) => {
          const L = shape[shape.length - 1];
          const x = tiedData(shape, numel(shape) + s + (specials ? 1 : 0), specials);
          const ks = [...new Set([1, Math.max(1, L >> 2), Math.max(1, L - 1), L])];
          for (const k of ks)
            for (const largest of [true, false]) compare(x, shape, k, largest, dtype, `[${shape}] ${dtype}`);
        });
      });
    }
  }

  it('distinct random values (no ties), ViT-sized rows and one long row', () => {
    for (const dtype of FLOAT_DTYPES) {
      compare(randn([256, 197], 5), [256, 197], 138, true, dtype, `distinct ${dtype}`);
      compare(randn([1, 70000], 6), [1, 70000], 700, false, dtype, `long row ${dtype}`);
    }
  });

  it('all-equal rows give indices 0..k-1; NaN rows by index', () => {
    const x = new Float32Array(24).fill(0.25);
    for (let j = 12; j < 24; j++) x[j] = Number.NaN;
    for (const largest of [true, false]) {
      const [, i] = native.topk(toCuda(nt(x, [2, 12])), 5, largest);
      expect(Array.from(native.toDevice(i, 'cpu').read())).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    }
  });

  it('k = 0 and empty leading dimensions give empty outputs', () => {
    const [v, i] = native.topk(toCuda(nt(randn([3, 4], 9), [3, 4])), 0, true);
    expect(v.shape).toEqual([3, 0]);
    expect(i.shape).toEqual([3, 0]);
    const [v2, i2] = native.topk(toCuda(nt(new Float32Array(0), [0, 5])), 2, true);
    expect(v2.shape).toEqual([0, 2]);
    expect(i2.shape).toEqual([0, 2]);
  });

  it('bad input gives typed errors and the op keeps working', () => {
    const x = toCuda(nt(randn([3, 8], 11), [3, 8]));
    expectCode(() => native.topk(x, 9, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(x, -1, true), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.topk(toCuda(nt([3], [])), 1, true), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.topk(toCuda(nt(new Int32Array(8), [2, 4])), 2, true), 'ERR_VITRIM_DTYPE');
    compare(randn([3, 8], 12), [3, 8], 3, true, 'float32', 'after errors');
  });
});
