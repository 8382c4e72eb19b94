import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { absDot, dot, expectClose, expectCloseSum, expectCode, nt, randint, randn } from './helpers.js';
import { expectExact } from './nd_ref.js';

const threads0 = native.info().threads;
afterAll(() => native.setNumThreads(threads0));

function gatherRef(x: Float32Array, B: number, N: number, C: number, idx: Int32Array, K: number): Float32Array {
  const y = new Float32Array(B * K * C);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let c = 0; c < C; c++) y[(b * K + k) * C + c] = x[(b * N + idx[b * K + k]) * C + c];
  return y;
}

function scatterRef(g: Float32Array, B: number, K: number, C: number, idx: Int32Array, n: number): Float64Array {
  const y = new Float64Array(B * n * C);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++)
      for (let c = 0; c < C; c++) y[(b * n + idx[b * K + k]) * C + c] += g[(b * K + k) * C + c];
  return y;
}

const CASES: [number, number, number, number][] = [
  // B, N, K, C
  [1, 1, 1, 1],
  [2, 5, 3, 1],
  [3, 17, 17, 3],
  [2, 197, 98, 17],
  [4, 197, 140, 384], // threaded
  [1, 197, 400, 48], // K > N: repeats are certain
  [2, 7, 0, 5], // nothing kept
];

