/**
 * CUDA gatherTokens / scatterTokens (native/cuda/gather.cu) against the CPU ops on the same fresh
 * random inputs, float32 and bfloat16.
 *  - gather is a row copy: the CUDA result must equal the CPU's on the dtype-rounded input EXACTLY,
 *    for every row length class the kernel picks a different copy unit for (2, 4, 8, 16 bytes) and
 *    for > 65535 output rows (grid-stride).
 *  - scatter sums repeated indices in the CPU's order in fp32 and rounds once: float32 results equal
 *    the CPU's exactly, bfloat16 ones equal the CPU's float32 result rounded to bf16, exactly.
 *  - device-side index validation: an out-of-range index gives ERR_VITRIM_INDEX naming the first bad
 *    position and value (as the CPU does), and the next normal call works.
 */
import { expect, it } from 'vitest';
import { native, type DType, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, randint, randn } from '../helpers.js';
import { expectExact } from '../nd_ref.js';
import { cudaAs, describeCuda, FLOAT_DTYPES, roundTo, toCuda, values } from './helpers.js';

// B, N, K, C. Row bytes: C=1 bf16 -> 2 (uint16 copy), C=1/3 fp32, C=6 bf16 -> 4/12 (uint32), C=2 fp32,
// C=4 bf16 -> 8 (uint2), C=8 bf16, C=4/48/384 fp32 -> 16k (uint4). K=400 > N: repeats are certain.
const CASES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [2, 5, 3, 1],
  [3, 17, 17, 3],
  [2, 9, 5, 2],
  [2, 9, 7, 4],
  [2, 11, 6, 6],
  [2, 13, 8, 8],
  [2, 197, 98, 17],
  [1, 197, 400, 48],
  [8, 197, 140, 384],
  [64, 197, 98, 384],
  [2, 7, 0, 5], // nothing kept
  [1, 3, 70001, 2], // > 65535 rows
];

function gatherBoth(B: number, N: number, K: number, C: number, dtype: DType, s: number) {
  const x = roundTo(nt(randn([B, N, C], s), [B, N, C]), dtype);
  const idx = nt(randint([B, K], s + 100, N), [B, K]);
  const want = native.gatherTokens(x, idx);
  const got = native.gatherTokens(cudaAs(x, dtype), toCuda(idx));
  return { want, got };
}

function scatterBoth(B: number, N: number, K: number, C: number, dtype: DType, s: number, ia?: Int32Array) {
  const g = roundTo(nt(randn([B, K, C], s + 7), [B, K, C]), dtype);
  const idx = nt(ia ?? randint([B, K], s + 200, N), [B, K]);
  const want = roundTo(native.scatterTokens(g, idx, N), dtype);
  const got = native.scatterTokens(cudaAs(g, dtype), toCuda(idx), N);
  return { want, got };
}

