import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { native, type ReduceOp } from '../lib/native.js';
import { RUN_SEED, expectClose, expectCode, nt, randint, randn } from './helpers.js';
import { expectExact, reduceRef, subsets } from './nd_ref.js';

const threads0 = native.info().threads;
afterAll(() => native.setNumThreads(threads0));
const OPS: ReduceOp[] = ['sum', 'mean', 'max'];

/** Compare native reduce with the float64 reference; `axes` as passed (may be negative or empty). */
function check(op: ReduceOp, shape: number[], axes: number[], keepDims: boolean, seed: number, data?: Float32Array) {
  const x = data ?? randn(shape, seed);
  const y = native.reduce(op, nt(x, shape), axes, keepDims);
  const norm = axes.length === 0 ? shape.map((_, i) => i) : axes.map((a) => (a < 0 ? a + shape.length : a));
  const ref = reduceRef(op, x, shape, norm, keepDims);
  const what = `${op} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)} keep=${keepDims}`;
  expect(y.shape, what).toEqual(ref.shape);
  if (op === 'max') expectExact(y.read(), Float32Array.from(ref.data), what);
  else expectClose(y.read(), ref.data, 1e-6, what);
}

describe('reduce', () => {
  it('every subset of axes of small shapes, each op, with and without keepDims', () => {
    const shapes = [[2, 3, 4], [5], [3, 1, 4, 2], [17, 7], [2, 3, 4, 5], [1, 1, 3]];
    shapes.forEach((shape, si) => {
      for (const axes of subsets(shape.length)) {
        if (axes.length === 0) continue; // empty list means "all axes": its own test
        for (const op of OPS) for (const keep of [false, true]) check(op, shape, axes, keep, si * 100 + axes.length);
      }
    });
  });

  it('negative axes count from the end', () => {
    for (const op of OPS) {
      check(op, [2, 3, 4], [-1], false, 1);
      check(op, [2, 3, 4], [-3, -1], true, 2);
      check(op, [2, 3, 4], [0, -2], false, 3);
    }
  });

  it('an empty axes list reduces everything to a scalar [] (all ones with keepDims)', () => {
    const x = randn([3, 4, 5], 4);
    for (const op of OPS) {
      const y = native.reduce(op, nt(x, [3, 4, 5]), [], false);
      expect(y.shape).toEqual([]);
      check(op, [3, 4, 5], [], false, 4);
      expect(native.reduce(op, nt(x, [3, 4, 5]), [], true).shape).toEqual([1, 1, 1]);
    }
    // a rank-0 tensor reduces to itself
    expect(Array.from(native.reduce('mean', nt([2.5], []), [], false).read())).toEqual([2.5]);
  });

  it('large reductions take each threaded path (rows, columns in blocks, full, bias-gradient pattern)', () => {
    for (const op of OPS) {
      check(op, [3, 100003], [1], false, 11); // contiguous runs per output
      check(op, [40, 1003], [0], false, 12); // column accumulation, several 512-column blocks
      check(op, [200003], [], false, 13); // full reduction in fixed chunks
      check(op, [64, 197, 48], [0, 1], false, 14); // sum over [B, N] of [B, N, C]
      check(op, [64, 197, 48], [1], true, 15);
      check(op, [16, 197, 48], [0, 2], false, 16); // reduced - kept - reduced
      check(op, [4, 50, 6, 70], [1, 3], false, 17); // kept - reduced - kept - reduced
    }
  });

  it('sums accumulate in double: 1e8 followed by 1000 ones is exact (float accumulation gives 1e8)', () => {
    const n = 1001;
    const x = new Float32Array(n).fill(1);
    x[0] = 1e8;
    expect(native.reduce('sum', nt(x, [n]), [0], false).read()[0]).toBe(100001000);
    // the same along a strided (column) reduction and a row reduction with 3 outputs
    const cols = new Float32Array(n * 3).fill(1);
    for (let c = 0; c < 3; c++) cols[c] = 1e8;
    expect(Array.from(native.reduce('sum', nt(cols, [n, 3]), [0], false).read())).toEqual([100001000, 100001000, 100001000]);
    const rows = new Float32Array(3 * n).fill(1);
    for (let r = 0; r < 3; r++) rows[r * n] = 1e8;
    expect(Array.from(native.reduce('sum', nt(rows, [3, n]), [1], false).read())).toEqual([100001000, 100001000, 100001000]);
    expect(native.reduce('mean', nt(x, [n]), [], false).read()[0]).toBe(Math.fround(100001000 / n));
  });

  it('results do not depend on the thread count', () => {
    const shapes: [number[], number[]][] = [
      [[300007], []],
      [[3, 100003], [1]],
      [[40, 1003], [0]],
    ];
    for (const [shape, axes] of shapes) {
      const x = nt(randn(shape, 21), shape);
      native.setNumThreads(1);
      const a = native.reduce('sum', x, axes, false).read();
      native.setNumThreads(Math.max(2, threads0));
      const b = native.reduce('sum', x, axes, false).read();
      native.setNumThreads(threads0);
      expectExact(a, b, `threads ${JSON.stringify(shape)}`);
    }
  });

  it('max propagates NaN (as PyTorch); empty reductions: sum 0, mean NaN, max is an error', () => {
    const x = randn([3, 5], 5);
    x[7] = Number.NaN; // row 1
    const m = native.reduce('max', nt(x, [3, 5]), [1], false).read();
    expect(Number.isNaN(m[1])).toBe(true);
    expect(Number.isNaN(m[0]) || Number.isNaN(m[2])).toBe(false);
    const mc = native.reduce('max', nt(x, [3, 5]), [0], false).read();
    expect(Number.isNaN(mc[2])).toBe(true);
    expect(Number.isNaN(native.reduce('max', nt(x, [3, 5]), [], false).read()[0])).toBe(true);

    const e = nt(new Float32Array(0), [0, 3]);
    expect(Array.from(native.reduce('sum', e, [0], false).read())).toEqual([0, 0, 0]);
    expect(native.reduce('mean', e, [0], false).read().every(Number.isNaN)).toBe(true);
    expectCode(() => native.reduce('max', e, [0], false), 'ERR_VITRIM_SHAPE');
    expect(native.reduce('max', e, [1], false).shape).toEqual([0]);
  });

  it('property: random shapes and axis sets match the float64 reference', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        fc.constantFrom(...OPS),
        fc.boolean(),
        fc.nat(1000),
        (shape, pick, neg, op, keep, seed) => {
          const axes = shape.map((_, i) => i).filter((i) => pick[i]).map((i) => (neg[i] ? i - shape.length : i));
          check(op, shape, axes, keep, seed);
        },
      ),
      { numRuns: 200, seed: RUN_SEED },
    );
  });

  it('bad input gives typed errors and the op still works after', () => {
    const s = [2, 3, 4];
    const x = nt(randn(s, 1), s);
    expectCode(() => native.reduce('sum', x, [3], false), 'ERR_VITRIM_INDEX');
    expectCode(() => native.reduce('sum', x, [-4], false), 'ERR_VITRIM_INDEX');
    expectCode(() => native.reduce('sum', nt([1], []), [0], false), 'ERR_VITRIM_INDEX');
    expectCode(() => native.reduce('sum', x, [1, 1], false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.reduce('max', x, [1, -2], false), 'ERR_VITRIM_ARGUMENT'); // the same axis twice
    expectCode(() => native.reduce('min' as never, x, [0], false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.reduce('sum', x, [0.5], false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.reduce('sum', x, 0 as never, false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.reduce('sum', x, [0], 1 as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.reduce('sum', nt(randint(s, 2, 4), s), [0], false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.reduce('sum', native.cast(x, 'bfloat16'), [0], false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.reduce('sum', {} as never, [0], false), 'ERR_VITRIM_ARGUMENT');
    const f = nt(randn(s, 3), s);
    f.free();
    expectCode(() => native.reduce('sum', f, [0], false), 'ERR_VITRIM_DISPOSED');
    check('mean', s, [1], false, 4);
  });
});

describe('sumSquares', () => {
  it('Σ Σ x² over a list of tensors, in double, independent of the thread count', () => {
    const shapes = [[3], [2, 5, 7], [70001], [1], [0, 4], [300, 300]];
    const xs = shapes.map((s, i) => randn(s, 900 + i, 0.3 + i));
    let want = 0;
    for (const x of xs) for (const v of x) want += v * v;
    const hs = xs.map((x, i) => nt(x, shapes[i]));
    const y = native.sumSquares(hs);
    expect(y.shape).toEqual([1]);
    expect(y.dtype).toBe('float32');
    expect(y.read()[0]).toBe(Math.fround(want)); // a double sum rounded once: the float64 reference's rounding
    native.setNumThreads(1);
    expect(native.sumSquares(hs).read()).toEqual(y.read());
    native.setNumThreads(threads0);
    expect(native.sumSquares([]).read()).toEqual(Float32Array.of(0));
    // 1e4² + 1000 · 1² is exact in double (float accumulation would drop the ones)
    expect(native.sumSquares([nt(Float32Array.of(1e4), [1]), nt(new Float32Array(1000).fill(1), [1000])]).read()[0]).toBe(1e8 + 1000);
  });

  it('bad input gives typed errors, then works', () => {
    const x = nt(randn([4], 950), [4]);
    expectCode(() => native.sumSquares([x, native.cast(x, 'int32')]), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.sumSquares([x, native.cast(x, 'bfloat16')]), 'ERR_VITRIM_DTYPE'); // the CPU computes float32
    expectCode(() => native.sumSquares(x as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.sumSquares([x, null as never]), 'ERR_VITRIM_ARGUMENT');
    const d = nt(randn([4], 951), [4]);
    d.free();
    expectCode(() => native.sumSquares([x, d]), 'ERR_VITRIM_DISPOSED');
    const v = x.read() as Float32Array;
    expect(native.sumSquares([x]).read()[0]).toBe(Math.fround(v.reduce((s, a) => s + a * a, 0)));
  });
});
