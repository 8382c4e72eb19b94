/**
 * LayerNorm over the last axis (native layernormForward / layernormBackward) against a float64
 * reference (statistics, normalisation, affine; backward by the explicit Jacobian of each row),
 * finite differences of the native forward, eps variations, constant rows, the bfloat16 output option
 * (native and through ops.layerNorm's gradient) and bad input.
 */
import { describe, expect, it } from 'vitest';
import { ArgumentError } from '../lib/errors.js';
import { native, type NativeTensor } from '../lib/native.js';
import * as ops from '../lib/ops/index.js';
import { tensor } from '../lib/tensor.js';
import { dot, expectClose, expectCode, finiteDiff, nt, numel, randn, randu } from './helpers.js';

interface LnRef {
  y: Float64Array;
  mean: Float64Array;
  rstd: Float64Array;
}

function refForward(x: ArrayLike<number>, L: number, w: ArrayLike<number> | null, b: ArrayLike<number> | null, eps: number): LnRef {
  const R = x.length / L;
  const y = new Float64Array(x.length);
  const mean = new Float64Array(R);
  const rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let j = 0; j < L; j++) s += x[r * L + j];
    const mu = s / L;
    let v = 0;
    for (let j = 0; j < L; j++) v += (x[r * L + j] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / L + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < L; j++) {
      const xh = (x[r * L + j] - mu) * rs;
      y[r * L + j] = xh * (w ? w[j] : 1) + (b ? b[j] : 0);
    }
  }
  return { y, mean, rstd };
}

/**
 * Backward by the explicit per-row Jacobian dxhat_j/dx_k = rstd([j==k] - 1/L - xhat_j xhat_k / L)
 * (an O(L^2) formulation, independent of the kernel's closed form).
 */
function refBackward(x: ArrayLike<number>, gy: ArrayLike<number>, L: number, w: ArrayLike<number> | null, eps: number) {
  const { mean, rstd } = refForward(x, L, null, null, eps);
  const R = x.length / L;
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(L);
  const gb = new Float64Array(L);
  for (let r = 0; r < R; r++) {
    const xh = (j: number) => (x[r * L + j] - mean[r]) * rstd[r];
    for (let k = 0; k < L; k++) {
      let s = 0;
      for (let j = 0; j < L; j++) {
        const J = rstd[r] * ((j === k ? 1 : 0) - 1 / L - (xh(j) * xh(k)) / L);
        s += gy[r * L + j] * (w ? w[j] : 1) * J;
      }
      gx[r * L + k] = s;
    }
    for (let j = 0; j < L; j++) {
      gw[j] += gy[r * L + j] * xh(j);
      gb[j] += gy[r * L + j];
    }
  }
  return { gx, gw, gb };
}

function check(shape: number[], affine: 'none' | 'weight' | 'both', eps: number, seed: number, offset = 0): void {
  const L = shape[shape.length - 1];
  const x = randn(shape, seed, 2);
  if (offset) for (let i = 0; i < x.length; i++) x[i] += offset;
  const w = affine !== 'none' ? randn([L], seed + 1) : null;
  const b = affine === 'both' ? randn([L], seed + 2) : null;
  const gy = randn(shape, seed + 3);
  const what = `${JSON.stringify(shape)} affine=${affine} eps=${eps} offset=${offset}`;
  const [y, mean, rstd] = native.layernormForward(nt(x, shape), w && nt(w, [L]), b && nt(b, [L]), eps);
  const R = numel(shape) / L;
  expect(y.shape).toEqual(shape);
  expect(mean.shape).toEqual([R]);
  expect(rstd.shape).toEqual([R]);
  const ref = refForward(x, L, w, b, eps);
  expectClose(y.read(), ref.y, 1e-5, `${what} y`);
  expectClose(mean.read(), ref.mean, 1e-6, `${what} mean`);
  expectClose(rstd.read(), ref.rstd, 1e-6, `${what} rstd`);
  const [gx, gw, gb] = native.layernormBackward(nt(gy, shape), nt(x, shape), w && nt(w, [L]), mean, rstd);
  const rb = refBackward(x, gy, L, w, eps);
  expectClose(gx.read(), rb.gx, 1e-5, `${what} gx`);
  if (w) {
    expectClose(gw!.read(), rb.gw, 1e-5, `${what} gw`);
    expectClose(gb!.read(), rb.gb, 1e-5, `${what} gb`);
  } else {
    expect(gw).toBeNull();
    expect(gb).toBeNull();
  }
}

