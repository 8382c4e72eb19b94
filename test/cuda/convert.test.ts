/**
 * CUDA cast / copy / full against the CPU ops (native/core/convert.cpp). These must give the SAME
 * BYTES as the CPU: bf16 rounding (nearest even, NaN kept a NaN with the CPU's payload rule), int32
 * truncation and the fill value's conversion are all compared bit for bit, on fresh random data plus
 * every bfloat16 bit pattern and the float32 edge cases (NaN payloads, infinities, denormals, ties).
 */
import { expect, it } from 'vitest';
import { native, type DType, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, randn, rng } from '../helpers.js';
import { bits, describeCuda, toCuda } from './helpers.js';

function expectSameBits(got: NativeTensor, want: NativeTensor, what: string): void {
  expect(got.device, what).toBe('cuda');
  expect(got.shape, what).toEqual(want.shape);
  expect(got.dtype, what).toBe(want.dtype);
  const g = bits(got);
  const w = bits(want);
  expect(g.length, what).toBe(w.length);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) {
      throw new Error(`${what}: element ${i} differs: cuda 0x${g[i].toString(16)} vs cpu 0x${w[i].toString(16)}`);
    }
  }
}

/** float32 data from bit patterns. */
function f32FromBits(u: Uint32Array): Float32Array {
  return new Float32Array(u.buffer, u.byteOffset, u.length);
}

// float32 edge cases for the bf16 rounding: NaNs (quiet, signalling, negative, payload in the low
// half only), infinities, zeros, denormals, the largest finite (rounds to inf), ties to even both ways.
const EDGE_F32 = [
  0x7fc00000, 0x7f800001, 0x7fbfffff, 0xffc00001, 0xff800001, 0x7f80ffff, 0x7fffffff, 0xffffffff, 0x7f800000,
  0xff800000, 0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x00008000, 0x00018000, 0x7f7fffff,
  0xff7fffff, 0x7f7f8000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f80ffff, 0xbf808000, 0xbf818000, 0x3f800001,
  0x4b000000, 0x4effffff, 0x4f000000, 0xcf000000, 0xcf000001,
];

/** Random float32 bit patterns (every class: NaN, inf, denormal, normal) plus the edge cases. */
function bitPatterns(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const u = new Uint32Array(n + EDGE_F32.length);
  for (let i = 0; i < n; i++) u[i] = Math.floor(r() * 4294967296) >>> 0;
  EDGE_F32.forEach((b, k) => (u[n + k] = b >>> 0));
  return f32FromBits(u);
}

/** Random int32 over the whole range, plus the extremes and values that round when made float. */
function randInt32(n: number, seed: number): Int32Array {
  const r = rng(seed);
  const out = new Int32Array(n + 6);
  for (let i = 0; i < n; i++) out[i] = (Math.floor(r() * 4294967296) >>> 0) | 0;
  out.set([-2147483648, 2147483647, 0, -1, 16777217, -33554435], n);
  return out;
}

