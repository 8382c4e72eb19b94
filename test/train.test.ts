import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adavitInfer, ArgumentError, data, DisposedError, IOError, evaluate, matchedRandom, memory, noGrad, policies, tensor, Trainer, vit, VisionTransformer } from '../lib/index.js';
import { randint, randn, RUN_SEED } from './helpers.js';

describe('training on the procedural data set (CI-sized)', () => {
  it('a small dense ViT learns the shapes clearly above chance', async () => {
    const cfg = { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 64, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 4 };
    // Fixed seeds: how fast a tiny ViT "takes off" varies with the initialisation (another shuffle seed
    // gave 38 % after 6 epochs where this one gives 60 %); a convergence test must not flake. It still fails
    // if training breaks: the loss and accuracy must move far from chance.
    const m = vit.create(cfg, { seed: 1 });
    const train = data.shapes({ split: 'train', size: 32, length: 4096, seed: 1, numClasses: 4 });
    const test = data.shapes({ split: 'test', size: 32, length: 1000, seed: 1, numClasses: 4 });
    const t = new Trainer({ model: m, optimizer: { lr: 1e-3, weightDecay: 0.05 }, warmupEpochs: 0.3, log: 'silent', seed: 0 });
    const hist = await t.fit(train, { epochs: 6, batchSize: 64, eval: test });
    const last = hist[hist.length - 1];
    // chance is 25 % (±1.4 % on 1000 images); measured 60 % with these seeds on the development
    // machine. 35 % leaves margin for other ISAs, whose rounding takes another trajectory.
    expect(last.eval!.accuracy).toBeGreaterThan(0.35);
    expect(last.trainLoss).toBeLessThan(hist[0].trainLoss - 0.2);
    m.dispose();
  });
});

