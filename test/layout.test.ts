import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { native, type NativeTensor } from '../lib/native.js';
import { RUN_SEED, absDot, dot, expectCode, nt, randint, randn } from './helpers.js';
import { expectExact, permutations, permuteRef, sliceRef, size } from './nd_ref.js';

function badTensor(call: (t: NativeTensor) => unknown, shape: number[], dtypeCheck = false): void {
  const f = nt(randn(shape, 1), shape);
  f.free();
  expectCode(() => call(f), 'ERR_VITRIM_DISPOSED');
  expectCode(() => call({} as never), 'ERR_VITRIM_ARGUMENT');
  expectCode(() => call(7 as never), 'ERR_VITRIM_ARGUMENT');
  if (dtypeCheck) expectCode(() => call(nt(randint(shape, 2, 9), shape)), 'ERR_VITRIM_DTYPE');
}

function checkPermute(shape: number[], perm: number[], seed: number): void {
  const x = randn(shape, seed);
  const y = native.permute(nt(x, shape), perm);
  const ref = permuteRef(x, shape, perm);
  expect(y.shape).toEqual(ref.shape);
  expectExact(y.read(), ref.data, `permute ${JSON.stringify(shape)} by ${JSON.stringify(perm)}`);
}

describe('permute', () => {
  it('every permutation of rank 1-4 shapes (with size-1 dims) is the exact reference copy', () => {
    const shapes = [[5], [3, 4], [2, 3, 4], [2, 1, 3], [2, 3, 4, 5], [3, 1, 1, 2], [1, 1, 1, 1]];
    shapes.forEach((s, k) => permutations(s.length).forEach((p) => checkPermute(s, p, k)));
    checkPermute([], [], 1); // rank 0
  });

  it('negative entries count from the end; large ViT layouts (threaded) are exact', () => {
    checkPermute([2, 3, 4], [-1, 0, -2], 2);
    checkPermute([8, 197, 3, 4, 16], [2, 0, 3, 1, 4], 3); // qkv [B,N,3,H,D] -> [3,B,H,N,D]
    checkPermute([8, 4, 197, 16], [0, 2, 1, 3], 4); // [B,H,N,D] -> [B,N,H,D]
    checkPermute([64, 197, 48], [0, 2, 1], 5); // transpose with a strided inner gather
    checkPermute([0, 3, 2], [2, 1, 0], 6);
  });

  it('moves int32 and bfloat16 data unchanged', () => {
    const s = [3, 5, 2];
    const xi = randint(s, 7, 1000);
    const yi = native.permute(nt(xi, s), [2, 0, 1]);
    expect(yi.dtype).toBe('int32');
    expectExact(yi.read(), permuteRef(xi, s, [2, 0, 1]).data, 'int32');
    const xb = native.cast(nt(randn(s, 8), s), 'bfloat16');
    const yb = native.permute(xb, [1, 2, 0]);
    expect(yb.dtype).toBe('bfloat16');
    expectExact(yb.read(), permuteRef(xb.read(), s, [1, 2, 0]).data, 'bf16');
  });

  it('property: permuting by p then by its inverse is the identity, and matches the reference', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 }).chain((shape) =>
          fc.tuple(fc.constant(shape), fc.shuffledSubarray(shape.map((_, i) => i), { minLength: shape.length })),
        ),
        fc.nat(1000),
        ([shape, perm], seed) => {
          checkPermute(shape, perm, seed);
          const x = nt(randn(shape, seed), shape);
          const inv = new Array<number>(perm.length);
          perm.forEach((p, i) => (inv[p] = i));
          const back = native.permute(native.permute(x, perm), inv);
          expect(back.shape).toEqual(shape);
          expectExact(back.read(), x.read(), 'round trip');
        },
      ),
      { numRuns: 150, seed: RUN_SEED },
    );
  });

  it('bad input gives typed errors and the op still works after', () => {
    const x = nt(randn([2, 3, 4], 1), [2, 3, 4]);
    badTensor((t) => native.permute(t, [0]), [3]);
    expectCode(() => native.permute(x, [0, 1]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.permute(x, [0, 1, 2, 3]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.permute(x, [0, 1, 1]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.permute(x, [0, -2, 1]), 'ERR_VITRIM_ARGUMENT'); // -2 is axis 1
    expectCode(() => native.permute(x, [0, 1, 3]), 'ERR_VITRIM_INDEX');
    expectCode(() => native.permute(x, [0, 1, -4]), 'ERR_VITRIM_INDEX');
    expectCode(() => native.permute(x, [0, 1, 1.5]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.permute(x, 'abc' as never), 'ERR_VITRIM_ARGUMENT');
    checkPermute([2, 3, 4], [2, 1, 0], 9);
  });
});

function checkSlice(shape: number[], axis: number, start: number, end: number, seed: number): void {
  const x = randn(shape, seed);
  const y = native.slice(nt(x, shape), axis, start, end);
  const ref = sliceRef(x, shape, axis, start, end);
  expect(y.shape).toEqual(ref.shape);
  expectExact(y.read(), ref.data, `slice ${JSON.stringify(shape)} axis ${axis} [${start}, ${end})`);
}

describe('slice', () => {
  it('every axis and a spread of ranges (incl. empty and full) are exact copies', () => {
    const shape = [3, 5, 4];
    for (let axis = -3; axis < 3; axis++) {
      const d = shape[axis < 0 ? axis + 3 : axis];
      for (let s = 0; s <= d; s++) for (let e = s; e <= d; e++) checkSlice(shape, axis, s, e, s * 10 + e);
    }
    checkSlice([8, 197, 384], 1, 1, 197, 1); // drop the class token (threaded)
    checkSlice([8, 197, 1152], 2, 384, 768, 2); // k out of qkv
    checkSlice([7], 0, 2, 5, 3);
  });

  it('works for int32', () => {
    const s = [4, 6];
    const x = randint(s, 5, 100);
    const y = native.slice(nt(x, s), 1, 2, 5);
    expect(y.dtype).toBe('int32');
    expectExact(y.read(), sliceRef(x, s, 1, 2, 5).data, 'int32');
  });

  it('indices are strict, not python-style: negative or past-the-end ranges are ERR_VITRIM_INDEX', () => {
    const x = nt(randn([3, 5], 1), [3, 5]);
    expectCode(() => native.slice(x, 1, -1, 5), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 1, 0, -1), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 1, 0, 6), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 1, 4, 3), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 2, 0, 1), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, -3, 0, 1), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(nt([1], []), 0, 0, 1), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 1, 0.5, 2), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.slice(x, 1, 0, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    badTensor((t) => native.slice(t, 0, 0, 1), [3]);
    checkSlice([3, 5], 1, 1, 4, 2);
  });
});

