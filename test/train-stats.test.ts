// The training figures the Trainer keeps on the device (lib/train/device-stats.ts): running sums,
// the correct count and global-norm gradient clipping, each against a float64 reference on fresh
// random inputs; then `fit` (device sums, read for the display) against `trainStep` (figures read
// every step) on twin models.
import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, data, Parameter, policies, tensor, Trainer, vit } from '../lib/index.js';
import { batches } from '../lib/data/dataset.js';
import { native } from '../lib/native.js';
import { clipCoef, correctCount, RunningSums } from '../lib/train/device-stats.js';
import { expectClose, nt, randint, randn, rng, RUN_SEED } from './helpers.js';

describe('device-side training statistics', () => {
  it('RunningSums adds weighted scalars per key and reads them in one go', () => {
    const s = new RunningSums('cpu');
    const r = rng(1);
    // float32 sums, each term w·v rounded then added with one rounding: the same arithmetic exactly
    const want = { a: Number.NaN, b: Number.NaN };
    const acc = (s: number, t: number) => (Number.isNaN(s) ? t : Math.fround(s + t));
    for (let i = 0; i < 20; i++) {
      const v = Math.fround(r() * 4 - 2);
      const w = 1 + Math.floor(r() * 64);
      const h = nt(Float32Array.of(v), i % 2 ? [] : [1]);
      s.add('a', h, w);
      want.a = acc(want.a, Math.fround(v * w));
      h.free();
      if (i % 3 === 0) {
        const hb = native.cast(nt(Float32Array.of(v), [1]), 'bfloat16'); // cast to float32 on the way in
        s.add('b', hb);
        want.b = acc(want.b, (native.cast(hb, 'float32').read() as Float32Array)[0]);
        hb.free();
      }
    }
    const got = s.read();
    expect(Object.keys(got).sort()).toEqual(['a', 'b']);
    expect([got.a, got.b]).toEqual([want.a, want.b]);
    expect(s.read()).toEqual(got); // reading does not consume
    s.dispose();
    expect(new RunningSums('cpu').read()).toEqual({});
  });

  it('correctCount counts the rows whose argmax is the label', () => {
    for (const [B, C] of [[1, 3], [9, 5], [64, 10]] as const) {
      const x = randn([B, C], 10 + B);
      const y = randint([B], 11 + B, C);
      // make about half the rows right on purpose, so the count is neither 0 nor B
      for (let i = 0; i < B; i += 2) {
        let best = 0;
        for (let j = 1; j < C; j++) if (x[i * C + j] > x[i * C + best]) best = j;
        y[i] = best;
      }
      let want = 0;
      for (let i = 0; i < B; i++) {
        let best = 0;
        for (let j = 1; j < C; j++) if (x[i * C + j] > x[i * C + best]) best = j;
        if (best === y[i]) want++;
      }
      const c = correctCount(nt(x, [B, C]), nt(y, [B]));
      expect(c.shape).toEqual([1]);
      expect((c.read() as Float32Array)[0]).toBe(want);
      c.free();
    }
  });

  it('clipCoef is torch clip_grad_norm_\'s min(1, max/(norm+1e-6)), exactly 1 below the bound', () => {
    const shapes = [[3], [2, 3, 4], [17, 5], [1], [70000]];
    const gs = shapes.map((s, i) => randn(s, 30 + i, 0.5 + i));
    let sq = 0;
    for (const g of gs) for (const v of g) sq += v * v;
    const norm = Math.sqrt(sq);
    for (const maxNorm of [norm / 7, norm * 0.999, norm * 3]) {
      const hs = gs.map((g, i) => nt(g, shapes[i]));
      const { coef, norm: n } = clipCoef(hs, maxNorm);
      expectClose(n.read(), [norm], 1e-6, 'norm');
      const want = Math.min(1, maxNorm / (Math.fround(norm) + 1e-6));
      if (want === 1) expect(coef.read()[0], 'exactly 1 below the bound').toBe(1);
      else expectClose(coef.read(), [want], 1e-6, `coef at max ${maxNorm}`);
      for (const h of [...hs, n, coef]) h.free();
    }
    expect(native.sumSquares([]).read()[0]).toBe(0);
  });

  it('AdamW.step(gradScale) equals the step on gradients multiplied by the scale first (the same bits)', () => {
    const shapes = [[5], [4, 7]];
    const make = () => shapes.map((s, i) => {
      const p = Parameter.from(tensor(randn(s, 40 + i), s));
      p.grad = tensor(randn(s, 50 + i, 3), s);
      return p;
    });
    const a = make();
    const b = make();
    const s = Math.fround(0.37);
    for (const p of b) p.grad = tensor(Float32Array.from(p.grad!.dataSync() as Float32Array, (g) => Math.fround(g * s)), [...p.shape]);
    new AdamW(a, { lr: 0.01 }).step(tensor(Float32Array.of(s), [1]));
    new AdamW(b, { lr: 0.01 }).step();
    a.forEach((p, i) => expect(p.dataSync()).toEqual(b[i].dataSync()));
    expect(() => new AdamW(a).step(0.5 as never)).toThrow(/gradScale/);
    // the public helper: torch's clip_grad_norm_ factor for a custom loop
    const c = clipGradNorm(a, 0.01)!;
    let sq = 0;
    for (const p of a) for (const g of p.grad!.dataSync() as Float32Array) sq += g * g;
    expectClose(c.norm.dataSync(), [Math.sqrt(sq)], 1e-6, 'clipGradNorm norm');
    expectClose(c.factor.dataSync(), [0.01 / (Math.sqrt(sq) + 1e-6)], 1e-6, 'clipGradNorm factor');
    expect(clipGradNorm(a, 1e9)!.factor.item()).toBe(1);
    expect(clipGradNorm([Parameter.from(tensor(Float32Array.of(1), [1]))], 1)).toBeNull();
    for (const bad of [0, -1, Number.NaN, Infinity]) expect(() => clipGradNorm(a, bad)).toThrow(/maxNorm/);
    expect(() => new AdamW([a[0], a[0]])).toThrow(/more than once/);
  });
});

