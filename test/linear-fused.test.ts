/**
 * The fused inference linear y = act(x Wᵀ + b) (+ residual): native.linearFused against a float64
 * reference (exact-erf GELU) and against the unfused composition linearForward → unary → binary, on
 * every micro-kernel, with shapes that cross the GEMM's K blocks (the epilogue must run once, after
 * the last one), its column mode (few rows) and tile edges; ops.linearFused with and without
 * gradient recording; and the ViT noGrad forward (fused) against the recorded forward (unfused).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { isGradEnabled, noGrad, ops, tensor, tidy, vit } from '../lib/index.js';
import { native } from '../lib/native.js';
import { expectClose, expectCloseSum, expectCode, finiteDiff, dot, nt, randn, relErr } from './helpers.js';

const ALL_ISAS = ['generic', 'avx2', 'avx512'] as const;
type Isa = (typeof ALL_ISAS)[number];
const ISAS: Isa[] = ALL_ISAS.slice(0, ALL_ISAS.indexOf(native.info().isa as Isa) + 1);
const threads0 = native.info().threads;
afterAll(() => {
  native.gemmSetIsa('auto');
  native.setNumThreads(threads0);
});

/** erfc in float64: positive-term series below 3, continued fraction above (~1e-11 or better). */
function erfc64(x: number): number {
  if (x < 0) return 2 - erfc64(-x);
  if (x < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 500; n++) {
      term *= (2 * x * x) / (2 * n + 1);
      sum += term;
      if (term < 1e-18 * sum) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
  }
  let t = x;
  for (let n = 80; n >= 1; n--) t = x + n / 2 / t;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / t;
}
const gelu64 = (v: number) => 0.5 * v * erfc64(-v * Math.SQRT1_2);

/**
 * float64 y = act(x Wᵀ + b) + r over [M, K] x [N, K], and `mag`, the same sum over absolute values
 * for expectCloseSum: |b| + Σ|x·w| (GELU's slope is below 1.13, which scales the GEMM's rounding
 * through it), plus |act(·)| (its own rounding) and |r|. The sums can cancel (K = 1 and a residual
 * of the opposite sign: 1.02e-5 relative at one seed), where fp32 is only good to a few roundings
 * of these magnitudes.
 */
function fusedRef(X: Float32Array, M: number, K: number, W: Float32Array, N: number, bias: Float32Array | null,
  gelu: boolean, res: Float32Array | null): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(M * N), mag = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      let m = bias ? Math.abs(bias[j]) : 0;
      for (let k = 0; k < K; k++) {
        const t = X[i * K + k] * W[j * K + k];
        s += t;
        m += Math.abs(t);
      }
      if (gelu) {
        s = gelu64(s);
        m = 1.13 * m + Math.abs(s);
      }
      const r = res ? res[i * N + j] : 0;
      y[i * N + j] = s + r;
      mag[i * N + j] = m + Math.abs(r);
    }
  }
  return { y, mag };
}

/** expectCloseSum against fusedRef's result. */
function expectFused(a: ArrayLike<number>, ref: { y: Float64Array; mag: Float64Array }, tol: number, what: string) {
  expectCloseSum(a, ref.y, ref.mag, tol, what);
}

interface Case { lead: number[]; K: number; N: number }
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

function checkCase(c: Case, seed: number, what: string) {
  const M = numel(c.lead);
  // Scale so that pre-activations spread over GELU's whole curve (|h| up to ~6).
  const X = randn([M, c.K], seed), W = randn([c.N, c.K], seed + 1, 2 / Math.sqrt(c.K)), B = randn([c.N], seed + 2);
  const R = randn([M, c.N], seed + 3);
  const xs = [...c.lead, c.K], ys = [...c.lead, c.N];
  const x = nt(X, xs), w = nt(W, [c.N, c.K]), b = nt(B, [c.N]), r = nt(R, ys);
  for (const [act, res, bias] of [['gelu', null, b], ['none', r, b], ['gelu', r, b], ['gelu', null, null], ['none', null, b]] as const) {
    const tag = `${what} ${M}x${c.K}->${c.N} ${act}${res ? '+res' : ''}${bias ? '' : ' nobias'}`;
    const y = native.linearFused(x, w, bias, act, res);
    expect(y.shape).toEqual(ys);
    const yv = y.read();
    expectFused(yv, fusedRef(X, M, c.K, W, c.N, bias ? B : null, act === 'gelu', res ? R : null), 1e-5, tag);
    // The unfused composition (the recorded training path) runs the same GEMM and the same GELU maths.
    let u = native.linearForward(x, w, bias);
    if (act === 'gelu') u = native.unary('gelu', u);
    if (res) u = native.binary('add', u, res);
    expect(relErr(yv, u.read()), tag).toBeLessThanOrEqual(1e-6);
  }
}

