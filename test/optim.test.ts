/**
 * Fused AdamW (native/cpu/optim.cpp) against a float64 JS transcription of torch.optim.AdamW's
 * single-tensor update (amsgrad=False):
 *   param.mul_(1 - lr*wd); exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
 *   step_size = lr / (1 - beta1**t); denom = exp_avg_sq.sqrt() / sqrt(1 - beta2**t) + eps
 *   param.addcdiv_(exp_avg, denom, value=-step_size)
 */
import { describe, expect, it } from 'vitest';
import { native, type NativeTensor } from '../lib/native.js';
import { RUN_SEED, dot, expectClose, expectCode, nt, numel, randn, rng } from './helpers.js';

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  wd: number;
}

/** One PyTorch AdamW step in float64, in place on p, m, v. */
function adamwRef(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, h: Hyper, t: number) {
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  const stepSize = h.lr / bc1;
  const bc2Sqrt = Math.sqrt(bc2);
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - h.lr * h.wd;
    m[i] += (g[i] - m[i]) * (1 - h.beta1); // lerp
    v[i] = v[i] * h.beta2 + (1 - h.beta2) * g[i] * g[i];
    const denom = Math.sqrt(v[i]) / bc2Sqrt + h.eps;
    p[i] += -stepSize * (m[i] / denom);
  }
}

const norm = (a: ArrayLike<number>) => Math.sqrt(dot(a, a));

/**
 * ‖a − ref‖ ≤ 1e-5·(‖ref‖ + scale): m = β1·m + (1−β1)·g may cancel to far below its terms (a float32
 * m then carries the terms' rounding error), and p's error is relative to the size of its updates
 * (~lr per element) as much as to p itself.
 */
function closeScaled(a: ArrayLike<number>, ref: ArrayLike<number>, scale: number, what: string) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  const err = Math.sqrt(num) / (Math.sqrt(den) + scale);
  if (!(err <= 1e-5)) throw new Error(`${what}: scaled relative error ${err.toExponential(3)} > 1e-5 (seed ${RUN_SEED})`);
}

const HYPERS: Hyper[] = [
  { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.05 },
  { lr: 0.1, beta1: 0.8, beta2: 0.95, eps: 1e-6, wd: 0.3 },
  { lr: 5e-4, beta1: 0, beta2: 0, eps: 1e-3, wd: 0 },
];

function step(p: NativeTensor, g: NativeTensor, m: NativeTensor, v: NativeTensor, h: Hyper, t: number) {
  native.adamwStep(p, g, m, v, h.lr, h.beta1, h.beta2, h.eps, h.wd, t);
}

