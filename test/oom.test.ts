// Out of memory at every allocation of the library's entry points, on the CPU: a typed error
// (ERR_VITRIM_MEMORY), nothing the call made left allocated (its tensors, the native temporaries of an
// op or a backward node that failed midway, the graph's saved activations), and the next call gives
// the same answer as before the failure. The failures are injected (native.allocFaults('cpu', k): the
// k-th CPU allocation from then on and all later ones fail), so that each case fails at each of its
// allocations in turn: a memory limit only ever fails the allocations that set a new peak, which
// leaves most of a backward pass untested (test/cuda/oom.test.ts runs the emulated device by size).
import { afterEach, expect, it } from 'vitest';
import { adavitInfer, data, evaluate, memory, noGrad, ops, policies, tensor, Trainer, vit, type EvalResult, type Tensor } from '../lib/index.js';
import { MemoryError } from '../lib/errors.js';
import { native } from '../lib/native.js';
import { RUN_SEED, randn } from './helpers.js';
import { eachAllocFailing, eachCaseAllocFailing, readAndDispose, stepValues } from './oom-helpers.js';

const live = () => memory().find((d) => d.device === 'cpu')!.liveTensors;

afterEach(() => {
  native.allocFaults('cpu', 0);
});

it('every allocation of every entry point can fail: typed, nothing left allocated, the next call unchanged', async () => {
  const m = vit.create({ imgSize: 16, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, numClasses: 3 }, { seed: RUN_SEED % 1000 });
  const p = policies.adavit(m, {});
  const B = 4;
  const xd = randn([B * 3 * 16 * 16], RUN_SEED + 91);
  const x = tensor(xd, [B, 3, 16, 16]);
  const yd = Int32Array.from({ length: B }, (_, i) => i % 3);
  const y = tensor(yd, [B]);
  const read = readAndDispose;
  const step = (loss: () => Tensor) => stepValues([...m.parameters(), ...p.parameters()], loss);
  const ds = data.shapes({ split: 'test', size: 16, length: 5, numClasses: 3, seed: RUN_SEED % 1000 });
  const figures = (r: EvalResult) => [r.accuracy, r.loss, r.count, r.macs, r.kept?.patch ?? -1, r.kept?.head ?? -1, r.kept?.block ?? -1];
  const cases: [string, () => number[]][] = [
    ['forward (no grad)', () => read(noGrad(() => m.forward(x)))],
    ['forward + backward', () => step(() => ops.crossEntropy(m.forward(x), y, { labelSmoothing: 0.1 }))],
    ['policy forwardTrain + loss + backward', () => step(() => p.loss(p.forwardTrain(x), y).total)],
    ['adavitInfer', () => read(adavitInfer(p, x).logits)],
    ['adavitInfer keepRatio', () => read(adavitInfer(p, x, { keepRatio: 0.5, record: true }).logits)],
    ['adavitInfer random', () => read(adavitInfer(p, x, { random: { patch: 0.5, head: 0.5, block: 0.7, seed: 3 } }).logits)],
    ['evaluate (dense)', () => figures(evaluate(m, null, ds, { batchSize: 3 }))],
    ['evaluate (policy, keepRatio)', () => figures(evaluate(m, p, ds, { batchSize: 3, keepRatio: 0.5 }))],
  ];
  const points = await eachCaseAllocFailing(cases, live);
  expect(points).toBeGreaterThan(100);
});