describe('layernorm vs float64 reference', () => {
  const shapes = [[1, 1], [3, 17], [2, 5, 384], [197, 3], [100, 64], [2, 3, 1000], [1, 768]];
  let seed = 10;
  for (const shape of shapes) {
    it(`${JSON.stringify(shape)}: no affine, weight only, weight and bias`, () => {
      for (const affine of ['none', 'weight', 'both'] as const) check(shape, affine, 1e-6, (seed += 5));
    });
  }

  it('eps variations (timm 1e-6, DynamicViT predictor 1e-5, large 0.5, zero)', () => {
    for (const eps of [1e-6, 1e-5, 0.5, 0]) check([7, 33], 'both', eps, (seed += 5));
  });

  it('rows with a large common offset (two-pass statistics)', () => {
    check([9, 96], 'both', 1e-6, (seed += 5), 50);
  });

  it('rows of constant values: y = bias, gx = rstd (g - mean g), no NaN', () => {
    const L = 24;
    const x = new Float32Array(3 * L);
    for (let r = 0; r < 3; r++) x.fill([0.75, -3, 1e3][r], r * L, (r + 1) * L);
    const w = randn([L], 31);
    const b = randn([L], 32);
    const gy = randn([3, L], 33);
    const eps = 1e-5;
    const [y, mean, rstd] = native.layernormForward(nt(x, [3, L]), nt(w, [L]), nt(b, [L]), eps);
    expect(Array.from(mean.read())).toEqual([0.75, -3, 1e3]);
    expectClose(rstd.read(), [1, 1, 1].map(() => 1 / Math.sqrt(eps)), 1e-6, 'rstd');
    expectClose(y.read(), [...b, ...b, ...b], 1e-6, 'y');
    const [gx, gw, gb] = native.layernormBackward(nt(gy, [3, L]), nt(x, [3, L]), nt(w, [L]), mean, rstd);
    const rb = refBackward(x, gy, L, w, eps);
    expectClose(gx.read(), rb.gx, 1e-5, 'gx');
    expect(Array.from(gw!.read()).every((v) => v === 0)).toBe(true);
    expectClose(gb!.read(), rb.gb, 1e-6, 'gb');
  });

  it('is deterministic and independent of the thread count', () => {
    const shape = [300, 40];
    const x = nt(randn(shape, 40), shape);
    const w = nt(randn([40], 41), [40]);
    const gy = nt(randn(shape, 42), shape);
    const runOnce = () => {
      const [y, m, r] = native.layernormForward(x, w, null, 1e-6);
      const [gx, gw, gb] = native.layernormBackward(gy, x, w, m, r);
      return [y, gx, gw!, gb!].map((t) => Array.from(t.read()));
    };
    const threads = native.info().threads;
    const a = runOnce();
    native.setNumThreads(1);
    const b = runOnce();
    native.setNumThreads(threads);
    expect(b).toEqual(a);
  });
});

describe('layernorm output dtype', () => {
  it('outDtype bfloat16 is the float32 result rounded once (native), and ops.layerNorm carries its gradient', () => {
    const shape = [5, 7, 24];
    const x = nt(randn(shape, 70, 2), shape);
    const w = nt(randu([24], 71, 0.5, 1.5), [24]);
    const b = nt(randn([24], 72), [24]);
    const [y, mean, rstd] = native.layernormForward(x, w, b, 1e-6);
    const [yb, mb, rb] = native.layernormForward(x, w, b, 1e-6, 'bfloat16');
    expect(yb.dtype).toBe('bfloat16');
    expect(Array.from(yb.read())).toEqual(Array.from(native.cast(y, 'bfloat16').read()));
    expect(Array.from(mb.read())).toEqual(Array.from(mean.read()));
    expect(Array.from(rb.read())).toEqual(Array.from(rstd.read()));
    expect(native.layernormForward(x, w, b, 1e-6, 'float32')[0].read()).toEqual(y.read());
    expect(native.layernormForward(x, w, b, 1e-6, null)[0].read()).toEqual(y.read());
    expectCode(() => native.layernormForward(x, w, b, 1e-6, 'int32'), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(x, w, b, 1e-6, 'half' as never), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(x, w, b, 1e-6, 3 as never), 'ERR_VITRIM_ARGUMENT');

    // Through ops: {dtype: 'bfloat16'} vs the float32 norm followed by a differentiable cast. Same
    // forward bits, and the same gradients (the backward casts the bf16 gradient up, as the cast's
    // backward does).
    const r = tensor(randn(shape, 73), shape);
    const grads = (fused: boolean) => {
      const [xt, wt, bt] = [x, w, b].map((h) => tensor(h.read() as Float32Array, h.shape, { requiresGrad: true }));
      const yt = fused ? ops.layerNorm(xt, wt, bt, 1e-6, { dtype: 'bfloat16' }) : ops.cast(ops.layerNorm(xt, wt, bt, 1e-6), 'bfloat16');
      expect(yt.dtype).toBe('bfloat16');
      ops.sum(ops.mul(ops.cast(yt, 'float32'), r)).backward();
      return [yt, xt.grad!, wt.grad!, bt.grad!].map((t) => Array.from(t.dataSync()));
    };
    expect(grads(true)).toEqual(grads(false));
    expect(() => ops.layerNorm(tensor(randn(shape, 74), shape), null, null, 1e-6, { dtype: 'int32' as never }))
      .toThrow(ArgumentError);
  });
});