describe('adamwStep', () => {
  for (const shape of [[1], [37], [3, 17, 5], [70_001]]) {
    HYPERS.forEach((h, hi) => {
      it(`[${shape}] lr=${h.lr} betas=(${h.beta1}, ${h.beta2}) wd=${h.wd}: 6 steps match PyTorch's AdamW in float64`, () => {
        const n = numel(shape);
        const p0 = randn(shape, n + hi);
        const p = nt(p0, shape);
        const m = native.full(shape, 0, 'float32');
        const v = native.full(shape, 0, 'float32');
        const rp = Float64Array.from(p0);
        const rm = new Float64Array(n);
        const rv = new Float64Array(n);
        for (let t = 1; t <= 6; t++) {
          const g = randn(shape, 100 * t + hi + n, 0.5 + t / 3);
          // (1) one step from the native state (float32 values), checked including the update itself
          const sp = Float64Array.from(p.read());
          const sm = Float64Array.from(m.read());
          const sv = Float64Array.from(v.read());
          const mPrev = Float64Array.from(sm);
          const before = Float64Array.from(sp);
          adamwRef(sp, g, sm, sv, h, t);
          step(p, nt(g, shape), m, v, h, t);
          const got = p.read();
          closeScaled(got, sp, h.lr * Math.sqrt(n), `param step ${t}`);
          closeScaled(m.read(), sm, norm(g.map((x) => (1 - h.beta1) * Math.abs(x))), `m step ${t}`);
          expectClose(v.read(), sv, 1e-5, `v step ${t}`);
          // the update p_new − p_old per element, against a float32 rounding-error bound: two roundings
          // of p (≤ 2^-24·|p| each), the rounding of m_new = β1·m + (1−β1)·g (absolute, ≤ 2^-24 times
          // the terms, which may cancel) carried through step_size/denom, and a few relative roundings of
          // the update. All doubled for margin; a wrong formula (e.g. bias correction) is far outside.
          const mOld = mPrev;
          const stepSize = h.lr / (1 - h.beta1 ** t);
          for (let i = 0; i < n; i++) {
            const d = got[i] - before[i] - (sp[i] - before[i]);
            const denom = Math.sqrt(sv[i]) / Math.sqrt(1 - h.beta2 ** t) + h.eps;
            const mErr = 2 ** -23 * (Math.abs(h.beta1 * mOld[i]) + Math.abs((1 - h.beta1) * g[i]));
            const bound =
              2 ** -22 * (Math.abs(before[i]) + Math.abs(sp[i])) + (stepSize * mErr) / denom + 2e-6 * Math.abs(sp[i] - before[i]);
            if (!(Math.abs(d) <= bound)) throw new Error(`update step ${t} element ${i}: error ${d} > ${bound}`);
          }
          // (2) the float64 chain from the start
          adamwRef(rp, g, rm, rv, h, t);
          closeScaled(p.read(), rp, h.lr * Math.sqrt(n), `param chain step ${t}`);
          closeScaled(m.read(), rm, norm(g.map((x) => (1 - h.beta1) * Math.abs(x))), `m chain step ${t}`);
          expectClose(v.read(), rv, 1e-5, `v chain step ${t}`);
        }
      });
    });
  }

  it('weight decay is decoupled: with zero gradient only p ← p·(1 − lr·wd) happens', () => {
    const shape = [4, 25];
    const p0 = randn(shape, 5);
    const p = nt(p0, shape);
    const m = native.full(shape, 0, 'float32');
    const v = native.full(shape, 0, 'float32');
    native.adamwStep(p, native.full(shape, 0, 'float32'), m, v, 0.01, 0.9, 0.999, 1e-8, 0.1, 1);
    expectClose(p.read(), Float64Array.from(p0, (x) => x * (1 - 0.01 * 0.1)), 1e-7, 'decayed param');
    expect(Array.from(m.read()).every((x) => x === 0)).toBe(true);
    expect(Array.from(v.read()).every((x) => x === 0)).toBe(true);
  });

  it('updates through reshaped views and is identical with 1 and 2 threads', () => {
    const n = 100_003;
    const g = nt(randn([n], 7), [n]);
    const init = randn([n], 8);
    const run = () => {
      const p = nt(init, [n]);
      const m = native.full([n], 0.01, 'float32');
      const v = native.full([n], 0.02, 'float32');
      native.adamwStep(p.reshape([1, n]), g.reshape([1, n]), m.reshape([1, n]), v.reshape([1, n]), 0.01, 0.9, 0.99, 1e-8, 0.01, 3);
      return [p, m, v].map((t) => Buffer.from((t.read() as Float32Array).buffer));
    };
    const before = native.info().threads;
    try {
      native.setNumThreads(1);
      const one = run();
      native.setNumThreads(2);
      const two = run();
      one.forEach((b, i) => expect(b.equals(two[i])).toBe(true));
      expect(one[0].equals(Buffer.from(init.buffer))).toBe(false); // the view updated the storage
    } finally {
      native.setNumThreads(before);
    }
  });

  it('a NaN gradient propagates to its own element only (PyTorch semantics)', () => {
    const p = nt(randn([6], 9), [6]);
    const g = randn([6], 10);
    g[2] = Number.NaN;
    const m = native.full([6], 0, 'float32');
    const v = native.full([6], 0, 'float32');
    native.adamwStep(p, nt(g, [6]), m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1);
    const pr = p.read();
    expect(Number.isNaN(pr[2])).toBe(true);
    expect([0, 1, 3, 4, 5].every((i) => Number.isFinite(pr[i]))).toBe(true);
  });

  it('throws typed errors on bad input, leaves the state untouched, and keeps working', () => {
    const shape = [3, 4];
    const r = rng(11);
    const p0 = randn(shape, 12);
    const p = nt(p0, shape);
    const g = nt(randn(shape, 13), shape);
    const m = nt(randn(shape, 14, 0.1), shape);
    const v = nt(Float32Array.from({ length: 12 }, () => r()), shape);
    const ok = [1e-3, 0.9, 0.999, 1e-8, 0.01, 1] as const;
    const call = (over: Partial<Record<number, unknown>>, tensors: unknown[] = [p, g, m, v]) => {
      const args = [...tensors, ...ok].map((a, i) => (i in over ? over[i] : a));
      return () => (native.adamwStep as (...a: unknown[]) => void)(...args);
    };
    // scalars: index 4 lr, 5 beta1, 6 beta2, 7 eps, 8 wd, 9 step
    expectCode(call({ 9: 0 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(call({ 9: -3 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(call({ 9: 1.5 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(call({ 4: -1e-3 }), 'ERR_VITRIM_ARGUMENT');
    for (const i of [4, 5, 6, 7, 8, 9]) {
      expectCode(call({ [i]: Number.NaN }), 'ERR_VITRIM_ARGUMENT');
      expectCode(call({ [i]: Infinity }), 'ERR_VITRIM_ARGUMENT');
      expectCode(call({ [i]: '1' }), 'ERR_VITRIM_ARGUMENT');
    }
    for (const b of [1, -0.1, 1.1]) {
      expectCode(call({ 5: b }), 'ERR_VITRIM_ARGUMENT');
      expectCode(call({ 6: b }), 'ERR_VITRIM_ARGUMENT');
    }
    expectCode(call({ 7: -1e-8 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(call({ 8: -0.01 }), 'ERR_VITRIM_ARGUMENT');
    // tensors
    const wrong = nt(randn([4, 3], 15), [4, 3]);
    for (let i = 0; i < 4; i++) {
      const ts: unknown[] = [p, g, m, v];
      ts[i] = wrong;
      expectCode(call({}, ts), 'ERR_VITRIM_SHAPE');
      ts[i] = native.cast(p, 'int32');
      expectCode(call({}, ts), 'ERR_VITRIM_DTYPE');
      ts[i] = native.cast(p, 'bfloat16');
      expectCode(call({}, ts), 'ERR_VITRIM_DTYPE');
      ts[i] = null;
      expectCode(call({}, ts), 'ERR_VITRIM_ARGUMENT');
      const d = native.copy(p);
      d.free();
      ts[i] = d;
      expectCode(call({}, ts), 'ERR_VITRIM_DISPOSED');
    }
    // aliasing: the in-place update would read what it wrote
    expectCode(call({}, [p, g, p, v]), 'ERR_VITRIM_ARGUMENT');
    expectCode(call({}, [p, g, m, m.reshape([12])]), 'ERR_VITRIM_SHAPE');
    expectCode(call({}, [p, g, m, m]), 'ERR_VITRIM_ARGUMENT');
    expectCode(call({}, [p, p, m, v]), 'ERR_VITRIM_ARGUMENT');
    // nothing was touched
    expect(Array.from(p.read())).toEqual(Array.from(p0));
    // and a normal step still works and is right
    const sp = Float64Array.from(p0);
    const sm = Float64Array.from(m.read());
    const sv = Float64Array.from(v.read());
    adamwRef(sp, g.read(), sm, sv, { lr: ok[0], beta1: ok[1], beta2: ok[2], eps: ok[3], wd: ok[4] }, 1);
    call({})();
    expectClose(p.read(), sp, 1e-5, 'after errors');
  });
});

describe('adamwStepMulti', () => {
  const H = [1e-3, 0.9, 0.999, 1e-8, 0.05] as const;
  const fresh = (shapes: number[][], seed: number) => shapes.map((s, i) => ({
    p: randn(s, seed + 10 * i), m: randn(s, seed + 10 * i + 1, 0.01),
    v: Float32Array.from(randn(s, seed + 10 * i + 2), (x) => 1e-4 + Math.abs(x) * 1e-3),
  }));

  it('equals adamwStep on every entry, bit for bit, over several steps', () => {
    const shapes = [[1], [3], [17], [384, 64], [1000], [2, 3, 5]];
    const init = fresh(shapes, 500);
    const a = init.map((e, i) => ({ p: nt(e.p, shapes[i]), m: nt(e.m, shapes[i]), v: nt(e.v, shapes[i]) }));
    const b = init.map((e, i) => ({ p: nt(e.p, shapes[i]), m: nt(e.m, shapes[i]), v: nt(e.v, shapes[i]) }));
    for (let t = 1; t <= 3; t++) {
      const gs = shapes.map((s, i) => nt(randn(s, 600 + 10 * t + i, 0.1), s));
      native.adamwStepMulti(a.map((e) => e.p), gs, a.map((e) => e.m), a.map((e) => e.v), ...H, t);
      b.forEach((e, i) => native.adamwStep(e.p, gs[i], e.m, e.v, ...H, t));
      a.forEach((e, i) => {
        expect(e.p.read(), `param ${i} step ${t}`).toEqual(b[i].p.read());
        expect(e.m.read(), `m ${i} step ${t}`).toEqual(b[i].m.read());
        expect(e.v.read(), `v ${i} step ${t}`).toEqual(b[i].v.read());
      });
    }
    expect(a[3].p.read()).not.toEqual(init[3].p); // it did move
    native.adamwStepMulti([], [], [], [], ...H, 1); // an empty list is a no-op
  });

  it('rejects bad lists with typed errors naming the entry, writing nothing', () => {
    const s = [4];
    const mk = (seed: number) => nt(randn(s, seed), s);
    const [p0, p1, g0, g1, m0, m1, v0, v1] = [1, 2, 3, 4, 5, 6, 7, 8].map((k) => mk(700 + k));
    const before = p0.read().slice();
    expectCode(() => native.adamwStepMulti([p0, p1], [g0], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_ARGUMENT');
    expect(expectCode(() => native.adamwStepMulti([p0, p1], [g0, nt(randn([5], 9), [5])], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_SHAPE')).toMatch(/entry 1/);
    expectCode(() => native.adamwStepMulti([p0, p1], [g0, native.cast(g1, 'bfloat16')], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_DTYPE');
    // aliasing across entries: the same parameter twice, a moment shared, a grad that is a parameter
    expect(expectCode(() => native.adamwStepMulti([p0, p0], [g0, g1], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_ARGUMENT')).toMatch(/shares storage/);
    expectCode(() => native.adamwStepMulti([p0, p1], [g0, g1], [m0, m1], [v0, m0], ...H, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.adamwStepMulti([p0, p1], [g0, p0], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.adamwStepMulti([p0, p1], [g0, g1], [m0, m1], [v0, v1], -1, 0.9, 0.999, 1e-8, 0, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.adamwStepMulti([], [], [], [], 1e-3, 1, 0.999, 1e-8, 0, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.adamwStepMulti(p0 as never, [g0], [m0], [v0], ...H, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.adamwStepMulti([p0, 3 as never], [g0, g1], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_ARGUMENT');
    const d = mk(720);
    d.free();
    expectCode(() => native.adamwStepMulti([p0, d], [g0, g1], [m0, m1], [v0, v1], ...H, 1), 'ERR_VITRIM_DISPOSED');
    expect(p0.read()).toEqual(before);
  });
});
