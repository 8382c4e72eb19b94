/**
 * Gradient checks through the public ops and the tape: for each op, loss = Σ y·w (w random) is
 * differentiated by backward() and by central finite differences of the forward (float64 sums over
 * float32 ops), on fresh random inputs. Kernel accuracy is tested per family in the native tests;
 * this checks the wiring (broadcast reductions, transposes, saved handles, optional inputs).
 */
import { describe, expect, it } from 'vitest';
import { noGrad, ops, tensor, tidy, type Tensor } from '../lib/index.js';
import { ArgumentError, DisposedError } from '../lib/errors.js';
import { dot, expectClose, finiteDiff, randn, randu } from './helpers.js';

interface Input { data: Float32Array; shape: number[] }
const inp = (shape: number[], seed: number, lo?: number, hi?: number): Input =>
  ({ data: lo === undefined ? randn(shape, seed) : randu(shape, seed, lo, hi), shape });

function gradcheck(name: string, f: (...xs: Tensor[]) => Tensor, inputs: Input[], tol = 1e-2, h = 1e-2) {
  const wSeed = 999;
  const ts = inputs.map((i) => tensor(i.data, i.shape, { requiresGrad: true }));
  const y = f(...ts);
  const w = randn([...y.shape], wSeed);
  const loss = ops.sum(ops.mul(y, tensor(w, [...y.shape])));
  loss.backward();
  inputs.forEach((input, k) => {
    const analytic = ts[k].grad!.dataSync();
    const numeric = finiteDiff((xp) => noGrad(() => tidy(() => {
      const args = inputs.map((o, j) => tensor(j === k ? xp : o.data, o.shape));
      return dot(f(...args).dataSync(), w);
    })), input.data, h);
    expectClose(analytic, numeric, tol, `${name}: d/dinput${k}`);
  });
}