describe('AdaViT end to end: train → save → load → infer', () => {
  it('reloads model and policy from the run directory with identical decisions and logits', async () => {
    const out = mkdtempSync(join(tmpdir(), 'vitrim-train-'));
    const cfg = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 32, depth: 3, numHeads: 2, mlpRatio: 2, numClasses: 4 };
    const m = vit.create(cfg, { seed: 3 });
    const p = policies.adavit(m, { tau: 1, seed: 3 });
    const train = data.shapes({ split: 'train', size: 32, length: 512, seed: 1, numClasses: 4 });
    const test = data.shapes({ split: 'test', size: 32, length: 128, seed: 1, numClasses: 4 });
    const t = new Trainer({ model: m, policy: p, outDir: out, log: 'silent', optimizer: { lr: 1e-3 } });
    const hist = await t.fit(train, { epochs: 2, batchSize: 32, eval: test, limit: 6 });
    expect(hist[1].eval!.kept).toBeDefined();
    // at most dense + the gate GEMM (every one of N = 17 tokens against H + 3 = 5 gates, 2 gated blocks)
    const gateMacs = 2 * 17 * 32 * (2 + 3);
    expect(hist[1].eval!.macs).toBeLessThanOrEqual(hist[1].eval!.denseMacs + gateMacs);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.epoch)).toEqual([1, 2]);
    // the whole test split (128) after each epoch by default; evalLimit batches of it on request
    expect(hist.map((r) => r.eval!.count)).toEqual([128, 128]);

    // the run directory, as a user loads it
    const m2 = await vit.fromFile(out);
    const p2 = await policies.fromFile(m2, out);
    expect(p2.options()).toEqual(p.options());
    const b = test.getBatch([0, 1, 2, 3, 4, 5, 6, 7]);
    const x = tensor(b.images, [8, 3, 32, 32]);
    const r1 = adavitInfer(p, x);
    const r2 = adavitInfer(p2, x);
    expect(Array.from(r2.logits.dataSync())).toEqual(Array.from(r1.logits.dataSync()));
    expect(r2.kept).toEqual(r1.kept);
    expect(r2.macs).toBe(r1.macs);

    // resume continues from the saved epoch with the saved optimizer state
    const m3 = vit.create(cfg, { seed: 99 });
    const t3 = new Trainer({ model: m3, policy: policies.adavit(m3, { tau: 1, seed: 3 }), outDir: out, log: 'silent', optimizer: { lr: 1e-3 } });
    expect(await t3.resume()).toBe(true);
    expect(t3.epoch).toBe(2);
    expect(Array.from(m3.head.weight.dataSync())).toEqual(Array.from(m.head.weight.dataSync()));
    const more = await t3.fit(train, { epochs: 3, batchSize: 32, limit: 2, eval: test, evalBatchSize: 16, evalLimit: 3 });
    expect(more.map((r) => r.epoch)).toEqual([3]);
    expect(more[0].eval!.count).toBe(48);
  });

  it('a run resumed from its save ends with the same bits as one run straight through (no RNG state is saved: none is needed)', async () => {
    const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, numClasses: 3 };
    const train = data.shapes({ split: 'train', size: 16, length: 64, seed: RUN_SEED % 1000, numClasses: 3 });
    const mk = (dir: string) => {
      const m = vit.create(cfg, { seed: RUN_SEED % 997 });
      const p = policies.adavit(m, { seed: 7 });
      return { m, p, t: new Trainer({ model: m, policy: p, outDir: dir, log: 'silent', clipGrad: 1, seed: 3 }) };
    };
    const straight = mk(mkdtempSync(join(tmpdir(), 'vitrim-train-')));
    await straight.t.fit(train, { epochs: 3, batchSize: 16, limit: 3 });
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-train-'));
    await mk(dir).t.fit(train, { epochs: 1, batchSize: 16, limit: 3 });
    // as a crash during the second epoch's save leaves it: its line logged, a torn line after it
    const metrics = join(dir, 'metrics.jsonl');
    writeFileSync(metrics, `${readFileSync(metrics, 'utf8')}{"epoch":2,"step":6,"trainLoss":1}\n{"epoch":3,"st`);
    const resumed = mk(dir);
    await resumed.t.fit(train, { epochs: 3, batchSize: 16, limit: 3, resume: true });
    expect(resumed.t.step).toBe(9);
    // one line per epoch: the stale second-epoch line and the torn one were dropped by the resume
    const lines = readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.epoch, l.step])).toEqual([[1, 3], [2, 6], [3, 9]]);
    expect(lines[1].trainLoss).not.toBe(1);
    const bits = (x: { m: VisionTransformer; p: { stateDict(): Map<string, { data: Float32Array }> } }) =>
      [...x.m.stateDict(), ...x.p.stateDict()].map(([k, e]) => [k, Array.from(e.data)]);
    expect(bits(resumed)).toEqual(bits(straight));
  });

  it('resume refuses a run directory whose files come from two saves, before restoring anything', async () => {
    const out = mkdtempSync(join(tmpdir(), 'vitrim-train-'));
    const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, numClasses: 3 };
    const m = vit.create(cfg, { seed: RUN_SEED % 1000 });
    const train = data.shapes({ split: 'train', size: 16, length: 64, seed: 2, numClasses: 3 });
    const t = new Trainer({ model: m, policy: policies.adavit(m, {}), outDir: out, log: 'silent' });
    await t.fit(train, { epochs: 1, batchSize: 16, limit: 2 });
    const oldState = readFileSync(join(out, 'trainer-state.safetensors'));
    const oldPolicy = readFileSync(join(out, 'policy.safetensors'));
    await t.fit(train, { epochs: 2, batchSize: 16, limit: 2 });
    const fresh = () => {
      const m2 = vit.create(cfg, { seed: RUN_SEED % 1000 + 1 });
      return { m2, t2: new Trainer({ model: m2, policy: policies.adavit(m2, {}), outDir: out, log: 'silent' }) };
    };
    // as a crash between the renames of the second save would leave it: the trainer state of the first
    writeFileSync(join(out, 'trainer-state.safetensors'), oldState);
    const { m2, t2 } = fresh();
    const before = Array.from(m2.head.weight.dataSync());
    const err = await t2.resume().catch((e) => e);
    expect(err).toBeInstanceOf(IOError);
    expect(String(err)).toMatch(/holds files from different saves \(model\.safetensors: step 4 .*trainer-state\.safetensors: step 2 /);
    expect(Array.from(m2.head.weight.dataSync())).toEqual(before); // nothing restored
    expect(t2.epoch).toBe(0);
    // the policy from the first save, the rest from the second: refused too
    await t.save();
    writeFileSync(join(out, 'policy.safetensors'), oldPolicy);
    await expect(fresh().t2.resume()).rejects.toThrow(/policy\.safetensors: step 2 /);
    // ... and so does loading the run as vitrim eval does (model, then its policy)
    const loaded = await vit.fromFile(out);
    await expect(policies.fromFile(loaded, out)).rejects.toThrow(/policy\.safetensors \(step 2 .*\) and model\.safetensors \(step 4 .*\) come from different saves/);
    await expect(policies.fromFile(loaded, join(out, 'policy.safetensors'))).resolves.toBeDefined(); // a file named alone: the user's choice
    // one whole save resumes
    await t.save();
    const again = fresh();
    expect(await again.t2.resume()).toBe(true);
    await expect(policies.fromFile(loaded, out)).resolves.toBeDefined();
    expect(again.t2.epoch).toBe(2);
    expect(Array.from(again.m2.head.weight.dataSync())).toEqual(Array.from(m.head.weight.dataSync()));
  });
});