it("a Trainer step that fails at any allocation leaves nothing allocated and zero gradients; the next step runs", async () => {
  const m = vit.create({ imgSize: 16, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, numClasses: 3 }, { seed: RUN_SEED % 1000 });
  const p = policies.adavit(m, {});
  const tr = new Trainer({ model: m, policy: p, optimizer: { lr: 1e-3 }, clipGrad: 1 });
  const B = 4;
  const img = randn([B * 3 * 16 * 16], RUN_SEED + 92);
  const lab = Int32Array.from({ length: B }, (_, i) => (i * 2) % 3);
  tr.trainStep(img, lab, [3, 16, 16]); // the optimizer's moments exist from here on
  const before = live();
  await eachAllocFailing(() => tr.trainStep(img, lab, [3, 16, 16]), {
    plain: () => expect(live()).toBe(before),
    failed: (err, at) => {
      const what = `trainStep ${at}`;
      expect(err, `${what}: ${String(err)}`).toBeInstanceOf(MemoryError);
      expect(live(), what).toBe(before);
      for (const q of [...m.parameters(), ...p.parameters()]) if (q.grad) expect(Array.from(q.grad.dataSync()).every((v) => v === 0), what).toBe(true);
    },
  });
  const r = tr.trainStep(img, lab, [3, 16, 16]);
  expect(Number.isFinite(r.loss)).toBe(true);
  expect(live()).toBe(before);
  tr.dispose();
});

it('Trainer.fit with distillation and evaluation, failing at any allocation: typed, and nothing left once the trainer is disposed', async () => {
  const m = vit.create({ imgSize: 16, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, numClasses: 3 }, { seed: RUN_SEED % 1000 });
  const teacher = vit.create({ imgSize: 16, patchSize: 8, embedDim: 32, depth: 1, numHeads: 2, numClasses: 3 }, { seed: RUN_SEED % 1000 + 1 });
  const p = policies.adavit(m, {});
  const train = data.shapes({ split: 'train', size: 16, length: 6, numClasses: 3, seed: RUN_SEED % 1000 });
  const test = data.shapes({ split: 'test', size: 16, length: 3, numClasses: 3, seed: RUN_SEED % 1000 });
  const fit = async () => {
    const tr = new Trainer({ model: m, policy: p, optimizer: { lr: 1e-4 }, clipGrad: 1, distill: { teacher, alpha: 0.5, tau: 2 }, log: 'silent' });
    try {
      return await tr.fit(train, { epochs: 1, batchSize: 3, eval: test });
    } finally {
      tr.dispose();
    }
  };
  const before = live();
  await eachAllocFailing(fit, {
    plain: (_, allocs) => {
      expect(live()).toBe(before);
      expect(allocs).toBeGreaterThan(100);
    },
    failed: (err, at) => {
      const what = `fit ${at}`;
      expect(err, `${what}: ${String(err)}`).toBeInstanceOf(MemoryError);
      expect(live(), what).toBe(before);
    },
  });
  expect((await fit())[0].eval?.count).toBe(3);
  expect(live()).toBe(before);
});

it('tracking scopes: freed on a throw only, nested, and a handle the GC finalises inside one is skipped', async () => {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc0 = runInNewContext('gc') as () => void;
  // finalisers may be deferred to the event loop: give them a turn (a scope stays open across it)
  const gc = async () => {
    for (let i = 0; i < 3; i++) {
      gc0();
      await new Promise((r) => setImmediate(r));
    }
  };
  await gc(); // what earlier tests dropped
  const x = native.fromArray(Float32Array.from(randn([64], RUN_SEED + 93)), [64], 'float32');
  const before = live();
  const outer = native.trackBegin();
  const kept = native.affine(x, 2, 1);
  const inner = native.trackBegin();
  for (let i = 0; i < 2000; i++) native.affine(x, 1, i); // dropped: the GC may finalise them inside the scope
  await gc();
  expect(live(), 'the dropped handles were finalised inside the scope').toBeLessThan(before + 1000);
  const made = native.unary('exp', x);
  expect(() => native.trackEnd(outer, true)).toThrow(/not the innermost/);
  native.trackEnd(inner, true);
  expect(made.freed).toBe(true);
  expect(kept.freed).toBe(false);
  native.trackEnd(outer, false);
  expect(kept.freed).toBe(false);
  expect(Array.from(kept.read() as Float32Array)).toEqual(Array.from(x.read() as Float32Array, (v) => Math.fround(2 * v + 1)));
  kept.free();
  await gc();
  expect(live()).toBe(before);
  x.free();
});