describe('gradients through the tape match finite differences', () => {
  it('elementwise with broadcasting', () => {
    gradcheck('add', ops.add, [inp([2, 3, 4], 1), inp([3, 4], 2)]);
    gradcheck('sub', ops.sub, [inp([2, 1, 4], 3), inp([2, 3, 1], 4)]);
    gradcheck('mul', ops.mul, [inp([2, 3, 4], 5), inp([2, 3, 1], 6)]);
    gradcheck('div', ops.div, [inp([3, 4], 7), inp([4], 8, 0.5, 2)]);
    gradcheck('scalar ops', (x) => ops.div(ops.mul(ops.sub(ops.add(x, 2), 1), 3), 4), [inp([5], 9)]);
  });
  it('unary', () => {
    for (const f of [ops.neg, ops.square, ops.exp, ops.sigmoid, ops.tanh, ops.gelu]) gradcheck(f.name, f, [inp([3, 5], 10)]);
    gradcheck('sqrt', ops.sqrt, [inp([7], 11, 0.5, 3)]);
    gradcheck('log', ops.log, [inp([7], 12, 0.5, 3)]);
    gradcheck('abs', ops.abs, [inp([7], 13, 0.2, 1)]);
    gradcheck('relu', ops.relu, [inp([7], 14, 0.2, 1)]);
    gradcheck('affine', (x) => ops.affine(x, -1.5, 0.25), [inp([4], 15)]);
    gradcheck('sumTo', (x) => ops.sumTo(x, [1, 4]), [inp([3, 4], 16)]);
  });
  it('reductions and layout', () => {
    gradcheck('sum axes', (x) => ops.sum(x, [0, 2]), [inp([2, 3, 4], 20)]);
    gradcheck('mean keepDims', (x) => ops.mean(x, -1, true), [inp([2, 3, 4], 21)]);
    gradcheck('mean all', (x) => ops.mean(x), [inp([2, 3], 22)]);
    gradcheck('reshape', (x) => ops.reshape(x, [4, -1]), [inp([2, 3, 4], 23)]);
    gradcheck('permute', (x) => ops.permute(x, [2, 0, 1]), [inp([2, 3, 4], 24)]);
    gradcheck('transpose', (x) => ops.transpose(x), [inp([2, 3, 4], 25)]);
    gradcheck('slice', (x) => ops.slice(x, 1, 1, 3), [inp([2, 4, 3], 26)]);
    gradcheck('concat', (a, b) => ops.concat([a, b, a], 1), [inp([2, 1, 3], 27), inp([2, 2, 3], 28)]);
  });
  it('matmul (transposes, batches, shared b) and linear', () => {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      gradcheck(`matmul ${ta} ${tb}`, (a, b) => ops.matmul(a, b, { transA: ta, transB: tb }),
        [inp(ta ? [2, 4, 3] : [2, 3, 4], 30), inp(tb ? [2, 5, 4] : [2, 4, 5], 31)]);
      gradcheck(`matmul shared ${ta} ${tb}`, (a, b) => ops.matmul(a, b, { transA: ta, transB: tb }),
        [inp(ta ? [2, 4, 3] : [2, 3, 4], 32), inp(tb ? [5, 4] : [4, 5], 33)]);
    }
    gradcheck('linear', (x, w, b) => ops.linear(x, w, b), [inp([2, 3, 4], 34), inp([5, 4], 35), inp([5], 36)]);
    gradcheck('linear no bias', (x, w) => ops.linear(x, w), [inp([3, 4], 37), inp([2, 4], 38)]);
  });
  it('layerNorm, softmax, logSoftmax', () => {
    gradcheck('layerNorm', (x, w, b) => ops.layerNorm(x, w, b, 1e-5), [inp([3, 6], 40), inp([6], 41), inp([6], 42)], 2e-2);
    gradcheck('layerNorm no affine', (x) => ops.layerNorm(x, null, null), [inp([2, 5], 43)], 2e-2);
    gradcheck('softmax', ops.softmax, [inp([3, 5], 44)]);
    gradcheck('logSoftmax', ops.logSoftmax, [inp([3, 5], 45)]);
  });
  it('attention with keep mask and head gate', () => {
    gradcheck('attention', (q) => ops.attention(q, { numHeads: 2 }), [inp([2, 5, 12], 50)]);
    gradcheck('attention keep+gate', (q, k, g) => ops.attention(q, { numHeads: 2, keep: k, headGate: g }),
      [inp([2, 5, 12], 51), inp([2, 5], 52, 0.2, 0.9), inp([2, 2], 53, 0.5, 1.5)]);
  });
  it('tokens, patches, loss, topk', () => {
    const idx = tensor(new Int32Array([2, 0, 2, 1, 3, 3]), [2, 3]);
    gradcheck('gatherTokens', (x) => ops.gatherTokens(x, idx), [inp([2, 4, 3], 60)]);
    gradcheck('scatterTokens', (g) => ops.scatterTokens(g, idx, 4), [inp([2, 3, 3], 61)]);
    gradcheck('patchify', (x) => ops.patchify(x, 2), [inp([2, 3, 4, 4], 62)]);
    gradcheck('patchEmbed', (x, w, b) => ops.patchEmbed(x, w, b, 2), [inp([1, 2, 4, 4], 63), inp([3, 2, 2, 2], 64), inp([3], 65)]);
    const labels = tensor(new Int32Array([1, 0, 3]), [3]);
    gradcheck('crossEntropy', (l) => ops.crossEntropy(l, labels, { labelSmoothing: 0.1 }), [inp([3, 4], 66)]);
    // well-separated values (random order, gaps ≫ h) so a finite-difference step never reorders them
    const sep = randn([3, 5], 67).map((v, i) => (i % 5) * 0.5 + 0.1 * Math.tanh(v));
    const order = randn([3, 5], 68);
    for (let r = 0; r < 3; r++) {
      const row = Array.from(sep.subarray(r * 5, r * 5 + 5)).map((v, i) => [order[r * 5 + i], v]).sort((a, b) => a[0] - b[0]);
      row.forEach(([, v], i) => (sep[r * 5 + i] = v));
    }
    gradcheck('topk values', (x) => ops.topk(x, 2).values, [{ data: sep, shape: [3, 5] }]);
  });
  it('Gumbel samplers pass the straight-through gradient of their soft values', () => {
    const z = inp([4, 6], 70);
    const noise = tensor(randn([4, 6], 71), [4, 6]);
    // y_hard - sg(y_soft) + y_soft: the gradient is that of y_soft = σ((z + noise)/τ)
    gradcheck('gumbelSigmoid soft path', (x) => {
      const y = ops.gumbelSigmoid(x, { tau: 2, noise, hard: false });
      return y;
    }, [z]);
    const x = tensor(z.data, z.shape, { requiresGrad: true });
    const yh = ops.gumbelSigmoid(x, { tau: 2, noise, hard: true });
    const w = tensor(randn([4, 6], 72), [4, 6]);
    ops.sum(ops.mul(yh, w)).backward();
    const xs = tensor(z.data, z.shape, { requiresGrad: true });
    ops.sum(ops.mul(ops.gumbelSigmoid(xs, { tau: 2, noise, hard: false }), w)).backward();
    expectClose(x.grad!.dataSync(), xs.grad!.dataSync(), 1e-6, 'hard ST gradient = soft gradient');
    gradcheck('gumbelSoftmax soft path', (v) => ops.gumbelSoftmax(v, { tau: 0.7, noise, hard: false }), [z]);
  });
});

