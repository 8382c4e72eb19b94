/**
 * The TypeScript library on cuda (run on a GPU machine; skipped elsewhere): the ViT parity fixture
 * in float32 (TF32 off) and under bf16 autocast, a training step equal to the same step on the CPU,
 * AdaViT packed inference equal to the CPU (decisions and logits), Module.to / Tensor.to round trips,
 * evaluate and the CLI on cuda. Float32 comparisons use TOL.float32 (1e-5 relative), bf16 ones
 * TOL.bfloat16 (1e-2), both against the CPU or the PyTorch float64 fixture.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import {
  AdamW, adavitInfer, autocast, data, deviceChecks, evaluate, full, memory, Module, noGrad, ops, Parameter, policies, setAllowTf32,
  synchronize, tensor, Tensor, tidy, Trainer, vit, zeros,
} from '../../lib/index.js';
import type { Dataset } from '../../lib/data/dataset.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import type { AdaVitPolicy } from '../../lib/policies/adavit.js';
import { CHILD_TIMEOUT_MS, expectCode, randn, RUN_SEED } from '../helpers.js';
import { describeCuda, emulated, expectRel, TOL } from './helpers.js';

const FIXTURE = join(__dirname, '../fixtures/vit-tiny-ref.safetensors');
const fixtureCfg = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 64, depth: 2, numHeads: 4, mlpRatio: 4, numClasses: 10, qkvBias: true };
const smallCfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 3, numHeads: 4, mlpRatio: 2, numClasses: 5 };

function bitsOf(t: Tensor): number[] {
  const d = t.dataSync();
  return Array.from(d instanceof Float32Array ? new Uint32Array(Float32Array.from(d).buffer) : d);
}

/** The parity fixture's model (weights loaded, then moved to `device`) and its inputs there. */
async function fixtureModel(device: 'cpu' | 'cuda') {
  const f = await readSafetensors(FIXTURE);
  const m = vit.create(fixtureCfg);
  await m.load(FIXTURE, { strict: false });
  m.to(device);
  const x = tensor(f.getFloat32('input'), [3, 3, 32, 32], { device, requiresGrad: true });
  const labels = tensor(Int32Array.from(f.getFloat32('target')), [3], { device });
  return { f, m, x, labels };
}

function spreadGates(p: AdaVitPolicy, seed: number): void {
  for (const [, prm] of p.namedParameters()) prm.assign(randn([...prm.shape], seed++, 0.8));
}

