import { describe, expect, it } from 'vitest';
import { autocast, backward, keep, memory, noGrad, ops, Parameter, parameter, tensor, tidy, Tensor } from '../lib/index.js';
import { ArgumentError, DisposedError } from '../lib/errors.js';
import { dot, expectClose, finiteDiff, randn } from './helpers.js';

const live = () => memory()[0].liveTensors;

describe('autograd tape', () => {
  it('linear ∘ matmul: gradients match the float64 analytic reference and finite differences', () => {
    const [B, K, N, M] = [3, 5, 4, 2];
    const xd = randn([B, K], 11);
    const wd = randn([N, K], 12);
    const bd = randn([N], 13);
    const vd = randn([N, M], 14);
    const gd = randn([B, M], 15);
    const x = tensor(xd, [B, K], { requiresGrad: true });
    const w = Parameter.from(tensor(wd, [N, K]));
    const b = Parameter.from(tensor(bd, [N]));
    const v = Parameter.from(tensor(vd, [N, M]));
    const y = ops.matmul(ops.linear(x, w, b), v); // [B, M]
    y.backward(tensor(gd, [B, M]));
    // reference: y = (x wᵀ + b) v ; dL/dh = g vᵀ ; dx = dh w ; dw = dhᵀ x ; db = Σ dh ; dv = hᵀ g
    const h = new Float64Array(B * N);
    for (let i = 0; i < B; i++) for (let n = 0; n < N; n++) {
      let s = bd[n];
      for (let k = 0; k < K; k++) s += xd[i * K + k] * wd[n * K + k];
      h[i * N + n] = s;
    }
    const dh = new Float64Array(B * N);
    for (let i = 0; i < B; i++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let m = 0; m < M; m++) s += gd[i * M + m] * vd[n * M + m];
      dh[i * N + n] = s;
    }
    const dx = new Float64Array(B * K), dw = new Float64Array(N * K), db = new Float64Array(N), dv = new Float64Array(N * M);
    for (let i = 0; i < B; i++) for (let n = 0; n < N; n++) {
      db[n] += dh[i * N + n];
      for (let k = 0; k < K; k++) {
        dx[i * K + k] += dh[i * N + n] * wd[n * K + k];
        dw[n * K + k] += dh[i * N + n] * xd[i * K + k];
      }
      for (let m = 0; m < M; m++) dv[n * M + m] += h[i * N + n] * gd[i * M + m];
    }
    expectClose(x.grad!.dataSync(), dx, 1e-5, 'dx');
    expectClose(w.grad!.dataSync(), dw, 1e-5, 'dw');
    expectClose(b.grad!.dataSync(), db, 1e-5, 'db');
    expectClose(v.grad!.dataSync(), dv, 1e-5, 'dv');
    const f = (xp: Float32Array) => noGrad(() => tidy(() => dot(ops.matmul(ops.linear(tensor(xp, [B, K]), w, b), v).dataSync(), gd)));
    expectClose(x.grad!.dataSync(), finiteDiff(f, xd, 1e-2), 5e-3, 'dx vs finite differences');
  });

  it('accumulates into .grad across backward calls and through a tensor used twice', () => {
    const wd = randn([2, 3], 21);
    const w = Parameter.from(tensor(wd, [2, 3]));
    const x = tensor(randn([4, 3], 22), [4, 3]);
    const g = tensor(randn([4, 2], 23), [4, 2]);
    const run = () => {
      const y = ops.linear(x, w);
      return ops.matmul(ops.linear(y, Parameter.from(tensor(new Float32Array([1, 0, 0, 1]), [2, 2]))), tensor(new Float32Array([1, 0, 0, 1]), [2, 2]));
    };
    run().backward(g);
    const first = Float32Array.from(w.grad!.dataSync());
    run().backward(g);
    expectClose(w.grad!.dataSync(), first.map((v) => 2 * v), 1e-6, 'accumulated grad');
  });

  it('works through intermediates disposed by tidy, and frees the graph after backward', () => {
    const w = Parameter.from(tensor(randn([8, 8], 31), [8, 8]));
    const x = tensor(randn([4, 8], 32), [4, 8]);
    const before = live();
    const y = tidy(() => ops.matmul(ops.linear(ops.linear(x, w), w), tensor(randn([8, 1], 33), [8, 1])));
    // only y survives the scope (plus the graph's saved handles)
    const g = tensor(new Float32Array(4).fill(1), [4, 1]);
    y.backward(g);
    expect(w.grad).not.toBeNull();
    y.dispose();
    g.dispose();
    w.zeroGrad();
    expect(live()).toBe(before);
    expect(() => y.backward()).toThrow(DisposedError);
  });

  it('noGrad records nothing; backward without a graph is a clear error', () => {
    const w = Parameter.from(tensor(randn([2, 2], 41), [2, 2]));
    const y = noGrad(() => ops.linear(tensor(randn([1, 2], 42), [1, 2]), w));
    expect(y.gradFn).toBeNull();
    expect(() => y.backward()).toThrow(ArgumentError);
    const z = ops.linear(tensor(randn([1, 2], 43), [1, 2]), w);
    expect(() => z.backward()).toThrow(/non-scalar/);
    expect(() => backward(z, tensor(new Float32Array(3), [3]))).toThrow(/differs/);
  });
});

