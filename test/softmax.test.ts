/**
 * Softmax / log-softmax over the last axis (native softmaxForward / softmaxBackward) against float64
 * references, finite differences of the native forward, extreme logits and bad input.
 */
import { describe, expect, it } from 'vitest';
import { native, type NativeTensor } from '../lib/native.js';
import { dot, expectClose, expectCode, finiteDiff, nt, numel, randn } from './helpers.js';

function refForward(x: ArrayLike<number>, L: number, log: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / L; r++) {
    let m = -Infinity;
    for (let j = 0; j < L; j++) m = Math.max(m, x[r * L + j]);
    let s = 0;
    for (let j = 0; j < L; j++) s += Math.exp(x[r * L + j] - m);
    for (let j = 0; j < L; j++) {
      const v = x[r * L + j] - m;
      y[r * L + j] = log ? v - Math.log(s) : Math.exp(v) / s;
    }
  }
  return y;
}

/**
 * float64 Jacobian-vector product via the explicit Jacobian rows, from the op's own inputs: the
 * float32 output y it is given (probabilities p = y, or p = exp(y) for log-softmax) and gy. Not from
 * x: the float32 rounding of a saturated p (1 - p_max ~ 1e-4) moves the exact gradient by
 * u / (1 - p_max) relative, an error of the input that no backward can undo (2e-4 at seed 744651178).
 */
function refBackward(y: ArrayLike<number>, gy: ArrayLike<number>, L: number, log: boolean): Float64Array {
  const p = Float64Array.from(y, (v) => (log ? Math.exp(v) : v));
  const gx = new Float64Array(y.length);
  for (let r = 0; r < y.length / L; r++) {
    for (let k = 0; k < L; k++) {
      // dy_j/dx_k: softmax p_j([j==k] - p_k); log-softmax [j==k] - p_k
      let s = 0;
      for (let j = 0; j < L; j++) {
        const delta = j === k ? 1 : 0;
        const J = log ? delta - p[r * L + k] : p[r * L + j] * (delta - p[r * L + k]);
        s += gy[r * L + j] * J;
      }
      gx[r * L + k] = s;
    }
  }
  return gx;
}

const shapes: number[][] = [[1], [7], [3, 17], [2, 3, 197], [5, 1], [4, 64], [2, 1000]];

