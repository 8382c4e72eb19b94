/**
 * CUDA random / Gumbel samplers (native/cuda/sample.cu) against the CPU ops for the SAME (seed,
 * offset): the two devices share the Philox stream keyed by the logical element index, so they must
 * give the same values and the same hard decisions. The documented agreement (sample.cu's header):
 *  - uniform: bit-identical;
 *  - normal / Gumbel / logistic: |gpu - cpu| <= 1e-6 * max(1, |cpu|) per element (device logf /
 *    log1pf / cosf are within an ulp or two of the host's), and ‖gpu − cpu‖/‖cpu‖ <= 1e-6;
 *  - y_soft: ‖gpu − cpu‖/‖cpu‖ <= 1e-6 in float32; in bfloat16 the CPU result rounded to bf16 within
 *    one bf16 rounding (1e-2 per the suite's bf16 bound, and in fact ~1e-3);
 *  - hard decisions: equal, except where the CPU's y_soft lies within 1e-5 of the threshold (sigmoid)
 *    or within 1e-5 (relative) of the row's runner-up (softmax). Such exemptions are counted and must
 *    stay rare, so the check cannot pass by exempting everything.
 * Seeds and offsets are fresh per run (from RUN_SEED), 64-bit ones included; every shape with the
 * Philox path has > 2^16 elements somewhere.
 */
import { expect, it } from 'vitest';
import { native, type Dist, type DType, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, randn, randu, relErr, rng } from '../helpers.js';
import { expectExact } from '../nd_ref.js';
import { cudaAs, describeCuda, expectRel, FLOAT_DTYPES, roundTo, toCuda, values } from './helpers.js';

const DISTS: Dist[] = ['uniform', 'normal', 'gumbel', 'logistic'];
const r0 = rng(4242);
/** Fresh (seed, offset) pairs: small, 32-bit and 52-bit (the high key/counter words in use). */
const STREAMS: [number, number][] = [
  [Math.floor(r0() * 1000), Math.floor(r0() * 100)],
  [Math.floor(r0() * 2 ** 32), Math.floor(r0() * 2 ** 32)],
  [Math.floor(r0() * 2 ** 52), Math.floor(r0() * 2 ** 52)],
];
const SOFT_TOL: Record<DType, number> = { float32: 1e-6, bfloat16: 1e-2, int32: 0 };

function bytes(t: NativeTensor): Buffer {
  const c = t.device === 'cpu' ? t : native.toDevice(t, 'cpu');
  const d = c.read();
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

/** Per-element |a - b| <= tol * max(1, |b|), and the norm-wise bound. */
function expectElementwise(got: Float32Array, want: Float32Array, tol: number, what: string) {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i]))))
      throw new Error(`${what}: element ${i} is ${got[i]}, the CPU says ${want[i]}`);
  }
  expectRel(got, want, tol, what);
}

/** Hard sigmoid decisions: equal outside a 1e-5 band around θ; returns how many were exempt. */
function expectSigmoidDecisions(got: Float32Array, want: Float32Array, softCpu: Float32Array, theta: number,
  what: string): number {
  let exempt = 0;
  let ones = 0;
  for (let i = 0; i < want.length; i++) {
    ones += want[i];
    if (Math.abs(softCpu[i] - theta) <= 1e-5) {
      exempt++;
      continue;
    }
    if (got[i] !== want[i]) throw new Error(`${what}: decision ${i} is ${got[i]}, the CPU says ${want[i]} (y_soft ${softCpu[i]})`);
  }
  expect(exempt).toBeLessThan(Math.max(5, want.length * 1e-3));
  expect(ones).toBeGreaterThan(0); // not vacuous: both decisions occur
  expect(ones).toBeLessThan(want.length);
  return exempt;
}

