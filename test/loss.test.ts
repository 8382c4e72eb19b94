/**
 * Fused softmax cross-entropy (native/cpu/loss.cpp) against:
 *  - a float64 reference written the way PyTorch computes F.cross_entropy with label_smoothing
 *    (aten cross_entropy_loss_label_smoothing: (1 - s)·nll(log_softmax) + (s/K)·Σ_j −log_softmax_j,
 *    mean over rows) — a different formula from the kernel's, which works relative to the row max;
 *  - PyTorch itself, through the timm fixture (its float64 loss and grad.head.bias = Σ_rows dL/dlogits);
 *  - central finite differences of the native forward.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { dot, expectClose, expectCode, finiteDiff, nt, randint, randn, rng } from './helpers.js';

/** Float64 reference in PyTorch's formulation: returns per-row lse, the mean loss and dL/dlogits. */
function ceRef(x: ArrayLike<number>, y: ArrayLike<number>, R: number, K: number, s: number, gloss = 1) {
  const lse = new Float64Array(R);
  const grad = new Float64Array(R * K);
  let total = 0;
  for (let r = 0; r < R; r++) {
    let m = -Infinity;
    for (let j = 0; j < K; j++) m = Math.max(m, x[r * K + j]);
    let se = 0;
    for (let j = 0; j < K; j++) se += Math.exp(x[r * K + j] - m);
    lse[r] = m + Math.log(se);
    // log_softmax_j = x_j - lse, formed from (x_j - m) - log(se) to stay exact for large logits
    let smooth = 0;
    for (let j = 0; j < K; j++) smooth -= x[r * K + j] - m - Math.log(se);
    const nll = -(x[r * K + y[r]] - m - Math.log(se));
    total += (1 - s) * nll + (s / K) * smooth;
    for (let j = 0; j < K; j++) {
      const p = Math.exp(x[r * K + j] - m) / se;
      const t = (j === y[r] ? 1 - s : 0) + s / K;
      grad[r * K + j] = (gloss * (p - t)) / R;
    }
  }
  return { loss: total / R, lse, grad };
}

/** Minimal safetensors reader (F32 / I64) for the PyTorch fixture. */
function readSafetensors(path: string): Record<string, { shape: number[]; data: Float64Array }> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out: Record<string, { shape: number[]; data: Float64Array }> = {};
  for (const [name, h] of Object.entries(header) as [string, { dtype: string; shape: number[]; data_offsets: [number, number] }][]) {
    if (name === '__metadata__') continue;
    const [b, e] = h.data_offsets;
    const bytes = buf.subarray(base + b, base + e);
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    if (h.dtype === 'F32') out[name] = { shape: h.shape, data: Float64Array.from(new Float32Array(ab)) };
    else if (h.dtype === 'I64') out[name] = { shape: h.shape, data: Float64Array.from(new BigInt64Array(ab), Number) };
  }
  return out;
}

const CASES: [number, number, number][] = [
  // [R, K, smoothing]
  [1, 1, 0],
  [1, 7, 0.1],
  [3, 10, 0],
  [17, 3, 0.37],
  [64, 100, 0.1],
  [197, 1000, 0.05],
];

describe('cross-entropy forward', () => {
  it.each(CASES)('R=%i K=%i s=%f matches the float64 PyTorch-form reference', (R, K, s) => {
    const x = randn([R, K], R * 31 + K, 3);
    const y = randint([R], R + K * 7, K);
    const [loss, lse] = native.crossEntropyForward(nt(x, [R, K]), nt(y, [R]), s);
    expect(loss.shape).toEqual([]);
    expect(lse.shape).toEqual([R]);
    const ref = ceRef(x, y, R, K, s);
    expectClose(loss.read(), [ref.loss], 1e-5, 'loss');
    expectClose(lse.read(), ref.lse, 1e-5, 'lse');
  });

  it('is stable for large logits (no overflow, no cancellation)', () => {
    const R = 9;
    const K = 33;
    const r = rng(5);
    for (const [offset, spread] of [
      [5e3, 30],
      [-2e4, 5],
      [0, 1e30],
      [3e37, 1e36],
    ]) {
      const x = new Float32Array(R * K).map(() => offset + spread * (2 * r() - 1));
      const y = randint([R], 6, K);
      for (const s of [0, 0.2]) {
        const [loss, lse] = native.crossEntropyForward(nt(x, [R, K]), nt(y, [R]), s);
        const ref = ceRef(x, y, R, K, s);
        const l = loss.read()[0];
        expect(Number.isFinite(l)).toBe(true);
        expectClose([l], [ref.loss], 1e-5, `loss offset ${offset} spread ${spread}`);
        expectClose(lse.read(), ref.lse, 1e-5, `lse offset ${offset}`);
        // The backward recomputes the row statistics, so it stays accurate where exp(x - lse) with a
        // float32 lse would be off by |lse|·2^-24 relative (6e-4 at 5e3..2e4).
        const g = native.crossEntropyBackward(nt(x, [R, K]), nt(y, [R]), s, lse, 1);
        expectClose(g.read(), ref.grad, 1e-5, `grad offset ${offset}`);
      }
    }
  });

  it('does not depend on the thread count', () => {
    const R = 301;
    const K = 57;
    const x = nt(randn([R, K], 8, 2), [R, K]);
    const y = nt(randint([R], 9, K), [R]);
    const threads = native.info().threads;
    try {
      native.setNumThreads(1);
      const [l1, s1] = native.crossEntropyForward(x, y, 0.1);
      const g1 = native.crossEntropyBackward(x, y, 0.1, s1, 0.7);
      native.setNumThreads(2);
      const [l2, s2] = native.crossEntropyForward(x, y, 0.1);
      const g2 = native.crossEntropyBackward(x, y, 0.1, s2, 0.7);
      expect(l2.read()).toEqual(l1.read());
      expect(s2.read()).toEqual(s1.read());
      expect(g2.read()).toEqual(g1.read());
    } finally {
      native.setNumThreads(threads);
    }
  });
});

