import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { native, type NativeTensor, type UnaryOp } from '../lib/native.js';
import { RUN_SEED, absDot, dot, expectClose, expectCloseSum, expectCode, finiteDiff, nt, randint, randn, randu, rng } from './helpers.js';
import { binaryRef, broadcastShapes, broadcastTo, expectExact, size, type BinOp } from './nd_ref.js';

const threads0 = native.info().threads;
afterAll(() => native.setNumThreads(threads0));

// ---- float64 references ----

/** erfc in float64: positive-term series below 3, continued fraction above (both ~1e-11 or better). */
function erfc64(x: number): number {
  if (x < 0) return 2 - erfc64(-x);
  if (x < 3) return 1 - erfSeries(x);
  return erfcCF(x);
}
function erfSeries(x: number): number {
  // erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)): no cancellation
  let term = x;
  let sum = x;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
    if (term < 1e-18 * sum) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}
function erfcCF(x: number): number {
  let t = x;
  for (let n = 80; n >= 1; n--) t = x + n / 2 / t;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / t;
}

const SQRT1_2 = Math.SQRT1_2;
const fwd: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  abs: (x) => Math.abs(x),
  sqr: (x) => x * x,
  sqrt: (x) => Math.sqrt(x),
  exp: (x) => Math.exp(x),
  log: (x) => Math.log(x),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  tanh: (x) => Math.tanh(x),
  relu: (x) => (x > 0 ? x : 0),
  gelu: (x) => 0.5 * x * erfc64(-x * SQRT1_2),
};
/** d unary / dx at x (float64), PyTorch's conventions at the kinks. */
const deriv: Record<UnaryOp, (x: number) => number> = {
  neg: () => -1,
  abs: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  sqr: (x) => 2 * x,
  sqrt: (x) => 1 / (2 * Math.sqrt(x)),
  exp: (x) => Math.exp(x),
  log: (x) => 1 / x,
  // s(1-s) and 1-tanh^2 would cancel even in float64 once |x| > ~20: use e/(1+e)^2 forms
  sigmoid: (x) => {
    const e = Math.exp(-Math.abs(x));
    return e / (1 + e) ** 2;
  },
  tanh: (x) => {
    const e = Math.exp(-2 * Math.abs(x));
    return (4 * e) / (1 + e) ** 2;
  },
  relu: (x) => (x > 0 ? 1 : 0),
  gelu: (x) => 0.5 * erfc64(-x * SQRT1_2) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
};
const UNARY = Object.keys(fwd) as UnaryOp[];

/**
 * The size an fp32 derivative's rounding is measured against: |f'(x)|, except for GELU, whose
 * derivative Φ(x) + x·φ(x) is a sum that cancels near x = -0.75 (there its float32 value is only
 * accurate to a few roundings of |Φ| + |x·φ|).
 */
function derivScale(op: UnaryOp, x: number): number {
  if (op !== 'gelu') return Math.abs(deriv[op](x));
  return 0.5 * erfc64(-x * SQRT1_2) + (Math.abs(x) * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** Inputs in each op's domain, away from kinks by more than the FD step. */
function inputFor(op: UnaryOp, n: number, seed: number): Float32Array {
  if (op === 'sqrt' || op === 'log') return randu([n], seed, 0.3, 4);
  const x = randn([n], seed, 2);
  if (op === 'abs' || op === 'relu') for (let i = 0; i < n; i++) if (Math.abs(x[i]) < 0.05) x[i] += x[i] < 0 ? -0.05 : 0.05;
  return x;
}

/** Per-element relative check: |a - b| <= tol * |b| (+ tiny absolute floor), NaN/inf must match. */
function expectElementwise(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string, abs = 1e-37): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (!Number.isFinite(y)) {
      if (!(Object.is(x, y) || (Number.isNaN(x) && Number.isNaN(y))))
        throw new Error(`${what}[${i}] = ${x}, expected ${y} (seed ${RUN_SEED})`);
      continue;
    }
    if (!(Math.abs(x - y) <= tol * Math.abs(y) + abs))
      throw new Error(`${what}[${i}] = ${x}, expected ${y} (rel ${Math.abs(x - y) / Math.abs(y)}, seed ${RUN_SEED})`);
  }
}

