// Inference plans: a model's whole forward recorded as a CUDA graph and replayed on new inputs gives
// the same logits as the eager forward on the CPU; the plan refuses a model that moved off cuda.
import { expect, it } from 'vitest';
import { noGrad, tensor, vit } from '../../lib/index.js';
import { createInferencePlan } from '../../lib/infer/plan.js';
import { RUN_SEED, randn } from '../helpers.js';
import { describeCuda, expectRel } from './helpers.js';

describeCuda('cuda inference plans', () => {
  const cfg = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 64, depth: 2, numHeads: 2, numClasses: 5 };

  for (const batch of [1, 3]) {
    it(`replays a ViT forward (batch ${batch}) and matches the CPU`, () => {
      const model = vit.create(cfg, { seed: RUN_SEED % 1000 });
      model.eval();
      const ref = vit.create(cfg, { seed: RUN_SEED % 1000 });
      ref.eval();
      model.to('cuda');
      const plan = createInferencePlan(model, [3, 32, 32], { batch });
      try {
        for (let i = 0; i < 3; i++) {
          const data = randn([batch, 3, 32, 32], RUN_SEED + 100 + i);
          const got = plan.run(data);
          const want = noGrad(() => ref.forward(tensor(data, [batch, 3, 32, 32])));
          expectRel(got.handle, want.handle, 1e-5, `replay ${i}`);
        }
      } finally {
        plan.dispose();
      }
    });
  }

  it('refuses to run once the model moved back to the cpu', () => {
    const model = vit.create(cfg, { seed: 3 });
    model.to('cuda');
    const plan = createInferencePlan(model, [3, 32, 32]);
    model.to('cpu');
    expect(() => plan.run(randn([1, 3, 32, 32], RUN_SEED))).toThrow(/moved off cuda/);
    plan.dispose();
  });
});