describeCuda('ViT parity with timm on cuda (PyTorch float64 fixture)', () => {
  it('float32, TF32 off: activations, logits, loss and every gradient within 1e-5', async () => {
    setAllowTf32(false);
    const { f, m, x, labels } = await fixtureModel('cuda');
    expect(m.device).toBe('cuda');
    noGrad(() => tidy(() => {
      expectRel(m.patch_embed.forward(x).values(), f.getFloat32('act.patch_embed'), TOL.float32, 'act.patch_embed');
      let t = m.embed(x);
      m.blocks.forEach((b, i) => {
        t = b.forward(t);
        expectRel(t.values(), f.getFloat32(`act.blocks.${i}`), TOL.float32, `act.blocks.${i}`);
      });
    }));
    const logits = m.forward(x);
    expect(logits.device).toBe('cuda');
    expectRel(logits.values(), f.getFloat32('logits'), TOL.float32, 'logits');
    const loss = ops.crossEntropy(logits, labels);
    expectRel([loss.item()], f.getFloat32('loss'), TOL.float32, 'loss');
    loss.backward();
    let n = 0;
    for (const [name, p] of m.namedParameters()) {
      expect(p.grad, name).not.toBeNull();
      expect(p.grad!.device, name).toBe('cuda');
      expectRel(p.grad!.values(), f.getFloat32(`grad.${name}`), TOL.float32, `grad.${name}`);
      n++;
    }
    expect(n).toBe(4 + 2 * 12 + 4);
    expect(x.grad!.device).toBe('cuda');
    expectRel(x.grad!.values(), f.getFloat32('grad.input'), TOL.float32, 'grad.input');
    m.dispose();
  });

  it('bf16 autocast: the same forward/backward within 1e-2 of float32; parameters and gradients stay float32', async () => {
    const { f, m, x, labels } = await fixtureModel('cuda');
    const { logits, loss } = autocast('bfloat16', () => {
      const lg = m.forward(x);
      return { logits: lg, loss: ops.crossEntropy(lg, labels) };
    });
    expect(logits.dtype).toBe('bfloat16'); // the head is a linear: bf16 out, as torch.autocast
    expect(loss.dtype).toBe('float32'); // cross-entropy runs in float32
    expectRel(logits.values(), f.getFloat32('logits'), TOL.bfloat16, 'bf16 logits');
    expectRel([loss.item()], f.getFloat32('loss'), TOL.bfloat16, 'bf16 loss');
    loss.backward();
    const errs: string[] = [];
    for (const [name, p] of m.namedParameters()) {
      expect(p.dtype, name).toBe('float32');
      expect(p.grad!.dtype, name).toBe('float32');
      expect(p.grad!.device, name).toBe('cuda');
      errs.push(`${name} ${expectRel(p.grad!.values(), f.getFloat32(`grad.${name}`), TOL.bfloat16, `bf16 grad.${name}`).toExponential(1)}`);
    }
    expect(x.grad!.dtype).toBe('float32');
    expectRel(x.grad!.values(), f.getFloat32('grad.input'), TOL.bfloat16, 'bf16 grad.input');
    // the comparison is not vacuous: bf16 really ran (the logits differ from the float32 ones)
    const f32 = noGrad(() => m.forward(x)).values();
    expect(Array.from(logits.values())).not.toEqual(Array.from(f32));
    console.log(`bf16 autocast relative errors of the gradients (seed ${RUN_SEED}): ${errs.join(', ')}`);
    m.dispose();
  });

  it('noGrad inference under autocast (fused linear epilogues in bf16) within 1e-2 of float32', async () => {
    const { f, m, x } = await fixtureModel('cuda');
    const y = noGrad(() => autocast('bfloat16', () => m.forward(x)));
    expect(y.dtype).toBe('bfloat16');
    expectRel(y.values(), f.getFloat32('logits'), TOL.bfloat16, 'bf16 noGrad logits');
    m.dispose();
  });
});