function badTensorInputs(call: (t: NativeTensor) => unknown, goodShape: number[]): void {
  const freed = nt(randn(goodShape, 99), goodShape);
  freed.free();
  expectCode(() => call(freed), 'ERR_VITRIM_DISPOSED');
  expectCode(() => call({} as never), 'ERR_VITRIM_ARGUMENT');
  expectCode(() => call(null as never), 'ERR_VITRIM_ARGUMENT');
  expectCode(() => call(nt(randint(goodShape, 98, 5), goodShape)), 'ERR_VITRIM_DTYPE');
  expectCode(() => call(native.cast(nt(randn(goodShape, 97), goodShape), 'bfloat16')), 'ERR_VITRIM_DTYPE');
}

// ---- binary ----

const BIN: BinOp[] = ['add', 'sub', 'mul', 'div'];

function checkBinary(op: BinOp, as: number[], bs: number[], seed: number): void {
  const a = randn(as, seed);
  const b = randn(bs, seed + 1);
  const y = native.binary(op, nt(a, as), nt(b, bs));
  const ref = binaryRef(op, a, as, b, bs);
  expect(y.shape).toEqual(ref.shape);
  // IEEE single ops are correctly rounded and double has >= 2*24+2 bits, so rounding the float64
  // result once gives exactly the float32 result: the comparison is exact.
  expectExact(y.read(), Float32Array.from(ref.data), `${op} ${JSON.stringify(as)} ${JSON.stringify(bs)}`);
}