describe('sliceBackward', () => {
  it('is the adjoint of slice (<slice(x), g> = <x, sliceBackward(g)>) and zero outside the window', () => {
    const cases: [number[], number, number, number][] = [
      [[3, 5, 4], 1, 1, 4],
      [[3, 5, 4], -1, 0, 2],
      [[3, 5, 4], 0, 2, 3],
      [[8, 197, 48], 1, 1, 197],
      [[6], 0, 3, 3],
    ];
    cases.forEach(([shape, axis, s, e], k) => {
      const x = randn(shape, k);
      const ys = sliceRef(x, shape, axis, s, e).shape;
      const g = randn(ys, k + 50);
      const gx = native.sliceBackward(nt(g, ys), shape, axis, s);
      expect(gx.shape).toEqual(shape);
      const gxa = gx.read();
      const sx = native.slice(nt(x, shape), axis, s, e).read();
      const lhs = dot(sx, g);
      const rhs = dot(x, gxa);
      expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-9 * (1 + absDot(sx, g)));
      // exact: the window holds g, everything else is 0
      const marker = new Float32Array(size(shape)).map((_, i) => i + 1);
      const inWindow = new Set(sliceRef(marker, shape, axis, s, e).data);
      const want = new Float32Array(gxa.length);
      let gi = 0;
      for (let i = 0; i < gxa.length; i++) if (inWindow.has(i + 1)) want[i] = g[gi++];
      expect(gi).toBe(g.length);
      expectExact(gxa, want, 'sliceBackward window');
    });
  });

  it('bad input gives typed errors and the op still works after', () => {
    const g = nt(randn([3, 2], 1), [3, 2]);
    expectCode(() => native.sliceBackward(g, [3, 5, 1], 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sliceBackward(g, [4, 5], 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sliceBackward(g, [3, 5], 1, 4), 'ERR_VITRIM_INDEX');
    expectCode(() => native.sliceBackward(g, [3, 5], 1, -1), 'ERR_VITRIM_INDEX');
    expectCode(() => native.sliceBackward(g, [3, 5], 2, 0), 'ERR_VITRIM_INDEX');
    expectCode(() => native.sliceBackward(g, [3, -5], 1, 0), 'ERR_VITRIM_SHAPE');
    badTensor((t) => native.sliceBackward(t, [3], 0, 0), [3], true);
    expect(native.sliceBackward(g, [3, 5], 1, 3).shape).toEqual([3, 5]);
  });
});

describe('concat', () => {
  function checkConcat(shapes: number[][], axis: number, seed: number, int = false): void {
    const data = shapes.map((s, k) => (int ? randint(s, seed + k, 50) : randn(s, seed + k)));
    const y = native.concat(
      data.map((d, k) => nt(d, shapes[k])),
      axis,
    );
    const r = shapes[0].length;
    const a = axis < 0 ? axis + r : axis;
    const os = shapes[0].slice();
    os[a] = shapes.reduce((t, s) => t + s[a], 0);
    expect(y.shape).toEqual(os);
    expect(y.dtype).toBe(int ? 'int32' : 'float32');
    // reference: each input is the slice of the output at its offset (so concat's backward is slice)
    const ya = y.read();
    let off = 0;
    shapes.forEach((s, k) => {
      expectExact(sliceRef(ya, os, a, off, off + s[a]).data, data[k], `concat piece ${k}`);
      off += s[a];
    });
  }

  it('concatenates along every axis (negative too), with zero-size and single pieces, float32 and int32', () => {
    checkConcat([[2, 3, 4], [2, 5, 4], [2, 1, 4]], 1, 1);
    checkConcat([[2, 3, 4], [1, 3, 4]], 0, 2);
    checkConcat([[2, 3, 4], [2, 3, 7]], -1, 3);
    checkConcat([[2, 3, 4], [2, 0, 4], [2, 2, 4]], 1, 4);
    checkConcat([[3, 4]], 0, 5);
    checkConcat([[4], [3]], 0, 6, true);
    checkConcat([[2, 3], [2, 1]], 1, 7, true);
    checkConcat([[8, 1, 384], [8, 196, 384]], 1, 8); // class token + patches (threaded)
  });

  it('<concat(xs), g> = sum_i <x_i, slice_i(g)> (its backward is slice)', () => {
    const shapes = [[2, 3, 5], [2, 4, 5]];
    const xs = shapes.map((s, k) => randn(s, 10 + k));
    const y = native.concat(
      xs.map((d, k) => nt(d, shapes[k])),
      1,
    );
    const g = randn(y.shape, 20);
    const gt = nt(g, y.shape);
    const ya = y.read();
    const lhs = dot(ya, g);
    const rhs = dot(xs[0], native.slice(gt, 1, 0, 3).read()) + dot(xs[1], native.slice(gt, 1, 3, 7).read());
    expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-9 * (1 + absDot(ya, g)));
  });

  it('bad input gives typed errors and the op still works after', () => {
    const a = nt(randn([2, 3], 1), [2, 3]);
    expectCode(() => native.concat([], 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.concat(a as never, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.concat([a, {} as never], 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.concat([a, nt(randint([2, 3], 2, 3), [2, 3])], 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.concat([a, nt(randn([2, 3, 1], 2), [2, 3, 1])], 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.concat([a, nt(randn([2, 4], 2), [2, 4])], 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.concat([a, a], 2), 'ERR_VITRIM_INDEX');
    expectCode(() => native.concat([a, a], -3), 'ERR_VITRIM_INDEX');
    expectCode(() => native.concat([nt([1], []), nt([2], [])], 0), 'ERR_VITRIM_INDEX');
    expectCode(() => native.concat([a, a], 0.5), 'ERR_VITRIM_ARGUMENT');
    const f = nt(randn([2, 3], 3), [2, 3]);
    f.free();
    expectCode(() => native.concat([a, f], 0), 'ERR_VITRIM_DISPOSED');
    expect(native.concat([a, a], 0).shape).toEqual([4, 3]);
  });
});