describe('policy.save / policies.fromFile', () => {
  const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 3, numHeads: 2, numClasses: 5 };
  it('round-trips the gates and options; options can be overridden; wrong files and models are refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-policy-'));
    const model = vit.create(cfg, { seed: RUN_SEED % 1000 });
    const p = policies.adavit(model, { targets: { patch: 0.3, head: 0.6, block: 0.8 }, tau: 2, threshold: 0.55, keepLayers: 1, seed: 4, initBias: -1 });
    // gates that differ from their initialisation, so a load that kept the init would show
    for (const q of p.parameters()) q.assign(randn([q.size], RUN_SEED + q.size));
    const path = join(dir, 'gates.safetensors');
    await p.save(path);
    const q = await policies.fromFile(model, path);
    expect(q.options()).toEqual(p.options());
    expect([...q.stateDict()].map(([k, e]) => [k, e.shape, Array.from(e.data)])).toEqual([...p.stateDict()].map(([k, e]) => [k, e.shape, Array.from(e.data)]));
    const x = tensor(randn([4, 3, 16, 16], RUN_SEED + 1), [4, 3, 16, 16]);
    const [a, b] = [adavitInfer(p, x), adavitInfer(q, x)];
    expect(Array.from(b.logits.dataSync())).toEqual(Array.from(a.logits.dataSync()));
    expect(b.kept).toEqual(a.kept);
    const r = await policies.fromFile(model, path, { threshold: 0.7 });
    expect(r.threshold).toBe(0.7);
    expect(r.targets).toEqual(p.targets);
    // a model checkpoint is not a policy; a policy does not fit another width or depth
    await model.save(join(dir, 'model.safetensors'));
    await expect(policies.fromFile(model, join(dir, 'model.safetensors'))).rejects.toThrow(/not an AdaViT policy file \(its 'vitrim.policy' metadata is missing\)/);
    const live = memory()[0].liveTensors;
    for (const other of [vit.create({ ...cfg, embedDim: 32 }), vit.create({ ...cfg, depth: 4 })]) {
      const before = memory()[0].liveTensors;
      await expect(policies.fromFile(other, path)).rejects.toThrow(ArgumentError);
      await expect(policies.fromFile(other, path)).rejects.toThrow(/gates.safetensors: does not fit this model \(loadStateDict: /);
      expect(memory()[0].liveTensors).toBe(before);
      other.dispose();
    }
    expect(memory()[0].liveTensors).toBe(live);
    await expect(policies.fromFile(model, join(dir, 'none.safetensors'))).rejects.toThrow(/cannot read/);
    await expect(policies.fromFile(model, 3 as never)).rejects.toThrow(/path must be a non-empty string/);
    await expect(policies.fromFile({} as never, path)).rejects.toThrow(/model must be a VisionTransformer/);
    await expect(p.save('' as never)).rejects.toThrow(/path must be a non-empty string/);
    await expect(vit.fromFile(dir)).resolves.toBeInstanceOf(VisionTransformer); // a directory: its model.safetensors
    for (const z of [x, a.logits, b.logits, p, q, r, model]) z.dispose();
  });
});