describeCuda('training on cuda equals the CPU', () => {
  const cfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 4 };
  const ds = data.shapes({ split: 'train', size: 16, length: 64, seed: 2, numClasses: 4 });

  for (const withPolicy of [false, true]) {
    it(`two AdamW steps (clipped), float32: updated parameters within 1e-5${withPolicy ? ' (AdaViT, same Philox decisions)' : ''}`, () => {
      setAllowTf32(false);
      const make = (device: 'cpu' | 'cuda') => {
        const m = vit.create(cfg, { seed: 12 });
        const p = withPolicy ? policies.adavit(m, { seed: 12, tau: 1, initBias: 0.5 }) : null;
        // eps 1e-3, not 1e-8: the key part of qkv.bias has a gradient that is exactly zero in exact
        // arithmetic (softmax ignores a constant added to every key), i.e. pure rounding noise, which
        // AdamW with a tiny eps turns into a full ±lr step whose sign differs between any two
        // summation orders. A larger eps keeps that noise negligible; real gradients still move.
        const t = new Trainer({ model: m, policy: p, device, log: 'silent', optimizer: { lr: 1e-3, eps: 1e-3 }, clipGrad: 1 });
        return { m, p, t };
      };
      const c = make('cpu');
      const g = make('cuda');
      expect(g.t.device).toBe('cuda');
      expect(g.m.device).toBe('cuda');
      if (g.p) expect(g.p.device).toBe('cuda');
      for (let s = 0; s < 2; s++) {
        const b = ds.getBatch(Array.from({ length: 16 }, (_, i) => (s * 16 + i) % ds.length));
        const rc = c.t.trainStep(b.images, b.labels, ds.imageShape);
        const rg = g.t.trainStep(b.images, b.labels, ds.imageShape);
        expectRel([rg.loss], [rc.loss], TOL.float32, `loss at step ${s}`);
        expect(rg.correct).toBe(rc.correct);
        if (withPolicy) {
          // usage = means of the hard decisions: equal decisions give equal usage (up to summation order)
          for (const k of ['patch', 'head', 'block'] as const) expect(Math.abs(rg.usage![k]! - rc.usage![k]!), `usage.${k} at step ${s}`).toBeLessThan(1e-6);
        }
        c.t.step++;
        g.t.step++;
      }
      const pc = [...c.m.namedParameters(), ...(c.p ? c.p.namedParameters() : [])];
      const pg = [...g.m.namedParameters(), ...(g.p ? g.p.namedParameters() : [])];
      pc.forEach(([name, p], i) => {
        expect(pg[i][1].device).toBe('cuda');
        expectRel(pg[i][1].values(), p.values(), TOL.float32, `updated ${name}`);
      });
    });
  }

  it('fit on cuda (device-side figures, deferred checks) equals fit on the CPU; a bad label is thrown by fit', async () => {
    setAllowTf32(false);
    const make = (device: 'cpu' | 'cuda') => {
      const m = vit.create(cfg, { seed: 15 });
      const p = policies.adavit(m, { seed: 15, tau: 1, initBias: 0.5 });
      return { m, t: new Trainer({ model: m, policy: p, device, log: 'silent', optimizer: { lr: 1e-3, eps: 1e-3 }, clipGrad: 1, warmupEpochs: 0 }) };
    };
    const c = make('cpu');
    const g = make('cuda');
    expect(deviceChecks()).toBe('immediate');
    const [rc] = await c.t.fit(ds, { epochs: 1, batchSize: 16, limit: 2 });
    const [rg] = await g.t.fit(ds, { epochs: 1, batchSize: 16, limit: 2 });
    expect(deviceChecks(), 'the mode in force before fit is restored').toBe('immediate');
    expectRel([rg.trainLoss], [rc.trainLoss], TOL.float32, 'trainLoss');
    expect(rg.trainAcc).toBe(rc.trainAcc);
    for (const k of ['patch', 'head', 'block'] as const) expect(Math.abs(rg.usage![k]! - rc.usage![k]!), `usage.${k}`).toBeLessThan(1e-6);
    const pc = c.m.namedParameters();
    const pg = new Map(g.m.namedParameters());
    for (const [name, p] of pc) expectRel(pg.get(name)!.values(), p.values(), TOL.float32, `updated ${name}`);
    // A label out of range: the deferred check throws IndexError from fit (at its next read), the
    // mode is restored, and the process keeps working.
    const bad: Dataset = { name: 'bad', length: ds.length, numClasses: ds.numClasses, classNames: ds.classNames, imageShape: ds.imageShape,
      getBatch: (idx, o) => {
        const b = ds.getBatch(idx, o);
        b.labels[3] = 99;
        return b;
      } };
    g.t.epoch = 0;
    await expect(g.t.fit(bad, { epochs: 1, batchSize: 16, limit: 1 })).rejects.toMatchObject({ code: 'ERR_VITRIM_INDEX' });
    expect(deviceChecks()).toBe('immediate');
    expect(full([3], 2, { device: 'cuda' }).toArray()).toEqual([2, 2, 2]);
  });

  it('a bf16 fit on cuda runs, keeps float32 master weights and stays close to the float32 step', () => {
    const make = (precision: 'float32' | 'bfloat16') => {
      const m = vit.create(cfg, { seed: 13 });
      const t = new Trainer({ model: m, device: 'cuda', precision, log: 'silent', optimizer: { lr: 1e-3 } });
      return { m, t };
    };
    const a = make('float32');
    const b = make('bfloat16');
    const batch = ds.getBatch(Array.from({ length: 32 }, (_, i) => i));
    const ra = a.t.trainStep(batch.images, batch.labels, ds.imageShape);
    const rb = b.t.trainStep(batch.images, batch.labels, ds.imageShape);
    expectRel([rb.loss], [ra.loss], TOL.bfloat16, 'bf16 loss');
    for (const [name, p] of b.m.namedParameters()) {
      expect(p.dtype, name).toBe('float32');
      expect(p.device, name).toBe('cuda');
      expect(p.values().every(Number.isFinite), name).toBe(true);
    }
  });

  it('evaluate on cuda equals evaluate on the CPU (dense and AdaViT packed)', () => {
    setAllowTf32(false);
    const test = data.shapes({ split: 'test', size: 16, length: 48, seed: 2, numClasses: 4 });
    const m = vit.create(cfg, { seed: 14 });
    const p = policies.adavit(m, { seed: 14, tau: 1 });
    spreadGates(p, 140);
    for (const pol of [null, p]) {
      const rc = evaluate(m, pol, test, { batchSize: 16, device: 'cpu' });
      const rg = evaluate(m, pol, test, { batchSize: 16, device: 'cuda' });
      expect(m.device).toBe('cuda');
      expect(rg.accuracy).toBe(rc.accuracy);
      expect(rg.macs).toBe(rc.macs);
      expect(rg.kept).toEqual(rc.kept);
      expectRel([rg.loss], [rc.loss], TOL.float32, 'eval loss');
    }
  });
});

