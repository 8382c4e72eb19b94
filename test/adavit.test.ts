import { describe, expect, it } from 'vitest';
import { ArgumentError, AdamW, noGrad, ops, tensor, tidy, vit } from '../lib/index.js';
import { adavitInfer } from '../lib/infer/adavit-infer.js';
import { adavit } from '../lib/policies/adavit.js';
import { expectClose, randn } from './helpers.js';

const cfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 3, numHeads: 4, mlpRatio: 2, numClasses: 5 };

function setup(seed = 1, opts: Parameters<typeof adavit>[1] = {}) {
  const m = vit.create(cfg, { seed });
  const p = adavit(m, { seed, ...opts });
  const x = tensor(randn([4, 3, 16, 16], seed + 100), [4, 3, 16, 16]);
  return { m, p, x };
}

/** Randomises the gate biases so that decisions vary across samples, patches and heads. */
function spreadGates(p: ReturnType<typeof adavit>, seed: number) {
  for (const [, prm] of p.namedParameters()) prm.assign(randn([...prm.shape], seed++, 0.8));
}

describe('AdaViT policy', () => {
  it('has gates of the right shapes on every block after keepLayers', () => {
    const { m, p, x } = setup();
    expect(p.gates.length).toBe(cfg.depth - 1);
    const names = [...p.namedParameters()].map(([n]) => n);
    expect(names).toContain('gates.0.head.weight');
    expect(names).toContain('gates.1.patch.bias');
    const z = noGrad(() => p.logits(1, m.embed(x)));
    expect(z.head.shape).toEqual([4, 4]);
    expect(z.block.shape).toEqual([4, 2]);
    expect(z.patch.shape).toEqual([4, 16]);
    const d = noGrad(() => p.decide(1, m.embed(x), false));
    expect(d.keep!.shape).toEqual([4, 17]);
    const keep = d.keep!.dataSync();
    for (let b = 0; b < 4; b++) expect(keep[b * 17]).toBe(1); // class token always kept
    for (const v of keep) expect(v === 0 || v === 1).toBe(true);
    expect(() => adavit(m, { keepLayers: 9 })).toThrow(ArgumentError);
    expect(() => adavit(m, { threshold: 1 })).toThrow(ArgumentError);
    expect(() => adavit(m, { targets: { patch: 2 } })).toThrow(ArgumentError);
  });

  it('the straight-through gradient reaches every gate and the backbone', () => {
    const { p, x } = setup(2, { tau: 1, initBias: 0 });
    spreadGates(p, 50);
    // sub-layers open (σ(4) ≈ 0.98, still a non-zero straight-through slope): with attention gated
    // off for a whole batch, its head gates would rightly receive no gradient
    for (const g of p.gates) g.block.bias!.assign(new Float32Array([4, 4]));
    const y = tensor(new Int32Array([0, 1, 2, 3]), [4]);
    const loss = tidy(() => p.loss(p.forwardTrain(x), y).total);
    loss.backward();
    for (const [name, prm] of p.namedParameters()) {
      expect(prm.grad, name).not.toBeNull();
      const g = prm.grad!.dataSync();
      expect(g.some((v) => v !== 0), `${name} has a non-zero gradient`).toBe(true);
    }
    for (const [name, prm] of p.model.namedParameters()) expect(prm.grad, name).not.toBeNull();
  });

  it('masked forward equals packed inference on the same hard decisions', () => {
    const kept: { patch: number; head: number; block: number }[] = [];
    for (const seed of [3, 4, 5]) {
      const { p, x } = setup(seed, { tau: 1 });
      spreadGates(p, seed * 10);
      const masked = noGrad(() => p.forwardMasked(x)).dataSync();
      const r = adavitInfer(p, x);
      expectClose(r.logits.dataSync(), masked, 1e-5, `seed ${seed}`);
      expect(r.macs).toBeLessThan(r.denseMacs);
      kept.push(r.kept);
    }
    // the comparison is meaningful: patches, heads and sub-layers were really dropped
    expect(kept.filter((k) => k.patch > 0 && k.patch < 1).length).toBeGreaterThanOrEqual(2);
    expect(kept.some((k) => k.head < 1)).toBe(true);
    expect(kept.some((k) => k.block < 1)).toBe(true);
  });

  it('with every gate open, packed inference equals the dense model', () => {
    const { m, p, x } = setup(6, { initBias: 50 });
    const dense = noGrad(() => m.forward(x)).dataSync();
    const r = adavitInfer(p, x);
    expectClose(r.logits.dataSync(), dense, 1e-5, 'all kept');
    expect(r.kept).toEqual({ patch: 1, head: 1, block: 1 });
  });

  it('the budget knobs are monotone in compute', () => {
    const { p, x } = setup(7, { tau: 1 });
    spreadGates(p, 70);
    let prev = Infinity;
    for (const t of [0.2, 0.4, 0.5, 0.6, 0.8]) {
      const r = adavitInfer(p, x, { threshold: t });
      expect(r.macs).toBeLessThanOrEqual(prev);
      prev = r.macs;
    }
    prev = -Infinity;
    for (const k of [0, 0.25, 0.5, 0.75, 1]) {
      const r = adavitInfer(p, x, { keepRatio: k });
      expect(r.macs).toBeGreaterThanOrEqual(prev);
      expect(r.kept.patch).toBeCloseTo(Math.ceil(k * 16) / 16, 6);
      prev = r.macs;
    }
    expect(() => adavitInfer(p, x, { threshold: 0 })).toThrow(ArgumentError);
    expect(() => adavitInfer(p, x, { keepRatio: 1.5 })).toThrow(ArgumentError);
  });

  it('usage losses push usage toward the target on a toy problem', () => {
    const { p, x } = setup(8, { tau: 1, initBias: 3, targets: { patch: 0.3, head: 0.3, block: 0.3 } });
    for (const prm of p.model.parameters()) prm.requiresGrad = false;
    const opt = new AdamW(p.parameters(), { lr: 0.05, weightDecay: 0 });
    const y = tensor(new Int32Array([0, 1, 2, 3]), [4]);
    // Usage as the loss sees it: the training forward's sampled decisions, averaged over 16 noise
    // draws (p.step picks the Philox stream) to shrink the sampling noise of 16 block and 32 head
    // decisions. Not adavitInfer's usage: its threshold 0.5 drops every head and sub-layer once
    // their gates sit near σ ≈ 0.3 (measured after these 60 steps: head and block inference usage
    // 0, training usage 0.31-0.41), so |usage − 0.3| shrank there by collapsing to 0, and the
    // earlier form of this test passed on that.
    const K = 16;
    const usage = (from: number) => {
      const u = { patch: 0, head: 0, block: 0 };
      for (let r = 0; r < K; r++) {
        p.step = from + r;
        const d = noGrad(() => p.forwardTrain(x).usage);
        for (const k of ['patch', 'head', 'block'] as const) u[k] += d[k]!.item() / K;
      }
      return u;
    };
    const u0 = usage(1000);
    for (let s = 0; s < 60; s++) {
      p.step = s;
      const l = tidy(() => p.loss(p.forwardTrain(x), y).total);
      l.backward();
      l.dispose();
      opt.step();
      opt.zeroGrad();
    }
    const u1 = usage(2000);
    for (const k of ['patch', 'head', 'block'] as const) {
      expect(u0[k], k).toBeGreaterThan(0.8);
      // measured over 30 seeds: patch 0.07-0.15 off (its quadratic penalty fades near the target),
      // head 0.03-0.07, block 0.05-0.10
      expect(Math.abs(u1[k] - 0.3), `${k}: ${u0[k]} → ${u1[k]}`).toBeLessThan(0.2);
    }
    // The inference usage of the input-dependent unit, patches, follows from 1 without collapsing
    // (measured 0.35 ± 0.04, range 0.27-0.49 over 60 seeds).
    const inferred = noGrad(() => adavitInfer(p, x).kept.patch);
    expect(inferred).toBeGreaterThan(0.1);
    expect(inferred).toBeLessThan(0.75);
  });
});

