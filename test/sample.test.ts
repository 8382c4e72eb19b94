/**
 * Philox random tensors and the Gumbel samplers (native/cpu/sample.cpp).
 *  (a) statistics: Bernoulli keep rates of hard Gumbel-sigmoid vs σ(z), hard Gumbel-softmax class
 *      frequencies vs softmax(z), and the mean/variance of the four distributions. These use fixed
 *      inputs and a fixed Philox seed, so each is deterministic (it cannot flake) yet fails when the
 *      sampler's distribution is wrong; bounds are ~4.5 standard errors.
 *  (b) keying: a JS Philox4x32-10 (checked against Random123's published known-answer vectors)
 *      reproduces the native streams exactly; same (seed, offset) → same bytes; other offset/seed →
 *      other bytes; [n] and [a, b] give the same bytes; 1 and 2 threads give the same bytes.
 *  (c) explicit noise → the float64 closed form (≤ 1e-6).
 *  (d) backward vs the analytic float64 formula and finite differences of y_soft.
 *  (e) bad input.
 */
import { describe, expect, it } from 'vitest';
import { native, type Dist, type NativeTensor } from '../lib/native.js';
import { dot, expectClose, expectCode, finiteDiff, nt, randn, randu, rng } from './helpers.js';

// ---------------------------------------------------------------- JS Philox4x32-10 reference
function mulhilo(a: number, b: number): [number, number] {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const t = aL * bL;
  const m1 = aH * bL;
  const m2 = aL * bH;
  const mid = (t >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  const hi = (aH * bH + (m1 >>> 16) + (m2 >>> 16) + (mid >>> 16)) >>> 0;
  return [Math.imul(a, b) >>> 0, hi];
}

function philox4x32_10(ctr: number[], key: number[]): number[] {
  let [c0, c1, c2, c3] = ctr.map((v) => v >>> 0);
  let [k0, k1] = key.map((v) => v >>> 0);
  for (let r = 0; r < 10; r++) {
    const [lo0, hi0] = mulhilo(0xd2511f53, c0);
    const [lo1, hi1] = mulhilo(0xcd9e8d57, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

const split = (v: number) => [v % 2 ** 32, Math.floor(v / 2 ** 32)];
/** Word 0 for element `index` of stream (seed, offset), as vitrim/philox.h keys it. */
function philoxBits(seed: number, offset: number, index: number): number {
  const [i0, i1] = split(index);
  const [o0, o1] = split(offset);
  return philox4x32_10([i0, i1, o0, o1], split(seed))[0];
}
const uniformRef = (seed: number, offset: number, i: number) =>
  Math.fround((philoxBits(seed, offset, i) >>> 8) + 0.5) * 2 ** -24;

function distRef(dist: Dist, seed: number, offset: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (dist === 'normal') {
      const u1 = uniformRef(seed, offset, 2 * i);
      const u2 = uniformRef(seed, offset, 2 * i + 1);
      out[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      continue;
    }
    const u = uniformRef(seed, offset, i);
    out[i] = dist === 'uniform' ? u : dist === 'gumbel' ? -Math.log(-Math.log(u)) : Math.log(u) - Math.log1p(-u);
  }
  return out;
}

// ---------------------------------------------------------------- float64 closed forms
const sigmoid = (t: number) => (t >= 0 ? 1 / (1 + Math.exp(-t)) : Math.exp(t) / (1 + Math.exp(t)));

function softmaxRows(t: ArrayLike<number>, L: number): Float64Array {
  const out = new Float64Array(t.length);
  for (let r = 0; r < t.length / L; r++) {
    let m = -Infinity;
    for (let j = 0; j < L; j++) m = Math.max(m, t[r * L + j]);
    let s = 0;
    for (let j = 0; j < L; j++) s += out[r * L + j] = Math.exp(t[r * L + j] - m);
    for (let j = 0; j < L; j++) out[r * L + j] /= s;
  }
  return out;
}

const bytes = (t: NativeTensor) => Buffer.from((t.read() as Float32Array).buffer);

function withThreads<T>(n: number, fn: () => T): T {
  const before = native.info().threads;
  try {
    native.setNumThreads(n);
    return fn();
  } finally {
    native.setNumThreads(before);
  }
}

const DISTS: Dist[] = ['uniform', 'normal', 'gumbel', 'logistic'];

// ================================================================ (a) statistics
describe('sampling statistics (fixed seeds: deterministic)', () => {
  it('hard Gumbel-sigmoid keeps with probability σ(z − τ·logit θ)', () => {
    const zs = [-2, -0.5, 0, 0.7, 2.5];
    const n = 100_000;
    const z = new Float32Array(zs.length * n);
    zs.forEach((v, r) => z.fill(v, r * n, (r + 1) * n));
    for (const [tau, theta, seed] of [
      [1, 0.5, 1234],
      [5, 0.6, 99], // AdaViT's public token gate
      [0.4, 0.3, 7],
    ]) {
      const [y] = native.gumbelSigmoid(nt(z, [zs.length, n]), tau, theta, true, null, seed, 0);
      const yy = y.read();
      zs.forEach((zv, r) => {
        let kept = 0;
        for (let i = r * n; i < (r + 1) * n; i++) kept += yy[i];
        const p = sigmoid(zv - tau * Math.log(theta / (1 - theta)));
        const se = Math.sqrt((p * (1 - p)) / n);
        const zscore = Math.abs(kept / n - p) / se;
        if (!(zscore < 4.5)) throw new Error(`z=${zv} tau=${tau} theta=${theta}: rate ${kept / n} vs ${p} (${zscore.toFixed(2)} SE)`);
      });
    }
  });

  it('hard Gumbel-softmax picks class j with probability softmax(z)_j', () => {
    const zs = [1.2, -0.3, 0.5, 2.0, -1.5, 0.0];
    const K = zs.length;
    const n = 60_000;
    const z = new Float32Array(n * K);
    for (let r = 0; r < n; r++) z.set(zs, r * K);
    const p = softmaxRows(zs, K);
    for (const [tau, seed] of [
      [1, 31337],
      [0.3, 5],
    ]) {
      const [y] = native.gumbelSoftmax(nt(z, [n, K]), tau, true, null, seed, 11);
      const yy = y.read();
      const counts = new Float64Array(K);
      for (let i = 0; i < yy.length; i++) counts[i % K] += yy[i];
      expect(counts.reduce((a, b) => a + b, 0)).toBe(n); // exactly one 1 per row
      let chi2 = 0;
      for (let j = 0; j < K; j++) {
        const e = n * p[j];
        chi2 += (counts[j] - e) ** 2 / e;
        const zscore = Math.abs(counts[j] - e) / Math.sqrt(n * p[j] * (1 - p[j]));
        if (!(zscore < 4.5)) throw new Error(`class ${j}: ${counts[j]} vs ${e} (${zscore.toFixed(2)} SE)`);
      }
      expect(chi2).toBeLessThan(30); // 5 dof: P(chi2 > 30) ≈ 1.5e-5
    }
  });

  it('uniform / normal / Gumbel / logistic have the right mean and variance', () => {
    const n = 400_000;
    const euler = 0.5772156649015329;
    // [mean, variance, fourth central moment]
    const moments: Record<Dist, [number, number, number]> = {
      uniform: [0.5, 1 / 12, 1 / 80],
      normal: [0, 1, 3],
      gumbel: [euler, Math.PI ** 2 / 6, 5.4 * (Math.PI ** 2 / 6) ** 2],
      logistic: [0, Math.PI ** 2 / 3, 4.2 * (Math.PI ** 2 / 3) ** 2],
    };
    for (const dist of DISTS) {
      const x = native.random([n], dist, 2024, 3).read();
      let s = 0;
      for (const v of x) s += v;
      const mean = s / n;
      let ss = 0;
      for (const v of x) ss += (v - mean) ** 2;
      const variance = ss / (n - 1);
      const [mu, v2, m4] = moments[dist];
      const seMean = Math.sqrt(v2 / n);
      const seVar = Math.sqrt((m4 - v2 * v2) / n);
      if (!(Math.abs(mean - mu) < 4.5 * seMean)) throw new Error(`${dist}: mean ${mean} vs ${mu}`);
      if (!(Math.abs(variance - v2) < 4.5 * seVar)) throw new Error(`${dist}: variance ${variance} vs ${v2}`);
      expect(x.every(Number.isFinite)).toBe(true);
      if (dist === 'uniform') expect(x.every((v) => v > 0 && v < 1)).toBe(true);
    }
  });
});

// ================================================================ (b) keying and reproducibility
describe('Philox keying and reproducibility', () => {
  it('the JS reference Philox4x32-10 matches the Random123 known-answer vectors', () => {
    // tests/kat_vectors of github.com/DEShawResearch/random123 (philox4x32 10 lines)
    const kat: [number[], number[], number[]][] = [
      [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
      [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
      [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
    ];
    for (const [ctr, key, want] of kat) expect(philox4x32_10(ctr, key)).toEqual(want);
    // and the native stream's element 0 at seed 0, offset 0 is word 0 of the all-zero vector
    expect(native.random([1], 'uniform', 0, 0).read()[0]).toBe(Math.fround(0x6627e8 + 0.5) * 2 ** -24);
  });

  it('native streams equal the JS Philox reference for every distribution (64-bit seeds/offsets)', () => {
    const r = rng(3);
    const streams: [number, number][] = [
      [0, 0],
      [Math.floor(r() * 2 ** 32), Math.floor(r() * 1000)],
      [2 ** 53, 2 ** 40 + 5], // high words of seed and offset in use
      [Math.floor(r() * 2 ** 52), Math.floor(r() * 2 ** 52)],
    ];
    for (const [seed, offset] of streams) {
      for (const dist of DISTS) {
        const n = 777;
        const got = native.random([n], dist, seed, offset).read();
        const want = distRef(dist, seed, offset, n);
        if (dist === 'uniform') expect(Array.from(got)).toEqual(Array.from(want));
        else expectClose(got, want, 2e-6, `${dist} seed ${seed} offset ${offset}`);
      }
    }
  });

  it('same (seed, offset) → same bytes; another offset or seed → other values', () => {
    for (const dist of DISTS) {
      const a = native.random([4096], dist, 77, 5);
      const b = native.random([4096], dist, 77, 5);
      expect(bytes(a).equals(bytes(b))).toBe(true);
      for (const c of [native.random([4096], dist, 77, 6), native.random([4096], dist, 78, 5)]) {
        const av = a.read();
        const cv = c.read();
        let same = 0;
        for (let i = 0; i < av.length; i++) same += av[i] === cv[i] ? 1 : 0;
        expect(same).toBeLessThan(10);
      }
    }
  });

  it('values are keyed by logical index: [n] and [a, b] give the same bytes', () => {
    for (const dist of DISTS) {
      const flat = native.random([6000], dist, 123, 9);
      const grid = native.random([40, 150], dist, 123, 9);
      const cube = native.random([2, 3, 1000], dist, 123, 9);
      expect(grid.shape).toEqual([40, 150]);
      expect(bytes(grid).equals(bytes(flat))).toBe(true);
      expect(bytes(cube).equals(bytes(flat))).toBe(true);
    }
    const z = randn([6000], 1);
    const [, s1] = native.gumbelSigmoid(nt(z, [6000]), 1, 0.5, true, null, 4, 2);
    const [, s2] = native.gumbelSigmoid(nt(z, [30, 4, 50]), 1, 0.5, true, null, 4, 2);
    expect(bytes(s2).equals(bytes(s1))).toBe(true);
    const [, t1] = native.gumbelSoftmax(nt(z, [120, 50]), 1, true, null, 4, 2);
    const [, t2] = native.gumbelSoftmax(nt(z, [3, 40, 50]), 1, true, null, 4, 2);
    expect(bytes(t2).equals(bytes(t1))).toBe(true);
  });

  it('the Philox path equals the explicit-noise path fed the same stream', () => {
    const shape = [37, 29];
    const z = nt(randn(shape, 2, 2), shape);
    const logistic = native.random(shape, 'logistic', 555, 17);
    const gumbel = native.random(shape, 'gumbel', 555, 17);
    for (const hard of [true, false]) {
      const [y1, s1] = native.gumbelSigmoid(z, 0.7, 0.5, hard, null, 555, 17);
      const [y2, s2] = native.gumbelSigmoid(z, 0.7, 0.5, hard, logistic, 0, 0);
      expect(bytes(s1).equals(bytes(s2))).toBe(true);
      expect(bytes(y1).equals(bytes(y2))).toBe(true);
      const [u1, t1] = native.gumbelSoftmax(z, 0.7, hard, null, 555, 17);
      const [u2, t2] = native.gumbelSoftmax(z, 0.7, hard, gumbel, 0, 0);
      expect(bytes(t1).equals(bytes(t2))).toBe(true);
      expect(bytes(u1).equals(bytes(u2))).toBe(true);
    }
  });

  it('results do not depend on the thread count', () => {
    const z = nt(randn([2000, 25], 3), [2000, 25]);
    const run = () => [
      ...DISTS.map((d) => native.random([50_000], d, 9, 1)),
      ...native.gumbelSigmoid(z, 1.5, 0.5, true, null, 9, 1),
      ...native.gumbelSoftmax(z, 1.5, true, null, 9, 1),
    ];
    const one = withThreads(1, run);
    const two = withThreads(2, run);
    one.forEach((t, i) => expect(bytes(t).equals(bytes(two[i]))).toBe(true));
  });
});

// ================================================================ (c) explicit noise: closed form
describe('explicit noise gives the float64 closed form', () => {
  for (const shape of [[1], [3, 17], [2, 5, 197]]) {
    it(`Gumbel-sigmoid [${shape}]`, () => {
      const z = randn(shape, shape.length, 2);
      const noise = randn(shape, 10 + shape.length, 1.5);
      const tau = 0.3 + 2.7 * rng(shape.length)();
      for (const theta of [0.5, 0.6, 0.17]) {
        const ref = Float64Array.from(z, (v, i) => sigmoid((v + noise[i]) / tau));
        const [yh, sh] = native.gumbelSigmoid(nt(z, shape), tau, theta, true, nt(noise, shape), 0, 0);
        const soft = sh.read();
        expectClose(soft, ref, 1e-6, 'y_soft');
        const hard = yh.read();
        for (let i = 0; i < hard.length; i++) {
          expect(hard[i]).toBe(soft[i] > theta ? 1 : 0); // y and y_soft never disagree
          if (Math.abs(ref[i] - theta) > 1e-6) expect(hard[i]).toBe(ref[i] > theta ? 1 : 0);
        }
        const [ys, ss] = native.gumbelSigmoid(nt(z, shape), tau, theta, false, nt(noise, shape), 0, 0);
        expect(bytes(ys).equals(bytes(ss))).toBe(true);
        expect(bytes(ss).equals(bytes(sh))).toBe(true);
        expect(ys.sameStorage(ss)).toBe(false);
      }
    });

    it(`Gumbel-softmax [${shape}]`, () => {
      const z = randn(shape, 20 + shape.length, 2);
      const noise = randn(shape, 30 + shape.length, 1.5);
      const L = shape[shape.length - 1];
      for (const tau of [1, 0.25, 3.5]) {
        const ref = softmaxRows(Float64Array.from(z, (v, i) => (v + noise[i]) / tau), L);
        const [yh, sh] = native.gumbelSoftmax(nt(z, shape), tau, true, nt(noise, shape), 0, 0);
        const soft = sh.read();
        expectClose(soft, ref, 1e-6, 'y_soft');
        const hard = yh.read();
        for (let r = 0; r < hard.length / L; r++) {
          let best = 0;
          for (let j = 1; j < L; j++) if (soft[r * L + j] > soft[r * L + best]) best = j;
          for (let j = 0; j < L; j++) expect(hard[r * L + j]).toBe(j === best ? 1 : 0);
        }
        const [ys, ss] = native.gumbelSoftmax(nt(z, shape), tau, false, nt(noise, shape), 0, 0);
        expect(bytes(ys).equals(bytes(ss))).toBe(true);
      }
    });
  }

  it('hard Gumbel-softmax breaks ties toward the lowest index', () => {
    const z = nt([0.5, 2, 2, 1, 2, 2, -1, -1], [2, 4]);
    const noise = nt(new Float32Array(8), [2, 4]);
    const [y] = native.gumbelSoftmax(z, 1, true, noise, 0, 0);
    expect(Array.from(y.read())).toEqual([0, 1, 0, 0, 1, 0, 0, 0]);
  });
});

// ================================================================ (d) backward
describe('straight-through backward', () => {
  it('Gumbel-sigmoid: analytic float64 formula and finite differences of y_soft', () => {
    const shape = [4, 9];
    const z = randn(shape, 50, 1.5);
    const noise = nt(randn(shape, 51), shape);
    const w = randn(shape, 52);
    const tau = 0.8;
    const [, ys] = native.gumbelSigmoid(nt(z, shape), tau, 0.5, true, noise, 0, 0);
    const s = ys.read();
    const g = native.gumbelSigmoidBackward(ys, nt(w, shape), tau).read();
    expectClose(g, Float64Array.from(s, (v, i) => (w[i] * v * (1 - v)) / tau), 1e-6, 'analytic');
    const f = (zz: Float32Array) => dot(native.gumbelSigmoid(nt(zz, shape), tau, 0.5, true, noise, 0, 0)[1].read(), w);
    expectClose(g, finiteDiff(f, z, 1e-2), 5e-3, 'finite differences');
  });

  it('Gumbel-softmax: analytic float64 formula and finite differences of y_soft', () => {
    const shape = [3, 2, 7];
    const L = 7;
    const z = randn(shape, 60, 1.5);
    const noise = nt(randn(shape, 61), shape);
    const w = randn(shape, 62);
    const tau = 1.7;
    const [, ys] = native.gumbelSoftmax(nt(z, shape), tau, true, noise, 0, 0);
    const s = ys.read();
    const g = native.gumbelSoftmaxBackward(ys, nt(w, shape), tau).read();
    const ref = new Float64Array(s.length);
    for (let r = 0; r < s.length / L; r++) {
      let d = 0;
      for (let j = 0; j < L; j++) d += w[r * L + j] * s[r * L + j];
      for (let j = 0; j < L; j++) ref[r * L + j] = (s[r * L + j] * (w[r * L + j] - d)) / tau;
    }
    expectClose(g, ref, 1e-6, 'analytic');
    const f = (zz: Float32Array) => dot(native.gumbelSoftmax(nt(zz, shape), tau, false, noise, 0, 0)[1].read(), w);
    expectClose(g, finiteDiff(f, z, 1e-2), 5e-3, 'finite differences');
  });

  it('large tensors (threaded) match the analytic formula', () => {
    const shape = [300, 197];
    const s = randu(shape, 70, 0.01, 0.99);
    const w = randn(shape, 71);
    const g = native.gumbelSigmoidBackward(nt(s, shape), nt(w, shape), 2.5).read();
    expectClose(g, Float64Array.from(s, (v, i) => (w[i] * v * (1 - v)) / 2.5), 1e-6, 'sigmoid bwd');
    const ys = native.gumbelSoftmax(nt(randn(shape, 72), shape), 1, false, null, 1, 1)[1];
    const sv = ys.read();
    const g2 = native.gumbelSoftmaxBackward(ys, nt(w, shape), 0.5).read();
    const ref = new Float64Array(sv.length);
    for (let r = 0; r < 300; r++) {
      let d = 0;
      for (let j = 0; j < 197; j++) d += w[r * 197 + j] * sv[r * 197 + j];
      for (let j = 0; j < 197; j++) ref[r * 197 + j] = (sv[r * 197 + j] * (w[r * 197 + j] - d)) / 0.5;
    }
    expectClose(g2, ref, 1e-6, 'softmax bwd');
  });
});

// ================================================================ (e) bad input
describe('sampling bad input', () => {
  it('random', () => {
    expectCode(() => native.random([3], 'cauchy' as never, 1, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.random([3], 1 as never, 1, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.random([3, -1], 'uniform', 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.random([2 ** 30, 2 ** 30, 4], 'uniform', 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.random([2.5], 'uniform', 1, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.random(3 as never, 'uniform', 1, 0), 'ERR_VITRIM_ARGUMENT');
    for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 53 + 2]) {
      expectCode(() => native.random([3], 'uniform', bad, 0), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.random([3], 'uniform', 0, bad), 'ERR_VITRIM_ARGUMENT');
    }
    expect(native.random([0], 'normal', 1, 0).shape).toEqual([0]);
    expect(native.random([], 'normal', 1, 0).shape).toEqual([]);
    expect(native.random([2], 'uniform', 1, 0).read().length).toBe(2);
  });

  it('gumbelSigmoid / gumbelSoftmax and their backwards', () => {
    const z = nt(randn([4, 5], 80), [4, 5]);
    const ok = nt(randn([4, 5], 81), [4, 5]);
    for (const tau of [0, -1, Number.NaN, Infinity]) {
      expectCode(() => native.gumbelSigmoid(z, tau, 0.5, true, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSoftmax(z, tau, true, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSigmoidBackward(ok, ok, tau), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSoftmaxBackward(ok, ok, tau), 'ERR_VITRIM_ARGUMENT');
    }
    for (const theta of [0, 1, -0.5, 1.5, Number.NaN])
      for (const hard of [true, false]) expectCode(() => native.gumbelSigmoid(z, 1, theta, hard, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
    // noise: wrong shape, dtype, disposed, not a tensor
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, nt(randn([20], 1), [20]), 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSoftmax(z, 1, true, nt(randn([5, 4], 1), [5, 4]), 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, native.cast(ok, 'int32'), 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSoftmax(z, 1, true, native.cast(ok, 'bfloat16'), 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, new Float32Array(20) as never, 1, 0), 'ERR_VITRIM_ARGUMENT');
    const dn = native.copy(ok);
    dn.free();
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, dn, 1, 0), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.gumbelSoftmax(z, 1, true, dn, 1, 0), 'ERR_VITRIM_DISPOSED');
    // logits
    expectCode(() => native.gumbelSigmoid(native.cast(z, 'int32'), 1, 0.5, true, null, 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSoftmax(native.cast(z, 'int32'), 1, true, null, 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSoftmax(nt([1], []), 1, true, null, 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSigmoid(null as never, 1, 0.5, true, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gumbelSoftmax('z' as never, 1, true, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gumbelSigmoid(dn, 1, 0.5, true, null, 1, 0), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, 'yes' as never, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gumbelSoftmax(z, 1, 1 as never, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
    for (const bad of [-1, 0.5, 2 ** 60]) {
      expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, null, bad, 0), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSoftmax(z, 1, true, null, 0, bad), 'ERR_VITRIM_ARGUMENT');
    }
    // backwards
    const other = nt(randn([5, 4], 82), [5, 4]);
    expectCode(() => native.gumbelSigmoidBackward(ok, other, 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSoftmaxBackward(ok, other, 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSigmoidBackward(ok, native.cast(ok, 'int32'), 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSoftmaxBackward(native.cast(ok, 'int32'), ok, 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSoftmaxBackward(nt([1], []), nt([1], []), 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSigmoidBackward(dn, ok, 1), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.gumbelSoftmaxBackward(ok, dn, 1), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.gumbelSoftmaxBackward(ok, {} as never, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gumbelSigmoidBackward(undefined as never, ok, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gumbelSigmoidBackward(ok, ok, '1' as never), 'ERR_VITRIM_ARGUMENT');
    // still works
    const [y, s] = native.gumbelSigmoid(z, 1, 0.5, false, ok, 0, 0);
    const zr = z.read();
    const nr = ok.read();
    expectClose(s.read(), Float64Array.from(zr, (v, i) => sigmoid(v + nr[i])), 1e-6, 'after errors');
    expect(bytes(y).equals(bytes(s))).toBe(true);
    expect(native.gumbelSoftmax(z, 1, true, null, 1, 0)[0].shape).toEqual([4, 5]);
  });
});