describeCuda('AdaViT packed inference on cuda equals the CPU', () => {
  it('decisions equal, logits within 1e-5, MACs equal (threshold, keepRatio, random baseline)', () => {
    setAllowTf32(false);
    for (const seed of [3, 4]) {
      const m = vit.create(smallCfg, { seed });
      const p = policies.adavit(m, { seed, tau: 1 });
      spreadGates(p, seed * 10);
      const xc = tensor(randn([6, 3, 16, 16], seed + 100), [6, 3, 16, 16]);
      const variants = [{}, { threshold: 0.6 }, { keepRatio: 0.4 }, { random: { patch: 0.5, head: 0.5, block: 0.75, seed: 3 } }];
      const cpu = variants.map((o) => adavitInfer(p, xc, { ...o, record: true }));
      const maskedCpu = noGrad(() => p.forwardMasked(xc)).values();
      m.to('cuda');
      p.to('cuda');
      const xg = xc.to('cuda');
      variants.forEach((o, k) => {
        const rg = adavitInfer(p, xg, { ...o, record: true });
        const rc = cpu[k];
        const what = `seed ${seed} ${JSON.stringify(o)}`;
        expect(rg.logits.device).toBe('cuda');
        expect(rg.decisions!.length).toBe(rc.decisions!.length);
        rg.decisions!.forEach((d, l) => {
          expect(Array.from(d.patches), `${what} block ${d.block} patches`).toEqual(Array.from(rc.decisions![l].patches));
          expect(Array.from(d.heads), `${what} block ${d.block} heads`).toEqual(Array.from(rc.decisions![l].heads));
          expect(Array.from(d.sublayers), `${what} block ${d.block} sub-layers`).toEqual(Array.from(rc.decisions![l].sublayers));
          expectRel(d.scores, rc.decisions![l].scores, TOL.float32, `${what} scores`);
        });
        expectRel(rg.logits.values(), rc.logits.values(), TOL.float32, `${what} logits`);
        expect(rg.macs).toBe(rc.macs);
        expect(rg.kept).toEqual(rc.kept);
      });
      // the decisions were not trivial
      expect(cpu[0].kept.patch).toBeGreaterThan(0);
      expect(cpu[0].kept.patch).toBeLessThan(1);
      // the masked training-path forward on cuda (attention with the keep mask and head gate) agrees
      expectRel(noGrad(() => p.forwardMasked(xg)).values(), maskedCpu, TOL.float32, `seed ${seed} masked forward`);
      m.dispose();
      p.dispose();
    }
  });

  it('under bf16 autocast with every gate open: within 1e-2 of the float32 dense model', () => {
    const m = vit.create(smallCfg, { seed: 6 });
    m.to('cuda');
    const p = policies.adavit(m, { seed: 6, initBias: 50 });
    expect(p.device).toBe('cuda'); // a policy made for a cuda model has its gates there
    const x = tensor(randn([4, 3, 16, 16], 106), [4, 3, 16, 16], { device: 'cuda' });
    const dense = noGrad(() => m.forward(x)).values();
    const r = autocast('bfloat16', () => adavitInfer(p, x));
    expect(r.kept).toEqual({ patch: 1, head: 1, block: 1 });
    expectRel(r.logits.values(), dense, TOL.bfloat16, 'bf16 packed, all kept');
  });
});