describe('tensors and scopes', () => {
  it('tidy disposes what it does not return; keep() exempts', () => {
    const before = live();
    let kept: Tensor | undefined;
    const r = tidy(() => {
      const a = tensor([1, 2, 3]);
      kept = keep(tensor([4]));
      const b = tensor([5, 6]);
      void a;
      return { b, list: [tensor([7])] };
    });
    expect(r.b.isDisposed).toBe(false);
    expect(kept!.isDisposed).toBe(false);
    expect(live() - before).toBe(3);
    r.b.dispose();
    r.list[0].dispose();
    kept!.dispose();
    expect(live()).toBe(before);
  });

  it('tidy disposes its tensors when fn throws (keep() exempts) and the error goes on unchanged', () => {
    const before = live();
    let a: Tensor | undefined, k: Tensor | undefined, inner: Tensor | undefined;
    const err = new RangeError('boom');
    expect(() => tidy(() => {
      a = tensor([1, 2, 3]);
      k = keep(tensor([4]));
      inner = tidy(() => tensor([5])); // returned by the inner scope: now the outer one's
      throw err;
    })).toThrow(err);
    expect([a!.isDisposed, inner!.isDisposed, k!.isDisposed]).toEqual([true, true, false]);
    expect(live() - before).toBe(1);
    // the scope stack is intact: a tensor made now belongs to no scope, and tidy works again
    const outside = tensor([6]);
    const sum = tidy(() => ops.add(tensor([1]), tensor([2])));
    expect(sum.dataSync()[0]).toBe(3);
    expect(outside.isDisposed).toBe(false);
    for (const t of [sum, outside, k!]) t.dispose();
    expect(live()).toBe(before);
  });

  // The graph recorded inside a scope that threw is freed with it (what its nodes saved for
  // backward: a step's activations), except what a keep()'d tensor reaches and a graph recorded
  // before the scope; both still run backward.
  it('a scope that throws frees the graph recorded inside it, not a kept or an earlier one', () => {
    const w = parameter(randn([6, 5], 61), [6, 5]);
    const x = tensor(randn([4, 5], 62), [4, 5]);
    const earlier = ops.linear(x, w); // recorded before the scope
    const before = live();
    let k: Tensor | undefined;
    expect(() => tidy(() => {
      const h = tidy(() => ops.gelu(ops.linear(earlier, tensor(randn([3, 6], 63), [3, 6])))); // inner scope's graph
      k = keep(ops.sum(ops.linear(x, w)));
      void ops.mul(h, h);
      throw new Error('boom');
    })).toThrow('boom');
    // live() counts storages: left is k alone (its graph saved x and w, which were there before);
    // without the release, what the inner graph saved (the second weight, the linear's output under
    // gelu, h under mul) would stay until the GC
    expect(live() - before).toBe(1);
    k!.backward();
    const g1 = Array.from(w.grad!.dataSync());
    w.grad!.dispose();
    w.grad = null;
    ops.sum(earlier).backward();
    const g2 = Array.from(w.grad!.dataSync());
    // d sum(x wᵀ)/dw = column sums of x, per output row: the same for both roots
    const colSums = Array.from({ length: 5 }, (_, j) => [0, 1, 2, 3].reduce((a, i) => a + x.dataSync()[i * 5 + j], 0));
    expectClose(g1, Array.from({ length: 30 }, (_, i) => colSums[i % 5]), 1e-6);
    expectClose(g2, g1, 0);
  });

  it('new Parameter(tensor) is a typed error pointing at Parameter.from', () => {
    const t = tensor([1, 2]);
    expect(() => new Parameter(t as never)).toThrow(/Parameter\.from/);
    expect(() => new Parameter(t as never)).toThrow(ArgumentError);
    expect(Parameter.from(t).requiresGrad).toBe(true);
  });

  // An async fn is refused, and its promise's later rejection does not end the process (vitest
  // fails a run on an unhandled rejection, so the wait below would show it).
  it('tidy, autocast and noGrad refuse an async fn, and its later rejection is not left unhandled', async () => {
    const later = async () => {
      await null;
      throw new Error('rejected after the call returned');
    };
    expect(() => tidy(later as never)).toThrow(/tidy\(fn\): fn must be synchronous/);
    expect(() => autocast('bfloat16', later as never)).toThrow(/fn must be synchronous/);
    expect(() => noGrad(later as never)).toThrow(/noGrad\(fn\): fn must be synchronous/);
    await new Promise((r) => setTimeout(r, 20));
  });

  it('nested tidy moves returned tensors to the parent scope', () => {
    const before = live();
    const outer = tidy(() => {
      const inner = tidy(() => tensor([1]));
      tensor([2]);
      return inner;
    });
    expect(outer.isDisposed).toBe(false);
    expect(live() - before).toBe(1);
    outer.dispose();
  });

  it('dispose is idempotent and use-after-dispose is a typed error', () => {
    const t = tensor([1, 2]);
    t.dispose();
    t.dispose();
    expect(() => t.dataSync()).toThrow(DisposedError);
    expect(() => ops.linear(t, t)).toThrow(DisposedError);
    expect(() => ops.linear(5 as never, t)).toThrow(ArgumentError);
    expect(() => tensor([1.5], [1], { dtype: 'int32' })).toThrow(ArgumentError);
    expect(() => tensor([1], [1], { device: 'cuda' })).toThrow(/not available/);
    {
      using u = tensor([3]);
      expect(u.item()).toBe(3);
    }
  });
});
