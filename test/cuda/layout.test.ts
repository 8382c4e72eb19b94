/**
 * CUDA layout ops (permute, slice, slice_backward, concat) against the CPU ops on fresh random data.
 * They only move bytes, so every result must be BIT-IDENTICAL to the CPU's, for float32, bfloat16 and
 * int32 (slice_backward: float32 and bfloat16). Shapes reach every path of native/cuda/layout.cu:
 * plain copies, the word-wide gather ([B,N,H,D] -> [B,H,N,D]), the tiled transpose (last-two swap,
 * K^T, edge tiles, more tiles than blocks), the general strided kernel (short strided inner dims,
 * rank 8), row copies with 16/8/4/2-byte words, > 65535 rows.
 */
import { expect, it } from 'vitest';
import { native, type DType, type NativeTensor } from '../../lib/native.js';
import { RUN_SEED, expectCode, nt, randint, randn } from '../helpers.js';
import { bits, describeCuda, toCuda } from './helpers.js';

const DTYPES: DType[] = ['float32', 'bfloat16', 'int32'];

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A cpu tensor of fresh random data in `dt` (int32: signed values). */
function make(shape: number[], dt: DType, seed: number): NativeTensor {
  if (dt === 'int32') {
    const v = randint(shape, seed, 2_000_000);
    for (let i = 0; i < v.length; i++) v[i] -= 1_000_000;
    return nt(v, shape);
  }
  const f = nt(randn(shape, seed), shape);
  return dt === 'float32' ? f : native.cast(f, dt);
}

