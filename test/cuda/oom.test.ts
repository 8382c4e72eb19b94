// Out of device memory at any point of the library's entry points: a typed error (ERR_VITRIM_MEMORY),
// nothing the call made left allocated (its tensors, native temporaries and the graph's saved
// activations are freed at once, not left for the GC, which does not see device memory), and the
// next call gives the same answer as before the failure. The emulated device takes a size
// (VITRIM_EMU_DEVICE_MB, counting what is allocated while it is set; a GPU ignores it: emulation
// only); each entry point runs on a range of sizes, so that it fails at several places (a training
// step's also in its backward), and the allocator's cache is emptied first so that every block is a
// fresh allocation. A size only ever fails the allocations that set a new peak: the second test fails
// each device allocation in turn (native.allocFaults('cuda', k); on a GPU too), in float32 and under
// bf16 autocast, whose casts and bf16 paths exist on cuda only.
import { expect, it } from 'vitest';
import { withEnv } from '../../bench/env.js';
import { adavitInfer, autocast, createInferencePlan, emptyCache, memory, noGrad, ops, policies, tensor, Trainer, vit, type Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { MemoryError } from '../../lib/errors.js';
import { RUN_SEED, expectCode, randn } from '../helpers.js';
import { eachAllocFailing, eachCaseAllocFailing, readAndDispose, stepValues } from '../oom-helpers.js';
import { describeCuda, emulated } from './helpers.js';

describeCuda('cuda: out of memory', () => {
  it.skipIf(!emulated)('every entry point fails typed, frees what it made, and runs again unchanged', () => {
    const m = vit.create({ imgSize: 32, patchSize: 8, embedDim: 64, depth: 3, numHeads: 2, numClasses: 3 }, { seed: RUN_SEED % 1000 });
    m.to('cuda');
    const p = policies.adavit(m, {});
    p.to('cuda');
    const B = 8;
    const x = tensor(randn([B * 3 * 32 * 32], RUN_SEED + 91), [B, 3, 32, 32], { device: 'cuda' });
    const y = tensor(Int32Array.from({ length: B }, (_, i) => i % 3), [B], { device: 'cuda' });
    const live = () => memory().find((d) => d.device === 'cuda')!.liveTensors;
    const read = readAndDispose;
    const step = (loss: () => Tensor) => stepValues([...m.parameters(), ...p.parameters()], loss);
    // the step cases also run on devices that last until their backward (measured: the dense step's
    // backward runs out between 1.85 and 2.5 MiB, the policy's between 2.3 and 3 MiB), where its
    // first allocations fail (a size only fails those that set a new peak; a node failing midway
    // through its own allocations is test/oom.test.ts's, on the CPU)
    const inBackward = [2000, 2400, 2700];
    const cases: [string, () => number[], number[]?][] = [
      ['forward (no grad)', () => read(noGrad(() => m.forward(x)))],
      ['forward + backward', () => step(() => ops.crossEntropy(m.forward(x), y)), inBackward],
      ['policy forwardTrain + loss + backward', () => step(() => p.loss(p.forwardTrain(x), y).total), inBackward],
      ['adavitInfer', () => read(adavitInfer(p, x).logits)],
      ['adavitInfer keepRatio', () => read(adavitInfer(p, x, { keepRatio: 0.5, record: true }).logits)],
      ['adavitInfer random', () => read(adavitInfer(p, x, { random: { patch: 0.5, head: 0.5, block: 0.7, seed: 3 } }).logits)],
      ['inference plan', () => {
        const plan = createInferencePlan(m, [3, 32, 32], { batch: B });
        try {
          return Array.from(plan.run(x).dataSync());
        } finally {
          plan.dispose();
        }
      }],
    ];
    for (const [name, run, more = []] of cases) {
      const want = run();
      let failed = 0;
      let inBackwardFailed = 0;
      for (const kib of [64, 256, 550, 1000, ...more]) {
        emptyCache();
        const before = live();
        const what = `${name} on a ${kib} KiB device`;
        let got: number[] | undefined;
        withEnv('VITRIM_EMU_DEVICE_MB', String(kib / 1024), () => {
          try {
            got = run();
          } catch (e) {
            expect(e, `${what}: ${String(e)}`).toBeInstanceOf(MemoryError);
            failed++;
            if (/^backward/.test((e as Error).message)) inBackwardFailed++;
          }
        });
        expect(live(), what).toBe(before);
        if (got) expect(got, what).toEqual(want);
        else expect(run(), `${what}: the next call`).toEqual(want);
      }
      expect(failed, `${name}: failed on some of the sizes`).toBeGreaterThan(0);
      if (more.length) expect(inBackwardFailed, `${name}: failed in backward on some of the sizes`).toBeGreaterThan(0);
    }
    expectCode(() => withEnv('VITRIM_EMU_DEVICE_MB', '0.01', () => adavitInfer(p, x)), 'ERR_VITRIM_MEMORY');
  });

  it('every device allocation of every entry point can fail, float32 and bf16 autocast: typed, nothing left, the next call unchanged', async () => {
    const m = vit.create({ imgSize: 16, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, numClasses: 3 }, { seed: RUN_SEED % 1000 });
    m.to('cuda');
    const p = policies.adavit(m, {});
    p.to('cuda');
    const B = 4;
    const x = tensor(randn([B * 3 * 16 * 16], RUN_SEED + 93), [B, 3, 16, 16], { device: 'cuda' });
    const y = tensor(Int32Array.from({ length: B }, (_, i) => i % 3), [B], { device: 'cuda' });
    const live = () => memory().find((d) => d.device === 'cuda')!.liveTensors;
    const read = readAndDispose;
    const step = (loss: () => Tensor) => stepValues([...m.parameters(), ...p.parameters()], loss);
    const bf16 = <R>(fn: () => R) => () => autocast('bfloat16', fn);
    const cases: [string, () => number[]][] = [
      ['forward + backward', () => step(() => ops.crossEntropy(m.forward(x), y, { labelSmoothing: 0.1 }))],
      ['bf16: forward (no grad)', bf16(() => read(noGrad(() => m.forward(x))))],
      ['bf16: forward + backward', bf16(() => step(() => ops.crossEntropy(m.forward(x), y)))],
      ['bf16: policy forwardTrain + loss + backward', bf16(() => step(() => p.loss(p.forwardTrain(x), y).total))],
      ['bf16: adavitInfer keepRatio', bf16(() => read(adavitInfer(p, x, { keepRatio: 0.5 }).logits))],
    ];
    try {
      const points = await eachCaseAllocFailing(cases, live, 'cuda', (err, what) => expect(String(err), what).toContain('injected'));
      expect(points).toBeGreaterThan(100);

      // A bf16 Trainer step: fails typed at each allocation, leaves zero gradients and nothing
      // allocated, and the next step runs.
      const tr = new Trainer({ model: m, policy: p, optimizer: { lr: 1e-3 }, clipGrad: 1, precision: 'bfloat16' });
      const img = randn([B * 3 * 16 * 16], RUN_SEED + 94);
      const lab = Int32Array.from({ length: B }, (_, i) => (i * 2) % 3);
      tr.trainStep(img, lab, [3, 16, 16]); // the optimizer's moments exist from here on
      const before = live();
      await eachAllocFailing(() => tr.trainStep(img, lab, [3, 16, 16]), {
        plain: () => expect(live()).toBe(before),
        failed: (err, at) => {
          const what = `bf16 trainStep ${at}`;
          expect(err, `${what}: ${String(err)}`).toBeInstanceOf(MemoryError);
          expect(live(), what).toBe(before);
          for (const q of [...m.parameters(), ...p.parameters()])
            if (q.grad) expect(Array.from(q.grad.dataSync()).every((v) => v === 0), what).toBe(true);
        },
      }, 'cuda');
      expect(Number.isFinite(tr.trainStep(img, lab, [3, 16, 16]).loss)).toBe(true);
      expect(live()).toBe(before);
      tr.dispose();
    } finally {
      native.allocFaults('cuda', 0);
    }
  });
});