describe('Trainer.fit keeps its figures on the device', () => {
  const cfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 4 };
  const train = data.shapes({ split: 'train', size: 16, length: 96, seed: 2, numClasses: 4 });

  for (const withPolicy of [false, true]) {
    it(`fit's loss, accuracy${withPolicy ? ' and usage' : ''} equal trainStep's, and the weights end the same (clipGrad on)`, async () => {
      const seed = RUN_SEED % 1000;
      const make = () => {
        const m = vit.create(cfg, { seed });
        const p = withPolicy ? policies.adavit(m, { tau: 1, seed: 3 }) : null;
        // constant lr (no warm-up, cosine from lr to lr), so trainStep alone sees fit's schedule
        const t = new Trainer({ model: m, policy: p, optimizer: { lr: 1e-3 }, warmupEpochs: 0, minLr: 1e-3, clipGrad: 0.05, log: 'silent', seed: 0 });
        return { m, p, t };
      };
      const a = make();
      const b = make();
      const [rec] = await a.t.fit(train, { epochs: 1, batchSize: 16, limit: 4 });
      let loss = 0;
      let correct = 0;
      const usage = { patch: 0, head: 0, block: 0 };
      let i = 0;
      for (const batch of batches(train, { batchSize: 16, shuffle: true, seed: 0, dropLast: true, limit: 4 })) {
        b.t.step = i++; // fit advances the step (the policy's sampling stream) itself
        const r = b.t.trainStep(batch.images, batch.labels, train.imageShape);
        loss += r.loss;
        correct += r.correct;
        if (r.usage) for (const k of ['patch', 'head', 'block'] as const) usage[k] += r.usage[k] ?? 0;
      }
      expect(i).toBe(4);
      expectClose([rec.trainLoss], [loss / 4], 1e-6, 'trainLoss');
      expect(rec.trainAcc).toBe(correct / 64);
      if (withPolicy) {
        expectClose([rec.usage!.patch ?? 0, rec.usage!.head ?? 0, rec.usage!.block ?? 0], [usage.patch / 4, usage.head / 4, usage.block / 4], 1e-6, 'usage');
        expect(rec.usage!.patch ?? 0).toBeGreaterThan(0);
      } else {
        expect(rec.usage).toBeUndefined();
      }
      const pa = a.m.namedParameters();
      const pb = new Map(b.m.namedParameters());
      for (const [name, p] of pa) expect(p.dataSync(), name).toEqual(pb.get(name)!.dataSync());
      a.m.dispose();
      b.m.dispose();
    });
  }

  it('rejects a bad deviceChecks option', () => {
    const m = vit.create(cfg, { seed: 1 });
    expect(() => new Trainer({ model: m, deviceChecks: 'lazy' as never, log: 'silent' })).toThrow(/deviceChecks/);
    m.dispose();
  });
});