describe('binary', () => {
  const cases: [number[], number[]][] = [
    [[3, 17], [3, 17]],
    [[2, 5, 7], [5, 7]], // [B,N,C] + [N,C]
    [[2, 5, 7], [2, 5, 1]], // [B,N,C] * [B,N,1]
    [[2, 5, 7], [1, 5, 7]], // [B,N,C] + [1,N,C]
    [[5, 7], [2, 5, 7]], // broadcast on the left operand
    [[2, 5, 1], [2, 5, 7]],
    [[3, 1], [1, 4]], // outer product shape
    [[2, 1, 3, 1], [4, 1, 5]],
    [[], [3, 4]], // rank 0
    [[3, 4], []],
    [[], []],
    [[1], []],
    [[1, 1], [1]],
    [[197, 3], [3]],
    [[1, 197, 1], [197, 1]],
    [[4, 1, 6], [1, 3, 1]],
    [[2, 3, 4, 5], [3, 1, 5]],
  ];
  for (const op of BIN)
    it(`${op}: all broadcasting cases exactly equal the rounded float64 reference`, () => {
      cases.forEach(([as, bs], k) => checkBinary(op, as, bs, 100 + k));
    });

  it('large tensors take the threaded paths (one long run split in blocks, many rows, per-row scalars)', () => {
    checkBinary('add', [1, 100003], [1], 1); // single run, split into blocks
    checkBinary('mul', [3, 70001], [3, 1], 2); // few rows, inner split, scalar b per row
    checkBinary('sub', [64, 197, 48], [48], 3);
    checkBinary('div', [8, 197, 48], [8, 197, 1], 4);
    checkBinary('add', [130000], [130000], 5);
    checkBinary('mul', [300, 1], [1, 400], 6);
  });

  it('thread count does not change the bytes', () => {
    const as = [3, 70001];
    const a = nt(randn(as, 7), as);
    const b = nt(randn([3, 1], 8), [3, 1]);
    native.setNumThreads(1);
    const y1 = native.binary('div', a, b).read();
    native.setNumThreads(Math.max(2, threads0));
    const y2 = native.binary('div', a, b).read();
    native.setNumThreads(threads0);
    expectExact(y1, y2, 'threads');
  });

  it('zero-size operands broadcast to an empty result', () => {
    const y = native.binary('add', nt(new Float32Array(0), [0, 3]), nt(randn([1, 3], 9), [1, 3]));
    expect(y.shape).toEqual([0, 3]);
    expect(y.read().length).toBe(0);
    expectCode(() => native.binary('add', nt(new Float32Array(0), [0]), nt(randn([2], 9), [2])), 'ERR_VITRIM_SHAPE');
  });

  it('property: any broadcast-compatible pair matches the reference; incompatible pairs are ERR_VITRIM_SHAPE', () => {
    const shapeArb = fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 4 });
    const maskArb = fc.array(fc.boolean(), { minLength: 4, maxLength: 4 });
    fc.assert(
      fc.property(
        shapeArb,
        maskArb,
        maskArb,
        fc.nat(4),
        fc.nat(4),
        fc.constantFrom(...BIN),
        fc.nat(1000),
        (out, ma, mb, da, db, op, seed) => {
          const as = out.slice(Math.min(da, out.length)).map((d, i) => (ma[i] ? 1 : d));
          const bs = out.slice(Math.min(db, out.length)).map((d, i) => (mb[i] ? 1 : d));
          checkBinary(op, as, bs, seed);
        },
      ),
      { numRuns: 150, seed: RUN_SEED },
    );
    fc.assert(
      fc.property(shapeArb, fc.nat(3), fc.integer({ min: 2, max: 4 }), (shape, pos, bump) => {
        if (shape.length === 0) return;
        const k = pos % shape.length;
        const other = shape.slice();
        other[k] = shape[k] === 1 ? bump : shape[k] + bump; // neither equal nor 1 ... unless shape[k] is 1
        if (shape[k] === 1) return; // 1 broadcasts against anything
        expect(broadcastShapes(shape, other)).toBeNull();
        expectCode(() => native.binary('add', nt(randn(shape, 1), shape), nt(randn(other, 2), other)), 'ERR_VITRIM_SHAPE');
      }),
      { numRuns: 50, seed: RUN_SEED },
    );
  });

  it('division by zero follows IEEE (inf, NaN)', () => {
    const y = native.binary('div', nt([1, -1, 0], [3]), nt([0, 0, 0], [3])).read();
    expectExact(y, [Infinity, -Infinity, NaN], 'div0');
  });

  it('bad input at the binding gives typed errors and the op still works after', () => {
    const s = [2, 3];
    const good = nt(randn(s, 1), s);
    badTensorInputs((t) => native.binary('add', t, good), s);
    badTensorInputs((t) => native.binary('mul', good, t), s);
    expectCode(() => native.binary('pow' as never, good, good), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.binary(3 as never, good, good), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.binary('add', good, nt(randn([3, 2], 2), [3, 2])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.binary('add', good, nt(randn([4], 2), [4])), 'ERR_VITRIM_SHAPE');
    checkBinary('add', s, [3], 3);
  });
});

// ---- unary ----