describe('gatherTokens', () => {
  it('copies the indexed rows exactly (with repeats), for odd and ViT sizes', () => {
    CASES.forEach(([B, N, K, C], s) => {
      const x = randn([B, N, C], s);
      const idx = randint([B, K], s + 100, N);
      const y = native.gatherTokens(nt(x, [B, N, C]), nt(idx, [B, K]));
      expect(y.shape).toEqual([B, K, C]);
      expectExact(y.read(), gatherRef(x, B, N, C, idx, K), `gather ${B},${N},${K},${C}`);
    });
  });

  it('checks every index before writing and names the bad value and position', () => {
    const x = nt(randn([2, 5, 3], 1), [2, 5, 3]);
    const idx = randint([2, 4], 2, 5);
    idx[6] = 5; // b = 1, k = 2
    const msg = expectCode(() => native.gatherTokens(x, nt(idx, [2, 4])), 'ERR_VITRIM_INDEX');
    expect(msg).toContain('idx[1, 2] = 5');
    idx[6] = -1;
    expect(expectCode(() => native.gatherTokens(x, nt(idx, [2, 4])), 'ERR_VITRIM_INDEX')).toContain('idx[1, 2] = -1');
    idx[6] = 2147483647;
    expectCode(() => native.gatherTokens(x, nt(idx, [2, 4])), 'ERR_VITRIM_INDEX');
  });

  it('bad input gives typed errors and the op still works after', () => {
    const x = nt(randn([2, 5, 3], 1), [2, 5, 3]);
    const idx = nt(randint([2, 4], 2, 5), [2, 4]);
    expectCode(() => native.gatherTokens(nt(randint([2, 5, 3], 3, 4), [2, 5, 3]), idx), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gatherTokens(x, nt(randn([2, 4], 3), [2, 4])), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gatherTokens(nt(randn([10, 3], 3), [10, 3]), idx), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gatherTokens(x, nt(randint([8], 3, 5), [8])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gatherTokens(x, nt(randint([3, 4], 3, 5), [3, 4])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gatherTokens({} as never, idx), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gatherTokens(x, [0, 1] as never), 'ERR_VITRIM_ARGUMENT');
    const f = nt(randn([2, 5, 3], 4), [2, 5, 3]);
    f.free();
    expectCode(() => native.gatherTokens(f, idx), 'ERR_VITRIM_DISPOSED');
    expect(native.gatherTokens(x, idx).shape).toEqual([2, 4, 3]);
  });
});

describe('scatterTokens', () => {
  it('matches the float64 reference, accumulating repeated indices', () => {
    CASES.forEach(([B, N, K, C], s) => {
      const g = randn([B, K, C], s + 7);
      const idx = randint([B, K], s + 200, N);
      const y = native.scatterTokens(nt(g, [B, K, C]), nt(idx, [B, K]), N);
      expect(y.shape).toEqual([B, N, C]);
      expectClose(y.read(), scatterRef(g, B, K, C, idx, N), 1e-6, `scatter ${B},${N},${K},${C}`);
    });
    // all K rows on one token: the sum of every row
    const g = randn([1, 50, 4], 3);
    const onToken2 = new Int32Array(50).fill(2);
    const y = native.scatterTokens(nt(g, [1, 50, 4]), nt(onToken2, [1, 50]), 3).read();
    // a 50-term float32 sum can cancel: bounded by the terms' size too (plain 1e-6 failed 3 in 20000 draws)
    const mag = scatterRef(g.map(Math.abs), 1, 50, 4, onToken2, 3);
    expectCloseSum(y, scatterRef(g, 1, 50, 4, onToken2, 3), mag, 1e-6, 'all repeats');
    expect(Array.from(y.slice(0, 8))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('is the adjoint of gather: <gather(x), g> = <x, scatter(g)>', () => {
    CASES.forEach(([B, N, K, C], s) => {
      const x = randn([B, N, C], s + 11);
      const g = randn([B, K, C], s + 12);
      const idx = nt(randint([B, K], s + 13, N), [B, K]);
      const gx = native.gatherTokens(nt(x, [B, N, C]), idx).read();
      const lhs = dot(gx, g);
      const rhs = dot(x, native.scatterTokens(nt(g, [B, K, C]), idx, N).read());
      // scatter rounds its float32 sums: the error scales with Σ|terms|, not with |lhs|
      expect(Math.abs(lhs - rhs), `${B},${N},${K},${C}`).toBeLessThanOrEqual(1e-6 * (1 + absDot(gx, g)));
    });
  });

  it('results do not depend on the thread count', () => {
    const [B, N, K, C] = [2, 197, 300, 384];
    const g = nt(randn([B, K, C], 5), [B, K, C]);
    const idx = nt(randint([B, K], 6, N), [B, K]);
    native.setNumThreads(1);
    const a = native.scatterTokens(g, idx, N).read();
    native.setNumThreads(Math.max(2, threads0));
    const b = native.scatterTokens(g, idx, N).read();
    native.setNumThreads(threads0);
    expectExact(a, b, 'threads');
  });

  it('bad input gives typed errors and the op still works after', () => {
    const g = nt(randn([2, 4, 3], 1), [2, 4, 3]);
    const ia = randint([2, 4], 2, 5);
    const idx = nt(ia, [2, 4]);
    ia[1] = 5;
    expect(expectCode(() => native.scatterTokens(g, nt(ia, [2, 4]), 5), 'ERR_VITRIM_INDEX')).toContain('idx[0, 1] = 5');
    expectCode(() => native.scatterTokens(g, idx, 0), 'ERR_VITRIM_INDEX');
    expectCode(() => native.scatterTokens(g, idx, -1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.scatterTokens(g, idx, 2.5), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.scatterTokens(g, idx, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.scatterTokens(g, nt(randint([2, 3], 2, 5), [2, 3]), 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.scatterTokens(g, nt(randint([1, 4], 2, 5), [1, 4]), 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.scatterTokens(nt(randn([8, 3], 1), [8, 3]), idx, 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.scatterTokens(nt(randint([2, 4, 3], 1, 3), [2, 4, 3]), idx, 5), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.scatterTokens(g, nt(randn([2, 4], 1), [2, 4]), 5), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.scatterTokens(g, null as never, 5), 'ERR_VITRIM_ARGUMENT');
    const f = nt(randint([2, 4], 2, 5), [2, 4]);
    f.free();
    expectCode(() => native.scatterTokens(g, f, 5), 'ERR_VITRIM_DISPOSED');
    expect(native.scatterTokens(g, idx, 5).shape).toEqual([2, 5, 3]);
  });
});