describe('cross-entropy backward', () => {
  it.each(CASES)('R=%i K=%i s=%f matches the analytic float64 gradient', (R, K, s) => {
    const x = randn([R, K], R * 13 + K, 3);
    const y = randint([R], R + K * 3, K);
    const gloss = 0.5 + rng(R + K)();
    const [, lse] = native.crossEntropyForward(nt(x, [R, K]), nt(y, [R]), s);
    const g = native.crossEntropyBackward(nt(x, [R, K]), nt(y, [R]), s, lse, gloss);
    expect(g.shape).toEqual([R, K]);
    expectClose(g.read(), ceRef(x, y, R, K, s, gloss).grad, 1e-5, 'grad');
    // the upstream gradient as a one-element tensor (what the autograd passes): the same bits
    const gt = native.crossEntropyBackward(nt(x, [R, K]), nt(y, [R]), s, lse, nt(Float32Array.of(gloss), []));
    expect(gt.read()).toEqual(native.crossEntropyBackward(nt(x, [R, K]), nt(y, [R]), s, lse, Math.fround(gloss)).read());
  });

  it.each([
    [3, 5, 0],
    [4, 9, 0.3],
    [17, 3, 0.1],
  ])('R=%i K=%i s=%f matches central finite differences of the native forward', (R, K, s) => {
    const x = randn([R, K], 40 + R, 2);
    const y = randint([R], 41 + K, K);
    const gloss = 1.3;
    const yt = nt(y, [R]);
    const f = (xx: Float32Array) => gloss * native.crossEntropyForward(nt(xx, [R, K]), yt, s)[0].read()[0];
    const fd = finiteDiff(f, x, 1e-2);
    const [, lse] = native.crossEntropyForward(nt(x, [R, K]), yt, s);
    const g = native.crossEntropyBackward(nt(x, [R, K]), yt, s, lse, gloss).read();
    expectClose(g, fd, 5e-3, 'grad vs finite differences');
    // and the chain rule through a weighted sum of rows is consistent: d/dgloss is linear
    const g2 = native.crossEntropyBackward(nt(x, [R, K]), yt, s, lse, 2 * gloss).read();
    expectClose(g2, Array.from(g, (v) => 2 * v), 1e-6, 'linear in gloss');
    expect(dot(g, g)).toBeGreaterThan(0);
  });
});