describe('layernorm vs finite differences of the native forward', () => {
  it('gx, gw and gb', () => {
    const shape = [4, 9];
    const L = 9;
    const x = randn(shape, 50);
    const w = randu([L], 51, 0.5, 1.5);
    const b = randn([L], 52);
    const v = randn(shape, 53);
    const eps = 1e-5;
    const loss = (xx: Float32Array, ww: Float32Array, bb: Float32Array) =>
      dot(native.layernormForward(nt(xx, shape), nt(ww, [L]), nt(bb, [L]), eps)[0].read(), v);
    const [, mean, rstd] = native.layernormForward(nt(x, shape), nt(w, [L]), nt(b, [L]), eps);
    const [gx, gw, gb] = native.layernormBackward(nt(v, shape), nt(x, shape), nt(w, [L]), mean, rstd);
    expectClose(gx.read(), finiteDiff((xx) => loss(xx, w, b), x, 3e-3), 5e-3, 'gx vs FD');
    expectClose(gw!.read(), finiteDiff((ww) => loss(x, ww, b), w, 3e-3), 5e-3, 'gw vs FD');
    expectClose(gb!.read(), finiteDiff((bb) => loss(x, w, bb), b, 3e-3), 5e-3, 'gb vs FD');
  });
});

describe('layernorm bad input', () => {
  it('rejects bad arguments with typed errors and keeps working', () => {
    const x = nt(randn([4, 6], 60), [4, 6]);
    const w = nt(randn([6], 61), [6]);
    const b = nt(randn([6], 62), [6]);
    expectCode(() => native.layernormForward(nt([1], []), null, null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(native.full([4, 0], 0, 'float32'), null, null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(x, nt(randn([5], 1), [5]), null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(x, nt(randn([1, 6], 1), [1, 6]), null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(x, w, nt(randn([7], 1), [7]), 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(x, null, b, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(x, w, b, -1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(x, w, b, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(x, w, b, Infinity), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(native.full([4, 6], 1, 'int32'), null, null, 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(x, native.full([6], 1, 'int32'), null, 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(x, w, native.full([6], 1, 'int32'), 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(x, 5 as unknown as NativeTensor, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(x, w, b, '1e-6' as unknown as number), 'ERR_VITRIM_ARGUMENT');
    const [, mean, rstd] = native.layernormForward(x, w, b, 1e-6);
    const gy = nt(randn([4, 6], 63), [4, 6]);
    expectCode(() => native.layernormBackward(nt(randn([4, 5], 1), [4, 5]), x, w, mean, rstd), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormBackward(gy, x, w, nt(randn([3], 1), [3]), rstd), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormBackward(gy, x, w, mean, nt(randn([4, 1], 1), [4, 1])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormBackward(gy, x, nt(randn([4], 1), [4]), mean, rstd), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormBackward(gy, x, w, native.full([4], 1, 'int32'), rstd), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormBackward(native.full([4, 6], 1, 'int32'), x, w, mean, rstd), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormBackward(gy, x, w, mean, undefined as unknown as NativeTensor), 'ERR_VITRIM_ARGUMENT');
    const freed = nt(randn([4, 6], 64), [4, 6]);
    freed.free();
    expectCode(() => native.layernormForward(freed, null, null, 1e-6), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.layernormBackward(freed, x, w, mean, rstd), 'ERR_VITRIM_DISPOSED');
    const freedW = nt(randn([6], 65), [6]);
    freedW.free();
    expectCode(() => native.layernormForward(x, freedW, null, 1e-6), 'ERR_VITRIM_DISPOSED');
    // empty batch is fine; a normal call still works
    const [ye] = native.layernormForward(native.full([0, 6], 0, 'float32'), w, b, 1e-6);
    expect(ye.shape).toEqual([0, 6]);
    const [gx, gw, gb] = native.layernormBackward(gy, x, w, mean, rstd);
    expect(gx.shape).toEqual([4, 6]);
    expect(gw!.shape).toEqual([6]);
    expect(gb!.shape).toEqual([6]);
  });
});