/** Hard softmax rows: the one-hot position equals the CPU's unless its top two are within 1e-5. */
function expectSoftmaxDecisions(got: Float32Array, want: Float32Array, softCpu: Float32Array, L: number, what: string) {
  let exempt = 0;
  for (let r = 0; r < want.length / L; r++) {
    let gi = -1;
    let wi = -1;
    let hot = 0;
    for (let j = 0; j < L; j++) {
      if (got[r * L + j] === 1) {
        gi = j;
        hot++;
      }
      if (want[r * L + j] === 1) wi = j;
    }
    if (hot !== 1) throw new Error(`${what}: row ${r} has ${hot} ones`);
    if (gi === wi) continue;
    const a = softCpu[r * L + gi];
    const b = softCpu[r * L + wi];
    if (Math.abs(a - b) <= 1e-5 * Math.max(a, b)) {
      exempt++;
      continue;
    }
    throw new Error(`${what}: row ${r} picks ${gi} (y_soft ${a}), the CPU picks ${wi} (y_soft ${b})`);
  }
  expect(exempt).toBeLessThan(Math.max(5, (want.length / L) * 1e-3));
}

describeCuda('cuda random', () => {
  it('every distribution equals the CPU stream for the same (seed, offset) (> 2^16 elements)', () => {
    for (const [seed, offset] of STREAMS)
      for (const dist of DISTS) {
        const shape = [70001];
        const got = native.random(shape, dist, seed, offset, 'cuda');
        expect(got.device).toBe('cuda');
        expect(got.dtype).toBe('float32');
        const g = values(got);
        const w = native.random(shape, dist, seed, offset).read() as Float32Array;
        if (dist === 'uniform') expectExact(g, w, `uniform ${seed}/${offset}`);
        else expectElementwise(g, w, 1e-6, `${dist} ${seed}/${offset}`);
      }
  });

  it('keyed by logical index: [n] and [a, b, c] give the same bytes; same call, same bytes', () => {
    const [seed, offset] = STREAMS[1];
    for (const dist of DISTS) {
      const flat = native.random([3 * 257 * 129], dist, seed, offset, 'cuda');
      const cube = native.random([3, 257, 129], dist, seed, offset, 'cuda');
      const again = native.random([3 * 257 * 129], dist, seed, offset, 'cuda');
      expect(bytes(cube).equals(bytes(flat))).toBe(true);
      expect(bytes(again).equals(bytes(flat))).toBe(true);
      const other = values(native.random([4096], dist, seed, offset + 1, 'cuda'));
      const base = values(flat).subarray(0, 4096);
      let same = 0;
      for (let i = 0; i < 4096; i++) same += other[i] === base[i] ? 1 : 0;
      expect(same).toBeLessThan(10);
    }
    expect(native.random([0], 'normal', 1, 0, 'cuda').shape).toEqual([0]);
    expect(native.random([], 'gumbel', 1, 0, 'cuda').shape).toEqual([]);
  });
});

describeCuda('cuda gumbelSigmoid', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: Philox path — y_soft and hard decisions equal the CPU's (same seed/offset)`, () => {
      const shape = [64, 1100]; // 70400 elements
      const z = roundTo(nt(randn(shape, 1, 2), shape), dtype);
      const zc = cudaAs(z, dtype);
      STREAMS.forEach(([seed, offset], s) => {
        const tau = [1, 0.5, 2 / 3][s];
        for (const theta of [0.5, 0.3]) {
          const [wy, ws] = native.gumbelSigmoid(z, tau, theta, true, null, seed, offset);
          const [gy, gs] = native.gumbelSigmoid(zc, tau, theta, true, null, seed, offset);
          expect(gy.dtype).toBe(dtype);
          expect(gs.dtype).toBe(dtype);
          const wsv = ws.read() as Float32Array;
          expectRel(gs, roundTo(ws, dtype), SOFT_TOL[dtype], `y_soft ${dtype} τ=${tau}`);
          expectSigmoidDecisions(values(gy), wy.read() as Float32Array, wsv, theta, `hard ${dtype} θ=${theta}`);
          // soft: y is y_soft
          const [sy, ss] = native.gumbelSigmoid(zc, tau, theta, false, null, seed, offset);
          expect(bytes(sy).equals(bytes(ss))).toBe(true);
          expect(bytes(ss).equals(bytes(gs))).toBe(true);
          expect(sy.sameStorage(ss)).toBe(false);
        }
      });
    });

    it(`${dtype}: explicit noise equals the CPU`, () => {
      const shape = [3, 197, 7];
      const z = roundTo(nt(randn(shape, 2, 2), shape), dtype);
      const noise = roundTo(nt(randn(shape, 3, 1.5), shape), dtype);
      const [wy, ws] = native.gumbelSigmoid(z, 0.8, 0.6, true, noise, 0, 0);
      const [gy, gs] = native.gumbelSigmoid(cudaAs(z, dtype), 0.8, 0.6, true, cudaAs(noise, dtype), 0, 0);
      expectRel(gs, roundTo(ws, dtype), SOFT_TOL[dtype], `y_soft noise ${dtype}`);
      expectSigmoidDecisions(values(gy), wy.read() as Float32Array, ws.read() as Float32Array, 0.6, `hard noise ${dtype}`);
    });

    it(`${dtype}: backward equals the CPU`, () => {
      const shape = [70001];
      const ys = roundTo(nt(randu(shape, 4, 0.01, 0.99), shape), dtype);
      const g = roundTo(nt(randn(shape, 5), shape), dtype);
      for (const tau of [1, 0.37]) {
        const want = native.gumbelSigmoidBackward(ys, g, tau);
        const got = native.gumbelSigmoidBackward(cudaAs(ys, dtype), cudaAs(g, dtype), tau);
        expect(got.dtype).toBe(dtype);
        expectRel(got, roundTo(want, dtype), dtype === 'float32' ? 1e-6 : 1e-3, `sigmoid bwd ${dtype} τ=${tau}`);
      }
    });
  }
});