describe('cross-entropy vs PyTorch (timm fixture)', () => {
  it('reproduces the fixture loss and grad.head.bias from its logits and targets', () => {
    const fx = readSafetensors(join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vit-tiny-ref.safetensors'));
    const logits = fx.logits;
    const [R, K] = logits.shape;
    const labels = Int32Array.from(fx.target.data);
    const xt = nt(Float32Array.from(logits.data), [R, K]);
    const [loss, lse] = native.crossEntropyForward(xt, nt(labels, [R]), 0);
    // PyTorch computed in float64 from float64 logits; ours runs from their float32 rounding.
    expectClose(loss.read(), fx.loss.data, 1e-5, 'loss vs PyTorch');
    const g = native.crossEntropyBackward(xt, nt(labels, [R]), 0, lse, 1).read();
    const gb = new Float64Array(K);
    for (let r = 0; r < R; r++) for (let k = 0; k < K; k++) gb[k] += g[r * K + k];
    expectClose(gb, fx['grad.head.bias'].data, 1e-5, 'sum of dL/dlogits vs grad.head.bias');
  });
});

describe('cross-entropy bad input', () => {
  it('throws typed errors and keeps working', () => {
    const R = 4;
    const K = 6;
    const x = nt(randn([R, K], 70), [R, K]);
    const y = nt(Int32Array.from([0, 5, 2, 3]), [R]);
    const [, lse] = native.crossEntropyForward(x, y, 0.1);

    // labels: every one checked, the message names the bad one
    const msg = expectCode(() => native.crossEntropyForward(x, nt(Int32Array.from([0, 1, 6, 2]), [R]), 0), 'ERR_VITRIM_INDEX');
    expect(msg).toContain('labels[2] = 6');
    expect(expectCode(() => native.crossEntropyForward(x, nt(Int32Array.from([0, 1, 2, -1]), [R]), 0), 'ERR_VITRIM_INDEX')).toContain('labels[3] = -1');
    expect(expectCode(() => native.crossEntropyBackward(x, nt(Int32Array.from([9, 1, 2, 3]), [R]), 0, lse, 1), 'ERR_VITRIM_INDEX')).toContain('labels[0] = 9');
    expectCode(() => native.crossEntropyForward(x, nt(new Float32Array([0, 1, 2, 3]), [R]), 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyForward(native.cast(x, 'int32'), y, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyForward(native.cast(x, 'bfloat16'), y, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyForward(x.reshape([R * K]), y, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(x.reshape([2, 2, K]), y, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(x, nt(Int32Array.from([0, 1, 2]), [3]), 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(x, nt(Int32Array.from([0, 1, 2, 3]), [2, 2]), 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(nt(new Float32Array(0), [0, K]), nt(new Int32Array(0), [0]), 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(nt(new Float32Array(0), [R, 0]), y, 0), 'ERR_VITRIM_SHAPE');
    for (const s of [1, -0.1, 1.5, Infinity, Number.NaN]) expectCode(() => native.crossEntropyForward(x, y, s), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyForward(x, y, '0.1' as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyForward({} as never, y, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyForward(x, [0, 1, 2, 3] as never, 0), 'ERR_VITRIM_ARGUMENT');

    // backward
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, nt(new Float32Array(3), [3]), 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, native.cast(lse, 'int32'), 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, Infinity), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyBackward(x, y, 1, lse, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, null as never, 1), 'ERR_VITRIM_ARGUMENT');
    // gloss as a tensor: one float32 element on the logits' device
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, nt(Float32Array.of(1, 2), [2])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, native.cast(nt(Float32Array.of(1), [1]), 'bfloat16')), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, nt(Int32Array.of(1), [1])), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, '1' as never), 'ERR_VITRIM_ARGUMENT');
    // an lse from other logits is caught, not turned into a wrong gradient
    const wrongLse = nt(Float32Array.from(lse.read() as Float32Array, (v, i) => (i === 1 ? v + 0.5 : v)), [R]);
    expect(expectCode(() => native.crossEntropyBackward(x, y, 0.1, wrongLse, 1), 'ERR_VITRIM_ARGUMENT')).toContain('lse[1]');

    // disposed inputs
    const d = nt(randn([R, K], 71), [R, K]);
    d.free();
    expectCode(() => native.crossEntropyForward(d, y, 0), 'ERR_VITRIM_DISPOSED');
    const dy = nt(Int32Array.from([0, 1, 2, 3]), [R]);
    dy.free();
    expectCode(() => native.crossEntropyBackward(x, dy, 0, lse, 1), 'ERR_VITRIM_DISPOSED');
    const dl = native.copy(lse);
    dl.free();
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, dl, 1), 'ERR_VITRIM_DISPOSED');

    // still works, and still correct
    const [loss2] = native.crossEntropyForward(x, y, 0.1);
    const ref = ceRef(x.read(), y.read(), R, K, 0.1);
    expectClose(loss2.read(), [ref.loss], 1e-5, 'after errors');
  });

  it('propagates non-finite logits as NaN instead of failing', () => {
    const x = nt([1, Number.NaN, 2, 0.5, 1, 2], [2, 3]);
    const y = nt(Int32Array.from([0, 2]), [2]);
    const [loss, lse] = native.crossEntropyForward(x, y, 0);
    expect(Number.isNaN(loss.read()[0])).toBe(true);
    expect(Number.isNaN(lse.read()[0])).toBe(true);
    expect(Number.isFinite(lse.read()[1])).toBe(true);
    const g = native.crossEntropyBackward(x, y, 0, lse, 1).read();
    expect(Number.isNaN(g[0])).toBe(true);
    expect(Array.from(g.slice(3)).every(Number.isFinite)).toBe(true);
  });
});