describe('AdaViT random-policy baseline', () => {
  it('keeps units at the requested rates and matches its own masked equivalent in cost', () => {
    const m = vit.create(cfg, { seed: 11 });
    const p = adavit(m, { seed: 11 });
    const x = tensor(randn([16, 3, 16, 16], 12), [16, 3, 16, 16]);
    const r = adavitInfer(p, x, { random: { patch: 0.5, head: 0.5, block: 0.75, seed: 3 } });
    expect(Math.abs(r.kept.patch - 0.5)).toBeLessThan(0.1);
    expect(Math.abs(r.kept.head - 0.5)).toBeLessThan(0.15);
    expect(Math.abs(r.kept.block - 0.75)).toBeLessThan(0.15);
    const again = adavitInfer(p, x, { random: { patch: 0.5, head: 0.5, block: 0.75, seed: 3 } });
    expect(Array.from(again.logits.dataSync())).toEqual(Array.from(r.logits.dataSync()));
    const all = adavitInfer(p, x, { random: { patch: 1, head: 1, block: 1 } });
    expectClose(all.logits.dataSync(), noGrad(() => m.forward(x)).dataSync(), 1e-5, 'random with p=1 is dense');
    expect(() => adavitInfer(p, x, { random: { patch: 2, head: 0, block: 0 } })).toThrow(ArgumentError);
  });
});