describeCuda('cuda gumbelSoftmax', () => {
  // DynamicViT's [B, N, 2] keep/drop logits, a class-sized row, odd rows; each > 2^16 elements or
  // > 65535 rows where it matters.
  const SHAPES: number[][] = [[64, 197, 2], [40, 1000], [3, 17], [70001, 3], [5, 1]];
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: Philox path — y_soft and argmax decisions equal the CPU's (same seed/offset)`, () => {
      SHAPES.forEach((shape, s) => {
        const L = shape[shape.length - 1];
        const z = roundTo(nt(randn(shape, 10 + s, 2), shape), dtype);
        const zc = cudaAs(z, dtype);
        const [seed, offset] = STREAMS[s % STREAMS.length];
        const tau = [1, 0.5, 2 / 3][s % 3];
        const [wy, ws] = native.gumbelSoftmax(z, tau, true, null, seed, offset);
        const [gy, gs] = native.gumbelSoftmax(zc, tau, true, null, seed, offset);
        expect(gy.dtype).toBe(dtype);
        expect(gs.shape).toEqual(shape);
        expectRel(gs, roundTo(ws, dtype), SOFT_TOL[dtype], `y_soft ${dtype} [${shape}]`);
        expectSoftmaxDecisions(values(gy), wy.read() as Float32Array, ws.read() as Float32Array, L, `hard ${dtype} [${shape}]`);
        const [sy, ss] = native.gumbelSoftmax(zc, tau, false, null, seed, offset);
        expect(bytes(sy).equals(bytes(ss))).toBe(true);
        expect(bytes(ss).equals(bytes(gs))).toBe(true);
      });
    });

    it(`${dtype}: explicit noise, ties to the lowest index, NaN rows as on the CPU`, () => {
      const shape = [50, 33];
      const zd = randn(shape, 20, 2);
      // row 0: an exact tie between two maxima (noise 0); row 1: a NaN logit; row 2: all -inf
      const noised = randn(shape, 21);
      for (let j = 0; j < 33; j++) {
        zd[j] = j === 4 || j === 9 ? 3 : -3;
        noised[j] = 0;
      }
      zd[33 + 5] = Number.NaN;
      for (let j = 0; j < 33; j++) zd[66 + j] = -Infinity;
      const z = roundTo(nt(zd, shape), dtype);
      const noise = roundTo(nt(noised, shape), dtype);
      const [wy, ws] = native.gumbelSoftmax(z, 0.9, true, noise, 0, 0);
      const [gy, gs] = native.gumbelSoftmax(cudaAs(z, dtype), 0.9, true, cudaAs(noise, dtype), 0, 0);
      expectExact(values(gy), wy.read() as Float32Array, `hard with ties/NaN ${dtype}`);
      expect(values(gy)[4]).toBe(1); // the tie goes to the lower index
      const a = values(gs);
      const b = values(roundTo(ws, dtype));
      for (let i = 66; i < 99; i++) expect(Number.isNaN(a[i]) && Number.isNaN(b[i])).toBe(true); // all -inf: NaN
      for (let i = 33; i < 66; i++) expect(Number.isNaN(a[i])).toBe(true); // a NaN logit: NaN row
      // the finite rows agree
      const fa = Float32Array.from([...a.subarray(0, 33), ...a.subarray(99)]);
      const fb = Float32Array.from([...b.subarray(0, 33), ...b.subarray(99)]);
      expectRel(fa, fb, SOFT_TOL[dtype], `y_soft finite rows ${dtype}`);
    });

    it(`${dtype}: backward equals the CPU`, () => {
      for (const shape of [[64, 197, 2], [40, 1000], [7, 3]]) {
        const L = shape[shape.length - 1];
        const p = randu(shape, 30, 0.05, 1);
        for (let r = 0; r < p.length / L; r++) {
          let sum = 0;
          for (let j = 0; j < L; j++) sum += p[r * L + j];
          for (let j = 0; j < L; j++) p[r * L + j] /= sum;
        }
        const ys = roundTo(nt(p, shape), dtype);
        const g = roundTo(nt(randn(shape, 31), shape), dtype);
        const want = native.gumbelSoftmaxBackward(ys, g, 0.7);
        const got = native.gumbelSoftmaxBackward(cudaAs(ys, dtype), cudaAs(g, dtype), 0.7);
        expect(got.dtype).toBe(dtype);
        expectRel(got, roundTo(want, dtype), dtype === 'float32' ? 1e-6 : 1e-3, `softmax bwd ${dtype} [${shape}]`);
      }
    });
  }
});