describe('matchedRandom', () => {
  it('random decisions at the learned policy\'s MACs; keepRatio applies to the learned ones only', () => {
    const cfg = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 32, depth: 3, numHeads: 2, numClasses: 4 };
    const model = vit.create(cfg, { seed: RUN_SEED % 1000 });
    const policy = policies.adavit(model, { tau: 1, seed: 3 });
    // gates with logits of both signs, so the learned decisions keep some of everything
    for (const p of policy.parameters()) p.assign(randn([p.size], RUN_SEED + p.size, 0.5));
    const ds = data.shapes({ split: 'test', size: 32, length: 96, seed: RUN_SEED % 1000, numClasses: 4 });
    for (const knob of [{}, { keepRatio: 0.5 }]) {
      const m = matchedRandom(model, policy, ds, { batchSize: 32, ...knob });
      const { random, learned } = m;
      const { imagesPerSec: _a, ...same } = learned;
      const { imagesPerSec: _b, ...again } = evaluate(model, policy, ds, { batchSize: 32, ...knob });
      expect(same).toEqual(again); // the learned policy's result, with the same knobs
      expect(random.head).toBe(learned.kept!.head);
      expect(random.block).toBe(learned.kept!.block);
      expect(random.patch).toBeGreaterThanOrEqual(0);
      expect(random.patch).toBeLessThanOrEqual(1);
      const r = evaluate(model, policy, ds, { batchSize: 32, random });
      expect(r.macs).toBe(m.randomMacs); // the probe is the whole set here
      if (m.matched) {
        // 12 bisection steps on these 96 images: measured within 0.2 % (6 seeds, both knobs)
        expect(Math.abs(r.macs - learned.macs) / learned.macs, JSON.stringify(knob)).toBeLessThan(0.02);
      } else {
        // out of reach of the patch rate (seed 140201: learned heads run with the attention sub-layer,
        // random ones independently): the rate stops at an end, on the side that comes closest
        expect(Math.abs(r.macs - learned.macs) / learned.macs).toBeGreaterThan(0.02);
        expect(random.patch < 0.001 || random.patch > 0.999, String(random.patch)).toBe(true);
        expect(random.patch > 0.5).toBe(r.macs < learned.macs);
      }
    }
    const x = tensor(ds.getBatch([0, 1]).images, [2, 3, 32, 32]);
    expect(() => adavitInfer(policy, x, { random: { patch: 0.5, head: 1, block: 1 }, keepRatio: 0.5 })).toThrow(/keepRatio does not apply to random decisions/);
    expect(() => matchedRandom(model, null as never, ds)).toThrow(/matchedRandom: policy must be an AdaViT policy/);
    expect(() => matchedRandom(model, policy, ds, { probeImages: 0 })).toThrow(/probeImages must be ≥ 1/);
    for (const z of [x, policy, model]) z.dispose();
  });
});

describe('Trainer options', () => {
  it('every bad option is an ArgumentError at construction, naming it', () => {
    const model = vit.create({ imgSize: 16, patchSize: 8, inChans: 3, embedDim: 8, depth: 2, numHeads: 2, numClasses: 3 });
    const other = vit.create({ imgSize: 16, patchSize: 8, inChans: 3, embedDim: 8, depth: 2, numHeads: 2, numClasses: 3 });
    const foreign = policies.adavit(other);
    const wide = vit.create({ imgSize: 16, patchSize: 8, inChans: 3, embedDim: 8, depth: 1, numHeads: 2, numClasses: 5 });
    const small = vit.create({ imgSize: 8, patchSize: 8, inChans: 3, embedDim: 8, depth: 1, numHeads: 2, numClasses: 3 });
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ model: {} }, /model must be a VisionTransformer/],
      [{ policy: {} }, /policy must be an AdaViT policy/],
      [{ policy: foreign }, /policy was made for another model/],
      [{ optimizer: { lr: Number.NaN } }, /optimizer.lr must be a number/],
      [{ optimizer: { lr: -1 } }, /optimizer.lr must be finite and ≥ 0/],
      [{ optimizer: 'adam' }, /options must be an object/],
      [{ warmupEpochs: -1 }, /warmupEpochs must be finite and ≥ 0/],
      [{ minLr: Infinity }, /minLr must be finite/],
      [{ clipGrad: 'x' }, /clipGrad must be a number/],
      [{ labelSmoothing: 1 }, /labelSmoothing must be in \[0, 1\)/],
      [{ freezeBackbone: 'yes' }, /freezeBackbone must be a boolean/],
      [{ seed: -1 }, /seed must be ≥ 0/],
      [{ log: 'loud' }, /log must be 'auto', 'bar', 'lines' or 'silent'/],
      [{ outDir: 3 }, /outDir must be a path/],
      [{ distill: { teacher: 1 } }, /distill.teacher must be a VisionTransformer/],
      [{ distill: { teacher: other, tau: 0 } }, /distill.tau must be finite and > 0/],
      [{ distill: { teacher: model } }, /distill.teacher is the model being trained/],
      [{ distill: { teacher: wide } }, /distill.teacher's numClasses is 5, the model's 3/],
      [{ distill: { teacher: small } }, /distill.teacher's imgSize is 8, the model's 16/],
    ];
    for (const [o, msg] of cases) {
      expect(() => new Trainer({ model, ...o } as never), JSON.stringify(o)).toThrow(ArgumentError);
      expect(() => new Trainer({ model, ...o } as never), JSON.stringify(o)).toThrow(msg);
    }
    const own = policies.adavit(model);
    expect(new Trainer({ model, policy: own, log: 'silent', optimizer: { lr: 1e-3 }, warmupEpochs: 0.5 })).toBeInstanceOf(Trainer);
    for (const m of [own, foreign, model, other, wide, small]) m.dispose();
  });
});