function expectSame(got: NativeTensor, want: NativeTensor, what: string): void {
  expect(got.device, what).toBe('cuda');
  expect(got.dtype, what).toBe(want.dtype);
  expect(got.shape, what).toEqual(want.shape);
  const g = bits(got);
  const w = bits(want);
  expect(g.length, what).toBe(w.length);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) throw new Error(`${what}: element ${i} differs (cuda ${g[i]}, cpu ${w[i]}; seed ${RUN_SEED})`);
  }
}

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) => [...Array(n).keys()].map((i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
}

function checkPermute(shape: number[], perm: number[], dt: DType, seed: number, what = ''): void {
  const x = make(shape, dt, seed);
  expectSame(native.permute(toCuda(x), perm), native.permute(x, perm),
    `permute ${JSON.stringify(shape)} by ${JSON.stringify(perm)} ${dt} ${what}`);
}

describeCuda('cuda permute', () => {
  for (const dt of DTYPES) {
    it(`${dt}: every permutation of small shapes (with size-1 dims) is the CPU's copy`, () => {
      const shapes = [[5], [3, 4], [3, 5, 7], [2, 1, 3], [2, 3, 4, 5], [3, 1, 1, 2], [1, 1, 1]];
      shapes.forEach((s, k) => permutations(s.length).forEach((p, j) => checkPermute(s, p, dt, 1000 + 31 * k + j)));
      checkPermute([], [], dt, 1001, 'rank 0');
      checkPermute([0, 3, 2], [2, 1, 0], dt, 1002, 'zero-size');
      checkPermute([2, 3, 4], [-1, 0, -2], dt, 1003, 'negative entries');
    });

    it(`${dt}: ViT layouts and every kernel path`, () => {
      const cases: [number[], number[], string][] = [
        [[8, 197, 6, 64], [0, 2, 1, 3], '[B,N,H,D] -> [B,H,N,D] (wide words)'],
        [[8, 197, 3, 6, 64], [2, 0, 3, 1, 4], 'qkv split [B,N,3,H,D] -> [3,B,H,N,D]'],
        [[8, 6, 197, 64], [0, 1, 3, 2], 'K^T (tiled transpose with batch)'],
        [[8, 197, 384], [0, 2, 1], 'last-two swap'],
        [[4, 33, 17], [0, 2, 1], 'transpose with partial edge tiles'],
        [[2050, 1030], [1, 0], 'more tiles than blocks'],
        [[3, 1000], [1, 0], 'short strided inner dim (general kernel)'],
        [[100, 3], [1, 0], 'short stride-1 dim (general kernel)'],
        [[70_001, 2, 3], [2, 1, 0], 'general kernel, 420k elements'],
        [[4, 3, 5], [1, 0, 2], 'odd contiguous run'],
        [[6, 10, 2], [1, 0, 2], 'run of 2'],
        [[20, 3, 40], [2, 0, 1], 'transpose with a batch dim between'],
      ];
      cases.forEach(([s, p, what], k) => checkPermute(s, p, dt, 1100 + k, what));
    });
  }

  it('rank 8: random permutations (general kernel with many dims)', () => {
    const shape = [2, 3, 1, 2, 3, 2, 1, 3];
    let seed = 1200;
    for (const dt of DTYPES) {
      for (let t = 0; t < 6; t++) {
        const p = [...Array(8).keys()];
        const r = randint([8], seed++, 1 << 30);
        for (let i = 7; i > 0; i--) {
          const j = r[i] % (i + 1);
          [p[i], p[j]] = [p[j], p[i]];
        }
        checkPermute(shape, p, dt, seed++, 'rank 8');
      }
    }
  });

  it('bad perms: wrong length, repeated axis, out of range; more strided dims than the kernel holds', () => {
    const x = toCuda(make([2, 3, 4], 'float32', 1300));
    expectCode(() => native.permute(x, [0, 1]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.permute(x, [0, 1, 1]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.permute(x, [0, 1, 3]), 'ERR_VITRIM_INDEX');
    expectCode(() => native.permute(x, [0, 1, -4]), 'ERR_VITRIM_INDEX');
    // 13 dims reversed: nothing merges, beyond the CUDA kernel's 12 (the CPU has no limit).
    const shape = Array.from({ length: 13 }, () => 2);
    const big = toCuda(make(shape, 'float32', 1301));
    expectCode(() => native.permute(big, shape.map((_, i) => 12 - i)), 'ERR_VITRIM_ARGUMENT');
    checkPermute([2, 3, 4], [2, 0, 1], 'float32', 1302, 'after errors');
  });
});

describeCuda('cuda slice', () => {
  for (const dt of DTYPES) {
    it(`${dt}: slices along every axis are the CPU's bytes`, () => {
      const cases: [number[], number, number, number][] = [
        [[5, 7, 9], 0, 1, 4], // one contiguous block
        [[5, 7, 9], 1, 2, 5],
        [[5, 7, 9], 2, 3, 8],
        [[5, 7, 9], -1, 0, 9], // everything: contiguous rows
        [[5, 7, 9], 1, 2, 2], // empty
        [[5, 7], 1, 1, 4], // odd byte offsets: narrow words
        [[8, 197, 384], 1, 0, 1], // the class token
        [[8, 197, 384], 1, 1, 197], // the patch tokens
        [[70_001, 3], 1, 1, 3], // > 65535 rows
        [[7], 0, 2, 7],
      ];
      cases.forEach(([s, axis, start, end], k) => {
        const x = make(s, dt, 1400 + k);
        expectSame(native.slice(toCuda(x), axis, start, end), native.slice(x, axis, start, end),
          `slice ${JSON.stringify(s)} axis ${axis} [${start}, ${end}) ${dt}`);
      });
    });
  }

  it('bad ranges and axes are ERR_VITRIM_INDEX, as on the CPU', () => {
    const x = toCuda(make([4, 5], 'float32', 1450));
    expectCode(() => native.slice(x, 1, -1, 2), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 1, 3, 2), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 1, 0, 6), 'ERR_VITRIM_INDEX');
    expectCode(() => native.slice(x, 2, 0, 1), 'ERR_VITRIM_INDEX');
    const xc = make([4, 5], 'float32', 1450);
    expectSame(native.slice(x, 0, 1, 3), native.slice(xc, 0, 1, 3), 'after errors');
  });
});

describeCuda('cuda slice_backward', () => {
  for (const dt of ['float32', 'bfloat16'] as const) {
    it(`${dt}: zeros with gy placed at the slice, as the CPU`, () => {
      const cases: [number[], number, number, number][] = [
        [[5, 7, 9], 1, 2, 3],
        [[5, 7, 9], 0, 1, 3],
        [[5, 7, 9], -1, 4, 5],
        [[5, 7, 9], 2, 0, 9],
        [[5, 7], 1, 1, 3],
        [[8, 197, 384], 1, 1, 196],
        [[70_001, 3], 1, 2, 1],
      ];
      cases.forEach(([s, axis, start, len], k) => {
        const a = axis < 0 ? axis + s.length : axis;
        const gs = s.map((d, i) => (i === a ? len : d));
        const g32 = make(gs, 'float32', 1500 + k);
        const g = dt === 'float32' ? g32 : native.cast(native.cast(g32, dt), 'float32'); // the bf16 values
        const want = native.sliceBackward(g, s, axis, start);
        const got = native.sliceBackward(toCuda(dt === 'float32' ? g : native.cast(g, dt)), s, axis, start);
        expect(got.dtype).toBe(dt);
        const gotF = dt === 'float32' ? got : native.cast(got, 'float32');
        expectSame(gotF, want, `sliceBackward ${JSON.stringify(s)} axis ${axis} at ${start} len ${len} ${dt}`);
      });
      // len 0: all zeros
      const z = native.sliceBackward(toCuda(native.cast(nt(new Float32Array(0), [3, 0]), dt)), [3, 4], 1, 2);
      expect(Array.from(bits(native.cast(z, 'float32')))).toEqual(Array(12).fill(0));
    });
  }

  it('bad input: int32 gy, range past the end, shape mismatch', () => {
    const g = toCuda(make([2, 3], 'float32', 1550));
    expectCode(() => native.sliceBackward(toCuda(make([2, 3], 'int32', 1551)), [2, 5], 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.sliceBackward(g, [2, 5], 1, 3), 'ERR_VITRIM_INDEX');
    expectCode(() => native.sliceBackward(g, [2, 5], 1, -1), 'ERR_VITRIM_INDEX');
    expectCode(() => native.sliceBackward(g, [3, 5], 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sliceBackward(g, [2, 3, 1], 1, 0), 'ERR_VITRIM_SHAPE');
  });
});

describeCuda('cuda concat', () => {
  for (const dt of DTYPES) {
    it(`${dt}: along every axis, with odd and empty parts, is the CPU's bytes`, () => {
      const cases: [number[][], number][] = [
        [[[2, 3, 4], [2, 5, 4], [2, 1, 4]], 1],
        [[[2, 3, 4], [1, 3, 4]], 0],
        [[[2, 3, 1], [2, 3, 6], [2, 3, 3]], -1],
        [[[2, 3, 4]], 2],
        [[[2, 3, 4], [2, 0, 4], [2, 2, 4]], 1],
        [[[8, 1, 384], [8, 196, 384]], 1], // class token + patches
        [[[5], [7], [1]], 0],
        [[[70_001, 1], [70_001, 2]], 1],
      ];
      cases.forEach(([shapes, axis], k) => {
        const xs = shapes.map((s, j) => make(s, dt, 1600 + 10 * k + j));
        expectSame(native.concat(xs.map(toCuda), axis), native.concat(xs, axis),
          `concat ${JSON.stringify(shapes)} axis ${axis} ${dt}`);
      });
    });
  }

  it('bad input: empty list, mixed dtypes, mixed devices, rank or shape mismatch, bad axis', () => {
    const a = toCuda(make([2, 3], 'float32', 1700));
    expectCode(() => native.concat([], 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.concat([a, toCuda(make([2, 3], 'bfloat16', 1701))], 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.concat([a, make([2, 3], 'float32', 1702)], 0), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.concat([a, toCuda(make([2, 3, 1], 'float32', 1703))], 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.concat([a, toCuda(make([2, 4], 'float32', 1704))], 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.concat([a, a], 2), 'ERR_VITRIM_INDEX');
    expect(numel(native.concat([a, a], 0).shape)).toBe(12);
  });
});