describe('unary', () => {
  for (const op of UNARY)
    it(`${op}: forward matches float64 per element (sizes 1, 17, 197*3, 100003)`, () => {
      for (const n of [1, 17, 591, 100003]) {
        const x = inputFor(op, n, n + op.length);
        const y = native.unary(op, nt(x, [n])).read();
        const ref = Float64Array.from(x, fwd[op]);
        expectClose(y, ref, 1e-6, `${op} n=${n}`);
        expectElementwise(y, ref, 2e-6, op);
      }
    });

  it('keeps the input shape, including rank 0', () => {
    const x = randn([2, 3, 5], 3);
    expect(native.unary('tanh', nt(x, [2, 3, 5])).shape).toEqual([2, 3, 5]);
    const s = native.unary('exp', nt([0.5], []));
    expect(s.shape).toEqual([]);
    expectClose(s.read(), [Math.exp(0.5)], 1e-7, 'rank0');
  });

  it('special values follow PyTorch (domain errors NaN, saturation, no overflow in sigmoid)', () => {
    const x = [-1, 0, -0, 80, -80, 20, -20, -10, 10, 1e-30];
    const t = nt(x, [x.length]);
    expectElementwise(native.unary('sqrt', t).read(), x.map(Math.sqrt), 1e-6, 'sqrt');
    expectElementwise(native.unary('log', t).read(), x.map(Math.log), 1e-6, 'log');
    expectElementwise(native.unary('sigmoid', t).read(), Array.from(Float32Array.from(x), fwd.sigmoid), 1e-6, 'sigmoid');
    expectElementwise(native.unary('tanh', t).read(), Array.from(Float32Array.from(x), Math.tanh), 1e-6, 'tanh');
    expectElementwise(native.unary('gelu', t).read(), Array.from(Float32Array.from(x), fwd.gelu), 2e-6, 'gelu');
    const nan = native.unary('gelu', nt([Number.NaN, Infinity], [2])).read();
    expect(Number.isNaN(nan[0])).toBe(true);
    expect(nan[1]).toBe(Infinity);
    expect(native.unary('exp', nt([100], [1])).read()[0]).toBe(Infinity);
    expect(native.unary('relu', nt([0, -3], [2])).read()).toEqual(new Float32Array([0, 0]));
  });

  it('GELU is the exact erf form, not the tanh approximation', () => {
    const x = Float32Array.from([-3, -1.5, -0.7, 0.3, 1.2, 2.5]);
    const y = native.unary('gelu', nt(x, [6])).read();
    const tanhApprox = Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
    expectClose(y, Float64Array.from(x, fwd.gelu), 1e-6, 'gelu exact');
    expect(Math.abs(y[0] - tanhApprox[0])).toBeGreaterThan(1e-4); // the two forms differ here by ~3e-4
  });

  it('GELU and its derivative keep ~1e-6 relative accuracy per element over [-13, 13], tail included', () => {
    const n = 100001;
    const x = new Float32Array(n);
    const off = rng(1)() * 1e-3; // a fresh grid each run
    for (let i = 0; i < n; i++) x[i] = -13 + off + (26 * i) / n;
    const xt = nt(x, [n]);
    const y = native.unary('gelu', xt);
    const gx = native.unaryBackward('gelu', xt, y, nt(new Float32Array(n).fill(1), [n])).read();
    expectElementwise(y.read(), Array.from(x, fwd.gelu), 1e-6, 'gelu grid');
    // the derivative crosses zero near x = -0.75: judge it against the scale of its two terms
    for (let i = 0; i < n; i++) {
      const v = x[i];
      const scale = derivScale('gelu', v);
      const err = Math.abs(gx[i] - deriv.gelu(v));
      if (!(err <= 1e-6 * scale + 1e-37)) throw new Error(`gelu' at ${v}: ${gx[i]} vs ${deriv.gelu(v)} (seed ${RUN_SEED})`);
    }
  });

  it('the erfc reference agrees between its two branches and with libm values', () => {
    for (const v of [2.6, 2.9, 3.1, 3.5, 4])
      expect(Math.abs(erfSeries(v) - (1 - erfcCF(v)))).toBeLessThan(1e-13);
    expect(Math.abs(1 - erfc64(1) - 0.8427007929497149)).toBeLessThan(1e-14); // Python math.erf(1)
    expect(Math.abs(erfc64(5) / 1.5374597944280351e-12 - 1)).toBeLessThan(1e-10); // math.erfc(5)
  });

  it('bad input gives typed errors and the op still works after', () => {
    badTensorInputs((t) => native.unary('exp', t), [3]);
    expectCode(() => native.unary('softplus' as never, nt([1], [1])), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.unary(undefined as never, nt([1], [1])), 'ERR_VITRIM_ARGUMENT');
    expectClose(native.unary('exp', nt([1], [1])).read(), [Math.E], 1e-7, 'after');
  });
});