describe('Trainer.dispose', () => {
  it('frees the optimizer moments (and only them); a disposed Trainer refuses to train, save or resume', async () => {
    const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, numClasses: 5 };
    const model = vit.create(cfg, { seed: RUN_SEED % 1000 });
    const policy = policies.adavit(model);
    const n = model.parameters().length + policy.parameters().length;
    const live = memory()[0].liveTensors;
    const tr = new Trainer({ model, policy, log: 'silent', optimizer: { lr: 1e-3 } });
    tr.trainStep(randn([4, 3, 16, 16], RUN_SEED), randint([4], RUN_SEED + 1, 5), [3, 16, 16]);
    expect(memory()[0].liveTensors).toBe(live + 2 * n); // m and v of every parameter
    tr.dispose();
    tr.dispose();
    expect(tr.isDisposed).toBe(true);
    expect(memory()[0].liveTensors).toBe(live);
    expect(model.head.weight.isDisposed).toBe(false);
    expect(() => tr.trainStep(randn([4, 3, 16, 16], 1), randint([4], 2, 5), [3, 16, 16])).toThrow(DisposedError);
    expect(() => tr.trainStep(randn([4, 3, 16, 16], 1), randint([4], 2, 5), [3, 16, 16])).toThrow(/Trainer.trainStep: this Trainer was disposed/);
    await expect(tr.fit(data.shapes({ length: 8, size: 16, numClasses: 5 }), { epochs: 1, batchSize: 4 })).rejects.toThrow(DisposedError);
    await expect(tr.save(mkdtempSync(join(tmpdir(), 'vitrim-train-')))).rejects.toThrow(DisposedError);
    await expect(tr.resume(mkdtempSync(join(tmpdir(), 'vitrim-train-')))).rejects.toThrow(DisposedError);
    // the model still works and can be trained by a new Trainer
    const again = new Trainer({ model, log: 'silent' });
    expect(Number.isFinite(again.trainStep(randn([4, 3, 16, 16], 3), randint([4], 4, 5), [3, 16, 16]).loss)).toBe(true);
    again.dispose();
    policy.dispose();
    model.dispose();
  });
});