describeCuda('cuda cast', () => {
  it('float32 -> bfloat16 gives the CPU bytes for random bit patterns and every edge case', () => {
    for (const [n, seed] of [[1, 1], [3, 2], [197, 3], [100_003, 4]] as const) {
      const x = nt(bitPatterns(n, seed), [n + EDGE_F32.length]);
      expectSameBits(native.cast(toCuda(x), 'bfloat16'), native.cast(x, 'bfloat16'), `f32->bf16 n=${n}`);
    }
    // Ordinary data in a ViT shape (the packed path) and an odd 3-D shape (the scalar tail).
    for (const shape of [[8, 197, 384], [3, 5, 7]]) {
      const x = nt(randn(shape, 5, 3), shape);
      expectSameBits(native.cast(toCuda(x), 'bfloat16'), native.cast(x, 'bfloat16'), `f32->bf16 ${shape}`);
    }
  });

  it('bfloat16 -> float32 widens every one of the 65536 bit patterns exactly', () => {
    const all = new Uint16Array(65536);
    for (let i = 0; i < all.length; i++) all[i] = i;
    const xb = native.fromArray(all, [256, 256], 'bfloat16');
    expectSameBits(native.cast(toCuda(xb), 'float32'), native.cast(xb, 'float32'), 'bf16->f32');
  });

  it('float32/bfloat16 -> int32 truncate toward zero like the CPU', () => {
    const r = rng(11);
    const n = 70_001;
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const mag = Math.pow(2, 31 * r()); // magnitudes from 1 to 2^31, also many fractional values
      v[i] = (r() < 0.5 ? -1 : 1) * Math.min(mag * r(), 2147483520);
    }
    v.set([-0.5, 0.5, -1.5, 2.999, -2147483648, 2147483520, -0, 0], 0);
    const x = nt(v, [n]);
    expectSameBits(native.cast(toCuda(x), 'int32'), native.cast(x, 'int32'), 'f32->i32');
    const xb = native.cast(x, 'bfloat16'); // bf16 rounding can reach 2^31: keep only representable values
    const vb = native.cast(xb, 'float32').read() as Float32Array;
    for (let i = 0; i < n; i++) if (vb[i] >= 2147483648) vb[i] = 1.5;
    const xb2 = native.cast(nt(vb, [n]), 'bfloat16');
    expectSameBits(native.cast(toCuda(xb2), 'int32'), native.cast(xb2, 'int32'), 'bf16->i32');
  });

  it('int32 -> float32/bfloat16 round like the CPU (through float32 for bf16)', () => {
    const xi = nt(randInt32(100_001, 12), [100_007]);
    expectSameBits(native.cast(toCuda(xi), 'float32'), native.cast(xi, 'float32'), 'i32->f32');
    expectSameBits(native.cast(toCuda(xi), 'bfloat16'), native.cast(xi, 'bfloat16'), 'i32->bf16');
  });

  it('a cast to the same dtype is a copy in new storage; zero-size and rank-0 tensors work', () => {
    for (const dt of ['float32', 'bfloat16', 'int32'] as DType[]) {
      const x0 = dt === 'int32' ? nt(randInt32(40, 13), [46]) : native.cast(nt(randn([46], 14), [46]), dt);
      const x = toCuda(x0);
      const y = native.cast(x, dt);
      expect(y.sameStorage(x)).toBe(false);
      expectSameBits(y, x0, `same-dtype cast ${dt}`);
    }
    const z = toCuda(nt(new Float32Array(0), [0, 3]));
    for (const dt of ['bfloat16', 'int32'] as DType[]) {
      const y = native.cast(z, dt);
      expect(y.shape).toEqual([0, 3]);
      expect(y.dtype).toBe(dt);
    }
    const s = nt(randn([1], 15), []);
    expectSameBits(native.cast(toCuda(s), 'bfloat16'), native.cast(s, 'bfloat16'), 'rank-0');
  });

  it('a value that is not an int32 fails with the CPU message (first bad index), and the process keeps working', () => {
    for (const [bad, at] of [[NaN, 5], [Infinity, 0], [-Infinity, 9], [2147483648, 3], [-2147483904, 7]] as const) {
      const v = randn([10], 16);
      v[at] = bad;
      if (at < 9) v[9] = NaN; // a second bad value after the first: the message names the first
      const x = nt(v, [10]);
      const want = expectCode(() => native.cast(x, 'int32'), 'ERR_VITRIM_ARGUMENT');
      expect(want).toContain(`index ${at}`);
      const got = expectCode(() => native.cast(toCuda(x), 'int32'), 'ERR_VITRIM_ARGUMENT');
      expect(got).toBe(want);
      // -(2^31 + 256) rounds to -2^31 in bfloat16, which is representable: not an error there.
      if (bad !== -2147483904) expectCode(() => native.cast(toCuda(native.cast(x, 'bfloat16')), 'int32'), 'ERR_VITRIM_ARGUMENT');
    }
    const ok = nt(randn([33], 17, 100), [33]);
    expectSameBits(native.cast(toCuda(ok), 'int32'), native.cast(ok, 'int32'), 'after an error');
  });
});

describeCuda('cuda copy', () => {
  it('copies every dtype into new storage, byte for byte', () => {
    const f = nt(bitPatterns(10_001, 21), [10_001 + EDGE_F32.length]);
    const cases: NativeTensor[] = [f, native.cast(nt(randn([3, 5, 7], 22), [3, 5, 7]), 'bfloat16'),
      nt(randInt32(1, 23), [7]), nt(new Float32Array(0), [2, 0])];
    for (const x0 of cases) {
      const x = toCuda(x0);
      const y = native.copy(x);
      expect(y.sameStorage(x)).toBe(false);
      expectSameBits(y, x0, `copy ${x0.dtype} ${JSON.stringify(x0.shape)}`);
    }
  });

  it('a disposed tensor is ERR_VITRIM_DISPOSED', () => {
    const x = toCuda(nt(randn([4], 24), [4]));
    x.free();
    expectCode(() => native.copy(x), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.cast(x, 'bfloat16'), 'ERR_VITRIM_DISPOSED');
  });
});

describeCuda('cuda full', () => {
  it('fills every dtype with the CPU bit pattern (rounded, negative zero, overflow to inf)', () => {
    const shapes = [[], [1], [3, 5], [1_000_003], [2, 0, 4]];
    const floats = [0.1, -0, 0, 3, -2.5e-3, 1e40, -Infinity, 1 / 3, 65504.123];
    for (const shape of shapes) {
      for (const dt of ['float32', 'bfloat16'] as DType[]) {
        for (const v of floats) {
          expectSameBits(native.full(shape, v, dt, 'cuda'), native.full(shape, v, dt), `full ${dt} ${v} ${shape}`);
        }
      }
      for (const v of [7, 0, -1, -2147483648, 2147483647]) {
        expectSameBits(native.full(shape, v, 'int32', 'cuda'), native.full(shape, v, 'int32'), `full int32 ${v}`);
      }
    }
  });

  it('rejects a non-int32 value and a bad shape like the CPU', () => {
    for (const v of [0.5, NaN, Infinity, 2147483648]) {
      const want = expectCode(() => native.full([3], v, 'int32'), 'ERR_VITRIM_ARGUMENT');
      expect(expectCode(() => native.full([3], v, 'int32', 'cuda'), 'ERR_VITRIM_ARGUMENT')).toBe(want);
    }
    expectCode(() => native.full([2, -1], 1, 'float32', 'cuda'), 'ERR_VITRIM_SHAPE');
    expectSameBits(native.full([5], 2.5, 'float32', 'cuda'), native.full([5], 2.5, 'float32'), 'after errors');
  });
});