describe('public ops reject bad input with typed errors', () => {
  const t = () => tensor(randn([2, 3], 1), [2, 3]);
  const unaryOps: [string, (x: Tensor) => unknown][] = [
    ['neg', ops.neg], ['gelu', ops.gelu], ['softmax', ops.softmax], ['sum', (x) => ops.sum(x)], ['reshape', (x) => ops.reshape(x, [6])],
    ['permute', (x) => ops.permute(x, [1, 0])], ['slice', (x) => ops.slice(x, 0, 0, 1)], ['layerNorm', (x) => ops.layerNorm(x)],
    ['topk', (x) => ops.topk(x, 1)], ['patchify', (x) => ops.patchify(x, 1)], ['gumbelSigmoid', (x) => ops.gumbelSigmoid(x)],
    ['attention', (x) => ops.attention(x, { numHeads: 1 })], ['linear', (x) => ops.linear(x, t())], ['matmul', (x) => ops.matmul(x, t())],
  ];
  for (const [name, f] of unaryOps) {
    it(`${name}: non-tensor and disposed arguments`, () => {
      expect(() => f(5 as never)).toThrow(ArgumentError);
      expect(() => f({ shape: [2] } as never)).toThrow(ArgumentError);
      const d = t();
      d.dispose();
      expect(() => f(d)).toThrow(DisposedError);
      expect(() => ops.add(t(), t())).not.toThrow(); // still working
    });
  }
  it('shape, dtype and range errors surface as typed errors', () => {
    expect(() => ops.add(t(), tensor(randn([4], 1), [4]))).toThrow(/broadcast/i);
    expect(() => ops.linear(t(), tensor(randn([2, 2], 1), [2, 2]))).toThrow(/ShapeError|shape|match/);
    expect(() => ops.gatherTokens(tensor(randn([1, 2, 2], 1), [1, 2, 2]), tensor(new Int32Array([5]), [1, 1]))).toThrow(/out of range|idx/);
    expect(() => ops.crossEntropy(t(), tensor(new Int32Array([0, 7]), [2]))).toThrow(/label/);
    expect(() => ops.crossEntropy(t(), tensor(new Float32Array([0, 1]), [2]))).toThrow(/int32/);
    expect(() => ops.topk(t(), 9)).toThrow();
    expect(() => ops.gumbelSigmoid(t(), { tau: 0 })).toThrow(ArgumentError);
    expect(() => ops.gumbelSigmoid(t(), { seed: -1 })).toThrow(ArgumentError);
    expect(() => ops.attention(tensor(randn([1, 2, 9], 1), [1, 2, 9]), { numHeads: 2 })).toThrow();
    expect(() => ops.layerNorm(t(), null, null, -1)).toThrow(ArgumentError);
    expect(() => ops.slice(t(), 0, 0, 5)).toThrow();
    expect(() => ops.random([2], 'cauchy' as never)).toThrow(ArgumentError);
  });
});