describe('Trainer distillation', () => {
  // loss = CE(student, y) + alpha · τ² · KL(softmax(teacher/τ) ‖ softmax(student/τ)) / B, from the
  // logits of the two models before the step, recomputed here in float64
  const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, numClasses: 5 };
  const B = 6;
  // A fresh head's logits are within ±0.1 (near-uniform softmax: KL ≈ 1e-3, lost beside CE ≈ 1.6);
  // a head scaled ×k spreads them over a few units, so the KL term is of CE's order.
  const spread = (m: ReturnType<typeof vit.create>, k = 40) => {
    for (const p of [m.head.weight, m.head.bias!]) p.assign(Float32Array.from(p.dataSync() as Float32Array, (v) => v * k));
  };
  const logSoftmax = (row: number[]): number[] => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    return row.map((v) => v - lse);
  };
  const reference = (s: Float32Array, t: Float32Array, y: Int32Array, alpha: number, tau: number): number => {
    const C = cfg.numClasses;
    let ce = 0, kl = 0;
    for (let b = 0; b < B; b++) {
      const sr = Array.from(s.subarray(b * C, (b + 1) * C));
      const tr = Array.from(t.subarray(b * C, (b + 1) * C));
      ce -= logSoftmax(sr)[y[b]];
      const ls = logSoftmax(sr.map((v) => v / tau)), lt = logSoftmax(tr.map((v) => v / tau));
      for (let c = 0; c < C; c++) kl += Math.exp(lt[c]) * (lt[c] - ls[c]);
    }
    return ce / B + (alpha * tau * tau * kl) / B;
  };
  for (const [alpha, tau] of [[0.7, 2], [0.5, 1], [0, 3]] as const) {
    it(`the step's loss is CE + alpha·τ²·KL(teacher ‖ student) (alpha ${alpha}, τ ${tau}); the teacher is not trained`, () => {
      const seed = RUN_SEED + tau;
      // The teacher is the student with its head negated: its logits are the student's, negated, so
      // the two disagree on every image (two random models may agree on a saturated class, and then
      // KL is lost beside CE: seed 80808 at ×40, 0.06 % of CE).
      const student = vit.create(cfg, { seed: seed % 1000 });
      const teacher = vit.create(cfg, { seed: seed % 1000 });
      spread(student, 10);
      spread(teacher, -10);
      const images = randn([B, 3, 16, 16], seed);
      const labels = randint([B], seed + 1, cfg.numClasses);
      const x = tensor(images, [B, 3, 16, 16]);
      const [s, t] = noGrad(() => [student.forward(x), teacher.forward(x)]);
      const want = reference(s.dataSync() as Float32Array, t.dataSync() as Float32Array, labels, alpha, tau);
      const teacherBefore = teacher.parameters().map((p) => Float32Array.from(p.dataSync()));
      const studentBefore = Float32Array.from(student.head.weight.dataSync());
      const tr = new Trainer({ model: student, distill: { teacher, alpha, tau }, optimizer: { lr: 1e-3 }, log: 'silent' });
      const r = tr.trainStep(images, labels, [3, 16, 16]);
      const ce = reference(s.dataSync() as Float32Array, t.dataSync() as Float32Array, labels, 0, tau);
      // the KL term is far above the check's tolerance (so a wrong KL would show): 6-120 % of CE in 16 seeds
      if (alpha > 0) expect(want - ce).toBeGreaterThan(1e-3 * ce);
      expect(Math.abs(r.loss - want) / Math.abs(want)).toBeLessThan(1e-5);
      teacher.parameters().forEach((p, i) => expect(Array.from(p.dataSync())).toEqual(Array.from(teacherBefore[i])));
      expect(Array.from(student.head.weight.dataSync())).not.toEqual(Array.from(studentBefore));
      for (const z of [x, s, t, student, teacher]) z.dispose();
    });
  }
  it('the distillation term moves the student toward the teacher', () => {
    // Two copies of one student, 20 steps each on one batch: with alpha large the student ends far
    // closer to the teacher (in KL(teacher ‖ student)) than with CE alone (a tenth of it).
    const seed = RUN_SEED + 17;
    const teacher = vit.create(cfg, { seed: (seed % 1000) + 1 });
    spread(teacher);
    const images = randn([B, 3, 16, 16], seed);
    const labels = randint([B], seed + 1, cfg.numClasses);
    const x = tensor(images, [B, 3, 16, 16]);
    const klAfter = (alpha: number): number => {
      const student = vit.create(cfg, { seed: seed % 1000 });
      spread(student);
      const tr = new Trainer({ model: student, distill: { teacher, alpha }, optimizer: { lr: 3e-3, weightDecay: 0 }, log: 'silent' });
      for (let i = 0; i < 20; i++) tr.trainStep(images, labels, [3, 16, 16]);
      const [s, t] = noGrad(() => [student.forward(x), teacher.forward(x)]);
      const sv = s.dataSync() as Float32Array, tv = t.dataSync() as Float32Array;
      const v = reference(sv, tv, labels, 1, 1) - reference(sv, tv, labels, 0, 1);
      for (const z of [s, t, student]) z.dispose();
      return v;
    };
    const ceOnly = klAfter(0), distilled = klAfter(50);
    expect(distilled).toBeLessThan(0.1 * ceOnly); // measured 0.003-0.011 over 10 seeds
    for (const z of [x, teacher]) z.dispose();
  });
});