class WithBuffer extends Module {
  weight = Parameter.from(tensor(randn([3, 2], 20), [3, 2]));
  scale: Tensor = tensor(randn([2], 21), [2]);
  stats: Tensor[] = [tensor(randn([4], 22), [4])];
}

describeCuda('Module.to and Tensor.to round trips', () => {
  it('Module.to keeps Parameter identity and exact values both ways; gradients and buffers move', () => {
    const m = vit.create(smallCfg, { seed: 7 });
    const params = m.parameters();
    const vals = params.map(bitsOf);
    const x = tensor(randn([2, 3, 16, 16], 30), [2, 3, 16, 16]);
    ops.sum(m.forward(x)).backward();
    const grads = params.map((p) => bitsOf(p.grad!));
    m.to('cuda');
    expect(m.device).toBe('cuda');
    m.parameters().forEach((p, i) => {
      expect(p).toBe(params[i]);
      expect(p.device).toBe('cuda');
      expect(p.grad!.device).toBe('cuda');
      expect(bitsOf(p)).toEqual(vals[i]);
      expect(bitsOf(p.grad!)).toEqual(grads[i]);
    });
    m.to('cpu');
    m.parameters().forEach((p, i) => {
      expect(p).toBe(params[i]);
      expect(p.device).toBe('cpu');
      expect(bitsOf(p)).toEqual(vals[i]);
    });
    const w = new WithBuffer();
    const sv = bitsOf(w.scale);
    const st = bitsOf(w.stats[0]);
    const wp = w.weight;
    w.to('cuda');
    expect(w.weight).toBe(wp);
    expect(w.scale.device).toBe('cuda');
    expect(w.stats[0].device).toBe('cuda');
    expect(bitsOf(w.scale)).toEqual(sv);
    expect(bitsOf(w.stats[0])).toEqual(st);
    w.to('cpu');
    expect(w.scale.device).toBe('cpu');
    expect(bitsOf(w.stats[0])).toEqual(st);
  });

  it('AdamW keeps the same parameters and moves its moments after Module.to (equals an all-CPU run)', () => {
    setAllowTf32(false);
    const run = (moveAfterFirst: boolean) => {
      const m = vit.create(smallCfg, { seed: 8 });
      const opt = new AdamW(m.parameters(), { lr: 1e-3, eps: 1e-3 }); // eps: see the Trainer test above
      const y = tensor(new Int32Array([0, 4]), [2]);
      for (let s = 0; s < 3; s++) {
        if (moveAfterFirst && s === 1) m.to('cuda');
        const dev = m.device;
        const x = tensor(randn([2, 3, 16, 16], 40 + s), [2, 3, 16, 16], { device: dev });
        tidy(() => ops.crossEntropy(m.forward(x), y.to(dev))).backward();
        opt.step();
        opt.zeroGrad();
      }
      return m;
    };
    const c = run(false);
    const g = run(true);
    expect(g.device).toBe('cuda');
    const pc = [...c.namedParameters()];
    [...g.namedParameters()].forEach(([name, p], i) => expectRel(p.values(), pc[i][1].values(), TOL.float32, `after 3 steps ${name}`));
  });

  it('Tensor.to: exact copies both ways (float32, bfloat16, int32); the gradient returns to the source device', () => {
    const v = randn([5, 7], 50, 3);
    const a = tensor(v, [5, 7]);
    const g = a.to('cuda');
    expect(g.device).toBe('cuda');
    expect(g.to('cuda')).toBe(g);
    expect(Array.from(g.dataSync())).toEqual(Array.from(v));
    expect(g.toArray()).toEqual(Array.from(v));
    expect(bitsOf(g.to('cpu'))).toEqual(bitsOf(a));
    const bf = a.to({ device: 'cuda', dtype: 'bfloat16' });
    expect(bf.dtype).toBe('bfloat16');
    expect(Array.from(bf.dataSync())).toEqual(Array.from(a.to('bfloat16').dataSync()));
    const i = tensor(new Int32Array([1, -2, 3]), [3], { device: 'cuda' });
    expect(i.toArray()).toEqual([1, -2, 3]);
    expect(tensor([2.5], [], { device: 'cuda' }).item()).toBe(2.5);
    expect(full([2, 2], 3, { device: 'cuda' }).toArray()).toEqual([3, 3, 3, 3]);
    expect(zeros([3], { device: 'cuda', dtype: 'bfloat16' }).toArray()).toEqual([0, 0, 0]);
    // x (cpu leaf) → cuda → tanh · w → sum → backward: x.grad on the cpu equals the all-CPU gradient
    const wv = randn([5, 7], 51);
    const xc = tensor(v, [5, 7], { requiresGrad: true });
    ops.sum(ops.mul(ops.tanh(xc), tensor(wv, [5, 7]))).backward();
    const xg = tensor(v, [5, 7], { requiresGrad: true });
    ops.sum(ops.mul(ops.tanh(xg.to('cuda')), tensor(wv, [5, 7], { device: 'cuda' }))).backward();
    expect(xg.grad!.device).toBe('cpu');
    expectRel(xg.grad!.values(), xc.grad!.values(), TOL.float32, 'gradient through to(cuda)');
  });

  it('creation, random draws and samplers on cuda match the cpu; mixed devices throw and the process keeps working', async () => {
    for (const dist of ['uniform', 'normal', 'gumbel', 'logistic'] as const) {
      const c = ops.random([1000], dist, { seed: 5, offset: 2 });
      const g = ops.random([1000], dist, { seed: 5, offset: 2, device: 'cuda' });
      expect(g.device).toBe('cuda');
      expectRel(g.values(), c.values(), 1e-6, `random ${dist}`);
    }
    const zv = randn([4, 9], 60, 2);
    const zc = tensor(zv, [4, 9]);
    const ys = ops.gumbelSigmoid(zc, { seed: 9, offset: 1, tau: 1 });
    const yg = ops.gumbelSigmoid(zc.to('cuda'), { seed: 9, offset: 1, tau: 1 });
    expect(yg.device).toBe('cuda');
    expect(Array.from(yg.values())).toEqual(Array.from(ys.values()));
    const cpu = tensor([1, 2], [2]);
    const gpu = tensor([1, 2], [2], { device: 'cuda' });
    expectCode(() => ops.add(cpu, gpu), 'ERR_VITRIM_DEVICE');
    expectCode(() => ops.linear(tensor(randn([2, 3], 61), [2, 3]), tensor(randn([4, 3], 62), [4, 3], { device: 'cuda' })), 'ERR_VITRIM_DEVICE');
    expect(ops.add(gpu, gpu).toArray()).toEqual([2, 4]);
    expect(Array.from(await ops.add(gpu, 1).data())).toEqual([2, 3]);
    synchronize();
    const mem = memory();
    expect(mem[0].device).toBe('cpu');
    const cu = mem.find((e) => e.device === 'cuda');
    expect(cu).toBeDefined();
    expect(cu!.liveTensors).toBeGreaterThan(0);
  });

  it('autocast op by op: bf16 linear/matmul/attention outputs with float32 gradients; float32 LayerNorm/softmax/loss', () => {
    const xv = randn([6, 16], 70);
    const wv = randn([8, 16], 71, 0.3);
    const bv = randn([8], 72);
    const x = tensor(xv, [6, 16], { device: 'cuda', requiresGrad: true });
    const w = Parameter.from(tensor(wv, [8, 16], { device: 'cuda' }));
    const b = Parameter.from(tensor(bv, [8], { device: 'cuda' }));
    const y = autocast('bfloat16', () => ops.linear(x, w, b));
    expect(y.dtype).toBe('bfloat16');
    const ref = ops.linear(tensor(xv, [6, 16]), tensor(wv, [8, 16]), tensor(bv, [8]));
    expectRel(y.values(), ref.values(), TOL.bfloat16, 'autocast linear');
    const ln = autocast('bfloat16', () => ops.layerNorm(y));
    expect(ln.dtype).toBe('float32');
    const sm = autocast('bfloat16', () => ops.softmax(y));
    expect(sm.dtype).toBe('float32');
    ops.sum(ops.mul(ln, sm)).backward();
    expect(w.grad!.dtype).toBe('float32');
    expect(b.grad!.dtype).toBe('float32');
    expect(x.grad!.dtype).toBe('float32');
    const mm = autocast('bfloat16', () => ops.matmul(tensor(xv, [6, 16], { device: 'cuda' }), tensor(wv, [8, 16], { device: 'cuda' }), { transB: true }));
    expect(mm.dtype).toBe('bfloat16');
    const qkv = tensor(randn([2, 5, 48], 73), [2, 5, 48], { device: 'cuda' });
    const at = autocast('bfloat16', () => ops.attention(qkv, { numHeads: 4 }));
    expect(at.dtype).toBe('bfloat16');
    expectRel(at.values(), ops.attention(qkv.to('cpu'), { numHeads: 4 }).values(), TOL.bfloat16, 'autocast attention');
    // outside autocast nothing is cast
    expect(ops.linear(x, w, b).dtype).toBe('float32');
  });
});