describe('softmax vs float64 reference', () => {
  for (const log of [false, true]) {
    for (const [si, shape] of shapes.entries()) {
      it(`${log ? 'log-' : ''}softmax ${JSON.stringify(shape)}: forward and backward`, () => {
        const L = shape[shape.length - 1];
        const x = randn(shape, 10 + si, 3);
        const gy = randn(shape, 20 + si);
        const y = native.softmaxForward(nt(x, shape), log);
        expect(y.shape).toEqual(shape);
        expectClose(y.read(), refForward(x, L, log), 1e-5, 'forward');
        const gx = native.softmaxBackward(y, nt(gy, shape), log);
        expect(gx.shape).toEqual(shape);
        const ref = refBackward(y.read(), gy, L, log);
        // For L = 1 the gradient is exactly 0 (softmax is constant 1, log-softmax constant 0).
        if (L === 1) expect(Array.from(gx.read()).every((v) => Math.abs(v) < 1e-6)).toBe(true);
        else expectClose(gx.read(), ref, 1e-5, 'backward');
      });
    }
  }

  it('rows of probabilities sum to one and log-softmax is log of softmax', () => {
    const x = randn([6, 33], 40, 4);
    const p = native.softmaxForward(nt(x, [6, 33]), false).read();
    const lp = native.softmaxForward(nt(x, [6, 33]), true).read();
    for (let r = 0; r < 6; r++) {
      let s = 0;
      for (let j = 0; j < 33; j++) s += p[r * 33 + j];
      expect(Math.abs(s - 1)).toBeLessThan(1e-6);
    }
    expectClose(Array.from(lp, Math.exp), p, 1e-6, 'exp(logsoftmax) vs softmax');
  });

  it('computes exp accurately over the whole float range of a row', () => {
    // One row spanning [-86, 0] after the max shift: every entry checked to a few ulp, which
    // exercises the polynomial exp (including its range reduction) entry by entry.
    const L = 861;
    const x = new Float32Array(L);
    for (let j = 0; j < L; j++) x[j] = 5 - j * 0.1 + 0.013 * Math.sin(j);
    const y = native.softmaxForward(nt(x, [1, L]), false).read();
    const ref = refForward(x, L, false);
    const m = Math.max(...x);
    for (let j = 0; j < L; j++) {
      if (ref[j] < 1e-37) continue; // below FLT_MIN the kernel flushes to 0 by design
      // fp32 rounding of the argument x - m alone costs up to |x - m| 2^-24 relative; the rest
      // (exp polynomial, normalisation) must stay within a few ulp.
      const tol = 3e-7 + Math.abs(x[j] - m) * 2 ** -24;
      expect(Math.abs(y[j] - ref[j]) / ref[j]).toBeLessThan(tol);
    }
  });

  it('handles logits of +-1e4 and -inf entries without overflow', () => {
    const shape = [3, 50];
    const x = randn(shape, 50, 1e4);
    x[7] = -Infinity;
    x[60] = -Infinity;
    for (const log of [false, true]) {
      const y = native.softmaxForward(nt(x, shape), log).read();
      const ref = refForward(x, 50, log);
      for (let i = 0; i < y.length; i++) {
        if (ref[i] === -Infinity) expect(y[i]).toBe(-Infinity);
        else expect(Number.isFinite(y[i])).toBe(true);
      }
      if (!log) {
        expect(y[7]).toBe(0);
        expectClose(y, ref, 1e-5, 'large logits');
      } else {
        const fin = (a: ArrayLike<number>) => Array.from(a).map((v) => (Number.isFinite(v) ? v : 0));
        expectClose(fin(y), fin(ref), 1e-5, 'large logits (log)');
      }
      const gy = randn(shape, 51);
      const gx = native.softmaxBackward(native.softmaxForward(nt(x, shape), log), nt(gy, shape), log).read();
      if (!log) expect(Array.from(gx).every(Number.isFinite)).toBe(true);
    }
  });

  it('propagates NaN in a row without touching other rows', () => {
    const x = randn([2, 9], 60);
    x[3] = Number.NaN;
    const y = native.softmaxForward(nt(x, [2, 9]), false).read();
    expect(Array.from(y.slice(0, 9)).every(Number.isNaN)).toBe(true);
    expectClose(y.slice(9), refForward(x.slice(9), 9, false), 1e-5, 'clean row');
  });
});

describe('softmax vs finite differences of the native forward', () => {
  for (const log of [false, true]) {
    it(`${log ? 'log-' : ''}softmax gradient`, () => {
      const shape = [3, 11];
      const x = randn(shape, 70);
      const w = randn(shape, 71);
      const loss = (v: Float32Array) => dot(native.softmaxForward(nt(v, shape), log).read(), w);
      const y = native.softmaxForward(nt(x, shape), log);
      const gx = native.softmaxBackward(y, nt(w, shape), log).read();
      expectClose(gx, finiteDiff(loss, x, 3e-3), 5e-3, 'gx vs FD');
    });
  }
});

describe('softmax bad input', () => {
  it('rejects bad arguments with typed errors and keeps working', () => {
    const x = nt(randn([2, 5], 80), [2, 5]);
    expectCode(() => native.softmaxForward(nt([1], []), false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.softmaxForward(native.full([2, 5], 1, 'int32'), false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.softmaxForward(x, 1 as unknown as boolean), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.softmaxForward({} as NativeTensor, false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.softmaxBackward(x, nt(randn([2, 6], 1), [2, 6]), false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.softmaxBackward(x, nt(randn([10], 1), [10]), false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.softmaxBackward(nt([1], []), nt([1], []), true), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.softmaxBackward(x, native.full([2, 5], 1, 'int32'), false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.softmaxBackward(x, null as unknown as NativeTensor, false), 'ERR_VITRIM_ARGUMENT');
    const freed = nt(randn([2, 5], 81), [2, 5]);
    freed.free();
    expectCode(() => native.softmaxForward(freed, false), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.softmaxBackward(x, freed, true), 'ERR_VITRIM_DISPOSED');
    // empty tensors are fine
    expect(native.softmaxForward(native.full([0, 4], 0, 'float32'), false).shape).toEqual([0, 4]);
    expect(native.softmaxForward(native.full([3, 0], 0, 'float32'), true).shape).toEqual([3, 0]);
    const y = native.softmaxForward(x, false);
    expect(numel(y.shape)).toBe(10);
    expect(Array.from(y.read()).every((v) => v > 0 && v < 1)).toBe(true);
  });
});