describeCuda('cuda sampling bad input', () => {
  it('typed errors, and the ops keep working', () => {
    const z = toCuda(nt(randn([4, 5], 80), [4, 5]));
    const ok = toCuda(nt(randn([4, 5], 81), [4, 5]));
    for (const tau of [0, -1, Number.NaN, Infinity]) {
      expectCode(() => native.gumbelSigmoid(z, tau, 0.5, true, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSoftmax(z, tau, true, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSigmoidBackward(ok, ok, tau), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => native.gumbelSoftmaxBackward(ok, ok, tau), 'ERR_VITRIM_ARGUMENT');
    }
    for (const theta of [0, 1, Number.NaN]) expectCode(() => native.gumbelSigmoid(z, 1, theta, false, null, 1, 0), 'ERR_VITRIM_ARGUMENT');
    // noise: another device, dtype, shape
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, nt(randn([4, 5], 1), [4, 5]), 1, 0), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.gumbelSoftmax(z, 1, true, cudaAs(nt(randn([4, 5], 1), [4, 5]), 'bfloat16'), 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSigmoid(z, 1, 0.5, true, toCuda(nt(randn([20], 1), [20])), 1, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gumbelSigmoid(toCuda(nt(new Int32Array(20), [4, 5])), 1, 0.5, true, null, 1, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSoftmax(toCuda(nt([1], [])), 1, true, null, 1, 0), 'ERR_VITRIM_SHAPE');
    // backwards: mixed devices, dtypes, shapes
    expectCode(() => native.gumbelSigmoidBackward(ok, nt(randn([4, 5], 2), [4, 5]), 1), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.gumbelSoftmaxBackward(ok, cudaAs(nt(randn([4, 5], 2), [4, 5]), 'bfloat16'), 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gumbelSigmoidBackward(ok, toCuda(nt(randn([5, 4], 2), [5, 4])), 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.random([3], 'cauchy' as never, 1, 0, 'cuda'), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.random([3, -1], 'uniform', 1, 0, 'cuda'), 'ERR_VITRIM_SHAPE');
    // still works, and equals the CPU
    const zc = nt(randn([4, 5], 80), [4, 5]);
    const [, s] = native.gumbelSigmoid(z, 1, 0.5, false, null, 7, 3);
    const [, w] = native.gumbelSigmoid(zc, 1, 0.5, false, null, 7, 3);
    expect(relErr(values(s), w.read() as Float32Array)).toBeLessThanOrEqual(1e-6);
  });
});