describe('unaryBackward', () => {
  for (const op of UNARY)
    it(`${op}: matches the float64 derivative and central differences of the native forward`, () => {
      for (const n of [1, 17, 197]) {
        const x = inputFor(op, n, 10 * n + op.length);
        const g = randn([n], 7 * n + 1);
        const xt = nt(x, [n]);
        const y = native.unary(op, xt);
        const gx = native.unaryBackward(op, xt, y, nt(g, [n])).read();
        const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((t, e) => t + e * e, 0));
        // ‖gx − f'·g‖ ≤ 1e-5·‖derivScale·|g|‖: for every op but GELU that is ‖f'·g‖ itself; GELU's
        // derivative cancels near x = -0.75, where n = 1 failed the plain bound (1.2e-5, seed 591538)
        const ref = Float64Array.from(x, (v, i) => deriv[op](v) * g[i]);
        const mag = Float64Array.from(x, (v, i) => derivScale(op, v) * Math.abs(g[i]));
        const aerr = norm(Array.from(gx, (v, i) => v - ref[i]));
        if (!(aerr <= 1e-5 * norm(mag))) {
          throw new Error(`${op} analytic n=${n}: error ${aerr.toExponential(3)} > 1e-5 · ${norm(mag).toExponential(3)} (relative ${(aerr / norm(ref)).toExponential(3)}, seed ${RUN_SEED})`);
        }
        const r = rng(n + 5);
        const idx = Array.from({ length: Math.min(n, 24) }, () => Math.floor(r() * n));
        const fd = finiteDiff((p) => dot(native.unary(op, nt(p, [n])).read(), g), x, 1e-2, idx);
        // Relative to max(‖fd‖, 0.1·‖g‖): where f' crosses 0 (gelu near x = -0.75) the O(h²)
        // truncation error of the difference is no longer small next to ‖fd‖ itself (n = 1 at some
        // seeds); a wrong derivative still misses by about |g|·|f'|.
        const a = idx.map((i) => gx[i]);
        const gi = idx.map((i) => g[i]);
        const err = norm(a.map((v, k) => v - fd[k]));
        const scale = Math.max(norm(fd), 0.1 * norm(gi));
        if (!(err <= 5e-3 * scale)) throw new Error(`${op} finite differences n=${n}: error ${err.toExponential(3)} > 5e-3 · ${scale.toExponential(3)} (seed ${RUN_SEED})`);
      }
    });

  it('conventions at kinks and domain edges follow PyTorch', () => {
    const x = nt([0, 0], [2]);
    const g = nt([1, -2], [2]);
    const bw = (op: UnaryOp) => native.unaryBackward(op, x, native.unary(op, x), g).read();
    expect(Array.from(bw('relu'))).toEqual([0, 0]);
    expect(Array.from(bw('abs'))).toEqual([0, 0]);
    expect(Array.from(bw('sqrt'))).toEqual([Infinity, -Infinity]);
    expect(Array.from(bw('log'))).toEqual([Infinity, -Infinity]);
    expectClose(bw('gelu'), [0.5, -1], 1e-7, 'gelu at 0');
    expectClose(bw('sigmoid'), [0.25, -0.5], 1e-7, 'sigmoid at 0');
  });

  it('sigmoid and tanh derivatives stay accurate per element where y saturates (no 1 - y cancellation)', () => {
    const r = rng(77);
    const x = Float32Array.from([-15, -9, -6, -4.5, 4.5, 6, 9, 15, 30, -30], (v) => v + r() * 0.5);
    const ones = nt(new Float32Array(x.length).fill(1), [x.length]);
    for (const op of ['sigmoid', 'tanh'] as const) {
      const xt = nt(x, [x.length]);
      const gx = native.unaryBackward(op, xt, native.unary(op, xt), ones).read();
      expectElementwise(gx, Array.from(x, deriv[op]), 1e-5, `${op}'`);
    }
  });

  it('large input (threaded) equals the per-element reference', () => {
    const n = 200003;
    const x = randn([n], 3);
    const g = randn([n], 4);
    const xt = nt(x, [n]);
    const gx = native.unaryBackward('gelu', xt, native.unary('gelu', xt), nt(g, [n])).read();
    expectClose(gx, Float64Array.from(x, (v, i) => deriv.gelu(v) * g[i]), 1e-6, 'gelu large');
  });

  it('bad input gives typed errors and the op still works after', () => {
    const s = [4];
    const a = nt(randn(s, 1), s);
    badTensorInputs((t) => native.unaryBackward('tanh', t, a, a), s);
    badTensorInputs((t) => native.unaryBackward('tanh', a, t, a), s);
    badTensorInputs((t) => native.unaryBackward('tanh', a, a, t), s);
    const other = nt(randn([5], 2), [5]);
    expectCode(() => native.unaryBackward('tanh', a, other, a), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unaryBackward('tanh', a, a, other), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unaryBackward('sin' as never, a, a, a), 'ERR_VITRIM_ARGUMENT');
    expect(native.unaryBackward('neg', a, a, a).read()).toEqual(a.read().map((v) => -v));
  });
});