describeCuda('cuda gatherTokens', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: equals the CPU exactly for every row size class and > 65535 rows`, () => {
      CASES.forEach(([B, N, K, C], s) => {
        const { want, got } = gatherBoth(B, N, K, C, dtype, s);
        expect(got.device).toBe('cuda');
        expect(got.dtype).toBe(dtype);
        expect(got.shape).toEqual([B, K, C]);
        expectExact(values(got), values(want), `gather ${dtype} ${B},${N},${K},${C}`);
      });
    });
  }

  it('out-of-range device indices: ERR_VITRIM_INDEX naming the first bad entry, then a normal call works', () => {
    for (const dtype of FLOAT_DTYPES) {
      const x = cudaAs(nt(randn([2, 5, 3], 1), [2, 5, 3]), dtype);
      const ia = randint([2, 4], 2, 5);
      ia[6] = 5; // b = 1, k = 2
      ia[7] = 9; // a later bad entry: the first one is reported
      expect(expectCode(() => native.gatherTokens(x, toCuda(nt(ia, [2, 4]))), 'ERR_VITRIM_INDEX')).toContain(
        'idx[1, 2] = 5');
      ia[6] = -1;
      expect(expectCode(() => native.gatherTokens(x, toCuda(nt(ia, [2, 4]))), 'ERR_VITRIM_INDEX')).toContain(
        'idx[1, 2] = -1');
      ia[6] = 2147483647;
      expectCode(() => native.gatherTokens(x, toCuda(nt(ia, [2, 4]))), 'ERR_VITRIM_INDEX');
      // C = 0: nothing to copy, but the indices are still checked (as on the CPU)
      const x0 = cudaAs(nt(new Float32Array(0), [2, 5, 0]), dtype);
      expectCode(() => native.gatherTokens(x0, toCuda(nt(ia, [2, 4]))), 'ERR_VITRIM_INDEX');
      // the flag was reset: a normal call works and is right
      const { want, got } = gatherBoth(3, 17, 9, 8, dtype, 3);
      expectExact(values(got), values(want), `gather after an index error (${dtype})`);
    }
  });

  it('bad input gives typed errors', () => {
    const x = toCuda(nt(randn([2, 5, 3], 1), [2, 5, 3]));
    const idxCpu = nt(randint([2, 4], 2, 5), [2, 4]);
    const idx = toCuda(idxCpu);
    expectCode(() => native.gatherTokens(x, idxCpu), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.gatherTokens(nt(randn([2, 5, 3], 1), [2, 5, 3]), idx), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.gatherTokens(toCuda(nt(randint([2, 5, 3], 3, 4), [2, 5, 3])), idx), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gatherTokens(x, toCuda(nt(randn([2, 4], 3), [2, 4]))), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gatherTokens(toCuda(nt(randn([10, 3], 3), [10, 3])), idx), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gatherTokens(x, toCuda(nt(randint([8], 3, 5), [8]))), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gatherTokens(x, toCuda(nt(randint([3, 4], 3, 5), [3, 4]))), 'ERR_VITRIM_SHAPE');
    expect(native.gatherTokens(x, idx).shape).toEqual([2, 4, 3]);
  });
});

describeCuda('cuda scatterTokens', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: equals the CPU (rounded once to ${dtype}) exactly, repeated indices accumulated`, () => {
      CASES.forEach(([B, N, K, C], s) => {
        const { want, got } = scatterBoth(B, N, K, C, dtype, s);
        expect(got.device).toBe('cuda');
        expect(got.dtype).toBe(dtype);
        expect(got.shape).toEqual([B, N, C]);
        expectExact(values(got), values(want), `scatter ${dtype} ${B},${N},${K},${C}`);
      });
      // every row on one token (a 50-term sum) and n > 65535 output rows
      const all = scatterBoth(1, 3, 50, 20, dtype, 1, new Int32Array(50).fill(2));
      expectExact(values(all.got), values(all.want), `scatter ${dtype} all repeats`);
      const many = scatterBoth(1, 70001, 300, 4, dtype, 2);
      expectExact(values(many.got), values(many.want), `scatter ${dtype} n = 70001`);
      // the reference is not vacuous
      expect(values(all.want).some((v) => v !== 0)).toBe(true);
    });
  }

  it('empty rows to a huge n: the indices are checked, no 2^31 idle rows walked (found by the fuzzer)', () => {
    const g = toCuda(nt(new Float32Array(0), [5, 5, 0]));
    const idx = toCuda(native.fromArray(Int32Array.from({ length: 25 }, (_, k) => k % 7), [5, 5], 'int32'));
    const t0 = performance.now();
    const y = native.scatterTokens(g, idx, 2 ** 31);
    expect(y.shape).toEqual([5, 2 ** 31, 0]);
    expect(performance.now() - t0).toBeLessThan(20_000); // the emulation took over 10 minutes before
    const bad = toCuda(native.fromArray(Int32Array.from({ length: 25 }, (_, k) => (k === 13 ? -1 : k)), [5, 5], 'int32'));
    expectCode(() => native.scatterTokens(g, bad, 2 ** 31), 'ERR_VITRIM_INDEX');
    expectCode(() => native.scatterTokens(g, bad, 2 ** 31), 'ERR_VITRIM_INDEX'); // and again: the device kept working
  });

  it('is deterministic: two calls give the same bytes', () => {
    const g = cudaAs(nt(randn([4, 300, 384], 9), [4, 300, 384]), 'float32');
    const idx = toCuda(nt(randint([4, 300], 10, 197), [4, 300]));
    const a = native.scatterTokens(g, idx, 197).read();
    const b = native.scatterTokens(g, idx, 197).read();
    expectExact(a as Float32Array, b as Float32Array, 'two calls');
  });

  it('out-of-range device indices: ERR_VITRIM_INDEX, then a normal call works', () => {
    for (const dtype of FLOAT_DTYPES) {
      const g = cudaAs(nt(randn([2, 4, 3], 1), [2, 4, 3]), dtype);
      const ia = randint([2, 4], 2, 5);
      const good = toCuda(nt(ia, [2, 4]));
      ia[1] = 5;
      expect(expectCode(() => native.scatterTokens(g, toCuda(nt(ia, [2, 4])), 5), 'ERR_VITRIM_INDEX')).toContain(
        'idx[0, 1] = 5');
      ia[1] = -3;
      expect(expectCode(() => native.scatterTokens(g, toCuda(nt(ia, [2, 4])), 5), 'ERR_VITRIM_INDEX')).toContain(
        'idx[0, 1] = -3');
      expectCode(() => native.scatterTokens(g, good, 0), 'ERR_VITRIM_INDEX'); // nothing is in [0, 0)
      const g0 = cudaAs(nt(new Float32Array(0), [2, 4, 0]), dtype);
      expectCode(() => native.scatterTokens(g0, toCuda(nt(ia, [2, 4])), 5), 'ERR_VITRIM_INDEX'); // C = 0
      const { want, got } = scatterBoth(3, 17, 20, 8, dtype, 4);
      expectExact(values(got), values(want), `scatter after an index error (${dtype})`);
    }
  });

  it('bad input gives typed errors', () => {
    const g = toCuda(nt(randn([2, 4, 3], 1), [2, 4, 3]));
    const idxCpu = nt(randint([2, 4], 2, 5), [2, 4]);
    const idx = toCuda(idxCpu);
    expectCode(() => native.scatterTokens(g, idxCpu, 5), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.scatterTokens(g, idx, -1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.scatterTokens(g, toCuda(nt(randint([2, 3], 2, 5), [2, 3])), 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.scatterTokens(g, toCuda(nt(randint([1, 4], 2, 5), [1, 4])), 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.scatterTokens(toCuda(nt(randn([8, 3], 1), [8, 3])), idx, 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.scatterTokens(toCuda(nt(randint([2, 4, 3], 1, 3), [2, 4, 3])), idx, 5), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.scatterTokens(g, toCuda(nt(randn([2, 4], 1), [2, 4])), 5), 'ERR_VITRIM_DTYPE');
    const y: NativeTensor = native.scatterTokens(g, idx, 5);
    expect(y.shape).toEqual([2, 5, 3]);
  });
});