describeCuda('CLI on cuda', () => {
  // Under the CUDA emulation (CPU) the child processes take seconds to minutes (more under a
  // sanitizer: CHILD_TIMEOUT_MS); their timeouts grow with it.
  const childTimeout = emulated ? CHILD_TIMEOUT_MS : 120_000;
  it('train --device cuda --precision bfloat16, then eval --device cuda', { timeout: 3 * childTimeout }, () => {
    const root = join(__dirname, '../..');
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(root, 'lib/cli.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: childTimeout });
    const out = mkdtempSync(join(tmpdir(), 'vitrim-cuda-cli-'));
    // the epoch's evaluation: the whole test split (2000 images) on a GPU, one batch of it emulated
    const t = run('train', '--data', 'shapes', '--policy', 'adavit', '--epochs', '1', '--limit', '2', '--batch-size', '16', '--out', out,
      '--device', 'cuda', '--precision', 'bfloat16', ...(emulated ? ['--eval-limit', '1'] : []));
    expect(t.status, t.stderr).toBe(0);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    const epoch = JSON.parse(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim());
    expect(epoch.eval.count).toBe(emulated ? 16 : 2000);
    expect(Number.isFinite(epoch.trainLoss) && Number.isFinite(epoch.eval.loss)).toBe(true);
    const e = run('eval', '--data', 'shapes', '--checkpoint', out, '--limit', '2', '--batch-size', '16', '--device', 'cuda', '--json');
    expect(e.status, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).count).toBe(32);
    const i = run('info');
    const j = JSON.parse(i.stdout);
    expect(j.backends[1]).toMatchObject({ device: 'cuda', available: true, reasons: [] });
    expect(j.memory.some((m: { device: string }) => m.device === 'cuda')).toBe(true);
  });
});