// ---- affine, step ----

describe('affine', () => {
  it('alpha * x + beta matches float64 for several sizes and coefficients', () => {
    for (const [n, alpha, beta] of [
      [1, 2.5, -1],
      [17, -0.3, 0.7],
      [100003, 1e-3, 4],
      [5, 0, 3],
    ]) {
      const x = randn([n], n);
      const y = native.affine(nt(x, [n]), alpha, beta).read();
      // α·x + β cancels where x ≈ -β/α (n = 1 at some seeds): bounded by the terms' size too
      expectCloseSum(y, Float64Array.from(x, (v) => alpha * v + beta), Float64Array.from(x, (v) => Math.abs(alpha * v) + Math.abs(beta)),
        1e-6, `affine ${alpha} ${beta}`);
    }
  });
  it('bad input gives typed errors and the op still works after', () => {
    badTensorInputs((t) => native.affine(t, 1, 0), [3]);
    const x = nt(randn([3], 1), [3]);
    expectCode(() => native.affine(x, Number.NaN, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.affine(x, 1, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.affine(x, '2' as never, 0), 'ERR_VITRIM_ARGUMENT');
    expectClose(native.affine(x, 2, 1).read(), Float64Array.from(x.read(), (v) => 2 * v + 1), 1e-7, 'after');
  });
});

describe('step', () => {
  it('is 1 exactly where x > threshold (strict, compared in double)', () => {
    for (const n of [1, 17, 100003]) {
      const x = randn([n], n + 1);
      const thr = x[Math.floor(n / 2)]; // equal elements give 0 (strict)
      const y = native.step(nt(x, [n]), thr).read();
      expectExact(y, Float32Array.from(x, (v) => (v > thr ? 1 : 0)), `step n=${n}`);
    }
    // a threshold just above a float value (not representable in float32) must not round down to it
    const v = Math.fround(0.3);
    expect(Array.from(native.step(nt([v], [1]), v + 1e-12).read())).toEqual([0]);
    expect(Array.from(native.step(nt([v], [1]), v - 1e-12).read())).toEqual([1]);
    expect(Array.from(native.step(nt([-1e30, 1e30], [2]), -Infinity).read())).toEqual([1, 1]);
    expect(Array.from(native.step(nt([-1e30, 1e30], [2]), Infinity).read())).toEqual([0, 0]);
  });
  it('NaN threshold and bad tensors give typed errors; the op still works after', () => {
    badTensorInputs((t) => native.step(t, 0), [3]);
    const x = nt(randn([3], 1), [3]);
    expectCode(() => native.step(x, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.step(x, null as never), 'ERR_VITRIM_ARGUMENT');
    expect(native.step(x, 0).read()).toEqual(x.read().map((v) => (v > 0 ? 1 : 0)));
  });
});

// ---- sumTo ----

/** float64 sum of x [xs] down to target shape ts. */
function sumToRef(x: ArrayLike<number>, xs: number[], ts: number[]): Float64Array {
  const out = new Float64Array(size(ts));
  const lead = xs.length - ts.length;
  const n = size(xs);
  for (let i = 0; i < n; i++) {
    let k = 0;
    let rem = i;
    const idx: number[] = [];
    for (let d = xs.length - 1; d >= 0; d--) {
      idx[d] = rem % xs[d];
      rem = Math.floor(rem / xs[d]);
    }
    for (let j = 0; j < ts.length; j++) k = k * ts[j] + (ts[j] === 1 ? 0 : idx[lead + j]);
    out[k] += x[i];
  }
  return out;
}

function checkSumTo(xs: number[], ts: number[], seed: number): void {
  const x = randn(xs, seed);
  const y = native.sumTo(nt(x, xs), ts);
  expect(y.shape).toEqual(ts);
  expectClose(y.read(), sumToRef(x, xs, ts), 1e-6, `sumTo ${JSON.stringify(xs)} -> ${JSON.stringify(ts)}`);
  // adjoint of broadcasting: <broadcast(a), g> = <a, sumTo(g)>
  const a = randn(ts, seed + 1);
  const ba = broadcastTo(a, ts, xs);
  const lhs = dot(ba, x);
  const rhs = dot(a, y.read());
  // sumTo rounds float32 sums: the error scales with Σ|terms|, not with |lhs| (random terms cancel)
  expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-6 * (1 + absDot(ba, x)));
}

describe('sumTo', () => {
  it('sums a broadcast result back to every compatible shape (forward + adjoint identity)', () => {
    const xs = [2, 3, 4];
    for (const ts of [[3, 4], [2, 1, 4], [1, 3, 1], [4], [1], [], [2, 3, 4], [1, 1, 1], [3, 1]]) checkSumTo(xs, ts, 5);
    checkSumTo([64, 197, 48], [48], 6); // bias gradient
    checkSumTo([8, 197, 48], [8, 197, 1], 7);
    checkSumTo([3, 1, 5], [1, 5], 8);
    checkSumTo([], [], 9);
    checkSumTo([1, 1], [1], 10);
  });

  it('returns a fresh tensor when nothing is reduced', () => {
    const x = nt(randn([2, 3], 1), [2, 3]);
    const y = native.sumTo(x, [2, 3]);
    expect(y.sameStorage(x)).toBe(false);
    expectExact(y.read(), x.read(), 'copy');
  });

  it('broadcasting a 1 against a 0 dim sums to zeros', () => {
    expect(Array.from(native.sumTo(nt(new Float32Array(0), [0, 3]), [1, 3]).read())).toEqual([0, 0, 0]);
  });

  it('property: sumTo is the adjoint of binary broadcasting for random compatible shapes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 4 }),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        fc.nat(4),
        fc.nat(1000),
        (xs, mask, drop, seed) => {
          const ts = xs.slice(Math.min(drop, xs.length)).map((d, i) => (mask[i] ? 1 : d));
          checkSumTo(xs, ts, seed);
        },
      ),
      { numRuns: 120, seed: RUN_SEED },
    );
  });

  it('non-broadcastable targets and bad tensors give typed errors; the op still works after', () => {
    badTensorInputs((t) => native.sumTo(t, [3]), [2, 3]);
    const x = nt(randn([2, 3], 1), [2, 3]);
    expectCode(() => native.sumTo(x, [2]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(x, [4, 2, 3]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(x, [2, 3, 1]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(x, [-1, 3]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(x, [1.5]), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.sumTo(x, 3 as never), 'ERR_VITRIM_ARGUMENT');
    checkSumTo([2, 3], [3], 2);
  });
});