describe('native.linearFused', () => {
  it('matches float64 and the unfused ops: odd sizes, K blocks, column mode, tile edges', () => {
    let s = 100;
    const cases: Case[] = [
      { lead: [1], K: 1, N: 1 },
      { lead: [2, 17], K: 33, N: 19 },
      { lead: [197], K: 64, N: 3 },
      { lead: [3, 5], K: 600, N: 97 }, // K > every kernel's kc: the epilogue must wait for the last K block
      { lead: [5], K: 600, N: 1500 }, // few rows, enough work to thread: column mode
      { lead: [2, 197], K: 192, N: 77 }, // row mode over several threads
    ];
    for (const c of cases) checkCase(c, (s += 10), 'auto');
  });

  it('on every micro-kernel', () => {
    for (const isa of ISAS) {
      native.gemmSetIsa(isa);
      checkCase({ lead: [131], K: 47, N: 45 }, 300, isa);
      checkCase({ lead: [13], K: 530, N: 70 }, 310, isa);
    }
    native.gemmSetIsa('auto');
  });

  it('is bitwise the same on 1 thread and on the pool', () => {
    const [M, K, N] = [394, 192, 768];
    const x = nt(randn([M, K], 401), [M, K]), w = nt(randn([N, K], 402, 0.15), [N, K]), b = nt(randn([N], 403), [N]);
    const r = nt(randn([M, N], 404), [M, N]);
    const pool = native.linearFused(x, w, b, 'gelu', r).read();
    native.setNumThreads(1);
    const one = native.linearFused(x, w, b, 'gelu', r).read();
    native.setNumThreads(threads0);
    expect(Array.from(one)).toEqual(Array.from(pool));
  });

  it('K = 0 gives act(bias) + residual; empty rows give an empty result', () => {
    const b = randn([5], 501), R = randn([3, 5], 502);
    const y = native.linearFused(nt(new Float32Array(0), [3, 0]), nt(new Float32Array(0), [5, 0]), nt(b, [5]), 'gelu', nt(R, [3, 5]));
    const ref = new Float64Array(15);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 5; j++) ref[i * 5 + j] = gelu64(b[j]) + R[i * 5 + j];
    expectClose(y.read(), ref, 1e-6, 'K = 0');
    const e = native.linearFused(nt(new Float32Array(0), [0, 4]), nt(randn([5, 4], 503), [5, 4]), null, 'gelu', null);
    expect(e.shape).toEqual([0, 5]);
  });

  it('propagates NaN and saturates GELU in the tails', () => {
    const X = new Float32Array([1, 0, 0, 1, 1, 1]); // rows: h = w0, w1, w0 + w1
    const W = new Float32Array([Number.NaN, 0, -20, 0, 30, 0]); // [3 outputs, K = 2]
    const y = native.linearFused(nt(X, [3, 2]), nt(W, [3, 2]), null, 'gelu', null).read();
    // h[i][j] = X[i]·W[j]: column 0 is NaN in every row (NaN·0 too); rows 0 and 2 have h = -20
    // (GELU underflows to -0) and 30 (GELU = 30 exactly); row 1 has h = 0 (GELU 0).
    for (let i = 0; i < 3; i++) expect(Number.isNaN(y[i * 3])).toBe(true);
    for (const i of [0, 2]) {
      expect(y[i * 3 + 1] === 0).toBe(true);
      expect(y[i * 3 + 2]).toBe(30);
    }
    expect(y[4] === 0 && y[5] === 0).toBe(true);
  });

  it('rejects bad input with typed errors and keeps working', () => {
    const x = nt(randn([3, 4], 1), [3, 4]), w = nt(randn([5, 4], 2), [5, 4]), b = nt(randn([5], 3), [5]);
    const r = nt(randn([3, 5], 4), [3, 5]);
    expectCode(() => native.linearFused(x, nt(randn([5, 3], 5), [5, 3]), b, 'gelu', r), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearFused(x, w, nt(randn([4], 6), [4]), 'gelu', r), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearFused(x, w, b, 'gelu', nt(randn([3, 4], 7), [3, 4])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearFused(x, w, b, 'none', nt(randn([15], 7), [15])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearFused(x, nt(randn([20], 8), [20]), b, 'gelu', null), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearFused(nt(new Int32Array(12), [3, 4]), w, b, 'gelu', r), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearFused(x, w, b, 'gelu', nt(new Int32Array(15), [3, 5])), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearFused(x, w, b, 'relu' as never, r), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.linearFused(x, w, b, 1 as never, r), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.linearFused(x, w, b, 'gelu', 'r' as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.linearFused(x, {} as never, b, 'gelu', r), 'ERR_VITRIM_ARGUMENT');
    const f = nt(randn([3, 5], 9), [3, 5]);
    f.free();
    expectCode(() => native.linearFused(x, w, b, 'none', f), 'ERR_VITRIM_DISPOSED');
    const y = native.linearFused(x, w, b, 'gelu', r);
    expectFused(y.read(), fusedRef(x.read() as Float32Array, 3, 4, w.read() as Float32Array, 5, b.read() as Float32Array, true,
      r.read() as Float32Array), 1e-5, 'after');
  });
});

describe('ops.linearFused', () => {
  const shape = [2, 7, 12];
  const data = () => ({ X: randn(shape, 601), W: randn([9, 12], 602, 0.4), B: randn([9], 603), R: randn([2, 7, 9], 604) });

  it('without recording is the fused kernel; with recording, the same values and gradients of the composition', () => {
    const { X, W, B, R } = data();
    const x = tensor(X, shape, { requiresGrad: true }), w = tensor(W, [9, 12], { requiresGrad: true });
    const b = tensor(B, [9], { requiresGrad: true }), r = tensor(R, [2, 7, 9], { requiresGrad: true });
    const fused = noGrad(() => ops.linearFused(x, w, b, { activation: 'gelu', residual: r }));
    expect(fused.gradFn ?? null).toBeNull();
    const y = ops.linearFused(x, w, b, { activation: 'gelu', residual: r });
    expect(y.gradFn).not.toBeNull();
    expectClose(fused.dataSync(), y.dataSync(), 1e-6, 'noGrad vs recorded');
    const ref = fusedRef(X, 14, 12, W, 9, B, true, R);
    expectFused(y.dataSync(), ref, 1e-5, 'recorded vs float64');
    // Gradients vs central differences of the fused forward.
    const G = randn([2, 7, 9], 605);
    ops.sum(ops.mul(y, tensor(G, [2, 7, 9]))).backward();
    const loss = (xs: Float32Array[]) => noGrad(() => tidy(() => dot(ops.linearFused(tensor(xs[0], shape), tensor(xs[1], [9, 12]),
      tensor(xs[2], [9]), { activation: 'gelu', residual: tensor(xs[3], [2, 7, 9]) }).dataSync(), G)));
    const all = [X, W, B, R];
    [x, w, b, r].forEach((t, k) => {
      const num = finiteDiff((v) => loss(all.map((a, j) => (j === k ? v : a))), all[k], 1e-2);
      expectClose(t.grad!.dataSync(), num, 1e-2, `grad ${k}`);
    });
  });

  it('plain and residual-only forms; validates its options', () => {
    const { X, W, B, R } = data();
    const x = tensor(X, shape), w = tensor(W, [9, 12]), b = tensor(B, [9]), r = tensor(R, [2, 7, 9]);
    expect(isGradEnabled()).toBe(true);
    expectFused(ops.linearFused(x, w, b).dataSync(), fusedRef(X, 14, 12, W, 9, B, false, null), 1e-5, 'plain');
    expectFused(ops.linearFused(x, w, null, { residual: r }).dataSync(), fusedRef(X, 14, 12, W, 9, null, false, R), 1e-5, 'res');
    expect(() => ops.linearFused(x, w, b, { activation: 'tanh' as never })).toThrow(/activation/);
    expect(() => ops.linearFused(x, w, b, { residual: tensor(R.subarray(0, 9), [9]) })).toThrow(/residual/);
  });
});

describe('ViT inference path', () => {
  it('the noGrad forward (fused linears) equals the recorded forward (unfused) within 1e-5', () => {
    const cfg = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 64, depth: 2, numHeads: 4, mlpRatio: 4, numClasses: 10, qkvBias: true };
    const m = vit.create(cfg, { seed: 3 });
    // Non-zero biases and norms so that every fused term matters.
    let seed = 700;
    for (const [, p] of m.namedParameters()) if (p.shape.length === 1) p.assign(randn([...p.shape], seed++, 0.5));
    const x = tensor(randn([3, 3, 32, 32], 701), [3, 3, 32, 32]);
    const recorded = m.forward(x);
    expect(recorded.gradFn).not.toBeNull();
    const inferred = noGrad(() => m.forward(x));
    expect(inferred.gradFn ?? null).toBeNull();
    expectClose(inferred.dataSync(), recorded.dataSync(), 1e-5, 'logits');
    // Token features too (before the head's averaging effect).
    const f1 = noGrad(() => m.forwardFeatures(x)).dataSync();
    const f2 = m.forwardFeatures(x).dataSync();
    expectClose(f1, f2, 1e-5, 'features');
    m.dispose();
  });
});

describe('linearFused packed-weight cache', () => {
  const [M, K, N] = [23, 37, 45];
  const linRef = (X: Float32Array, W: Float32Array, B: Float32Array) => fusedRef(X, M, K, W, N, B, false, null);

  it('follows every in-place write of the weight', () => {
    const X = randn([M, K], 801), B = randn([N], 802);
    let W = randn([N, K], 803, 0.3);
    const x = nt(X, [M, K]), b = nt(B, [N]), w = nt(W, [N, K]);
    const check = (what: string) => {
      expectFused(native.linearFused(x, w, b, 'none', null).read(), linRef(X, W, B), 1e-5, what);
      expectFused(native.linearFused(x, w, b, 'none', null).read(), linRef(X, W, B), 1e-5, `${what} (cached)`);
    };
    check('initial');
    expect(native.linearCacheStats().entries).toBeGreaterThanOrEqual(1);
    // NativeTensor.write (Parameter.assign, loadStateDict)
    W = randn([N, K], 804, 0.3);
    w.write(W);
    check('after write');
    // adamwStep on the weight as param
    const g = randn([N, K], 805), m0 = nt(new Float32Array(N * K), [N, K]), v0 = nt(new Float32Array(N * K), [N, K]);
    native.adamwStep(w, nt(g, [N, K]), m0, v0, 0.1, 0.9, 0.999, 1e-8, 0.01, 1);
    W = w.read() as Float32Array;
    check('after adamwStep');
    // and through the multi-tensor step (the weight is one entry of several)
    const o = nt(randn([7], 810), [7]);
    native.adamwStepMulti([o, w], [nt(randn([7], 811), [7]), nt(randn([N, K], 812), [N, K])],
      [nt(new Float32Array(7), [7]), nt(new Float32Array(N * K), [N, K])], [nt(new Float32Array(7), [7]), nt(new Float32Array(N * K), [N, K])],
      0.1, 0.9, 0.999, 1e-8, 0.01, 1);
    W = w.read() as Float32Array;
    check('after adamwStepMulti');
    // gemm with the weight as C (beta = 1 adds a product in place)
    const a = randn([N, 3], 806), c = randn([3, K], 807);
    native.gemm(false, false, N, K, 3, 1, nt(a, [N, 3]), nt(c, [3, K]), 1, w);
    W = w.read() as Float32Array;
    check('after gemm into the weight');
    // indexAddRows into the weight
    native.indexAddRows(w, nt(new Int32Array([0, 7, 44]), [3]), nt(randn([3, K], 808), [3, K]));
    W = w.read() as Float32Array;
    check('after indexAddRows');
    // a reshape shares the storage (and its version)
    const flat = w.reshape([N * K]);
    flat.write(randn([N * K], 809, 0.3));
    W = w.read() as Float32Array;
    check('after a write through a reshaped view');
  });

  it('never mixes up weights: freed and re-allocated storages, other shapes, other kernels', () => {
    const X = randn([M, K], 820), B = randn([N], 821);
    const x = nt(X, [M, K]), b = nt(B, [N]);
    for (let i = 0; i < 6; i++) {
      const W = randn([N, K], 830 + i, 0.3);
      const w = nt(W, [N, K]); // often the block the previous iteration freed
      expectFused(native.linearFused(x, w, b, 'none', null).read(), linRef(X, W, B), 1e-5, `weight ${i}`);
      w.free();
    }
    // the same storage viewed with another [N, K]
    const W = randn([N, K], 840, 0.3);
    const w = nt(W, [N, K]);
    native.linearFused(x, w, b, 'none', null);
    const wt = w.reshape([K, N]);
    const Y = native.linearFused(nt(randn([M, N], 841), [M, N]), wt, null, 'none', null);
    expect(Y.shape).toEqual([M, K]);
    expectFused(native.linearFused(x, w, b, 'none', null).read(), linRef(X, W, B), 1e-5, 'after another view');
    for (const isa of ISAS) {
      native.gemmSetIsa(isa);
      expectFused(native.linearFused(x, w, b, 'none', null).read(), linRef(X, W, B), 1e-5, `kernel ${isa}`);
    }
    native.gemmSetIsa('auto');
  });

  it('emptyCache drops the packed copies', () => {
    const w = nt(randn([N, K], 850), [N, K]);
    native.linearFused(nt(randn([M, K], 851), [M, K]), w, null, 'none', null);
    expect(native.linearCacheStats().bytes).toBeGreaterThan(0);
    native.emptyCache();
    expect(native.linearCacheStats()).toEqual({ entries: 0, bytes: 0 });
  });

  it('every native function is classified as writing existing tensors in place or not', () => {
    // The cache trusts Storage::version; every in-place writer must bump it (tensor.h). A new native
    // function fails here until it is added to one list (and, if it writes in place, to the test above).
    // graphReplay rewrites the (cuda) tensors a captured graph wrote; the packed cache is cpu-only.
    const inPlace = ['adamwStep', 'adamwStepMulti', 'gemm', 'graphReplay', 'indexAddRows', 'NativeTensor.write'];
    const notInPlace = [
      'NativeTensor', 'affine', 'attentionBackward', 'backends', 'setAllowTf32', 'setDeviceChecks', 'synchronize', 'synchronizeAsync', 'toDevice',
      'graphAbort', 'graphBegin', 'graphDestroy', 'graphEnd', 'graphStats', 'attentionForward', 'attentionVarlen', 'binary', 'cast', 'concat',
      'copy', 'crossEntropyBackward', 'crossEntropyForward', 'emptyCache', 'fromArray', 'full', 'gatherRows',
      'gatherTokens', 'gemmIsa', 'gemmSetIsa', 'gumbelSigmoid', 'gumbelSigmoidBackward', 'gumbelSoftmax',
      'gumbelSoftmaxBackward', 'info', 'layernormBackward', 'layernormForward', 'linearBackward', 'linearCacheStats',
      'linearForward', 'linearFused', 'matmul', 'memory', 'patchify', 'permute', 'random', 'reduce', 'scatterTokens',
      'setNumThreads', 'slice', 'sliceBackward', 'softmaxBackward', 'softmaxForward', 'step', 'sumSquares', 'sumTo', 'topk', 'unary',
      'unaryBackward', 'unpatchify', 'allocFaults', 'setErrorFactory', 'trackBegin', 'trackEnd',
      'NativeTensor.constructor', 'NativeTensor.device', 'NativeTensor.dtype', 'NativeTensor.free',
      'NativeTensor.freed', 'NativeTensor.nbytes', 'NativeTensor.read', 'NativeTensor.reshape',
      'NativeTensor.sameStorage', 'NativeTensor.shape',
    ];
    const have = [
      ...Object.keys(native),
      ...Object.getOwnPropertyNames((native as unknown as { NativeTensor: { prototype: object } }).NativeTensor.prototype)
        .map((k) => `NativeTensor.${k}`),
    ].sort();
    expect(have).toEqual([...inPlace, ...notInPlace].sort());
  });
});
