// Inference plans: a model's whole forward recorded as a CUDA graph and replayed on new inputs gives
// the same logits as the eager forward on the CPU; the plan refuses a model that moved off cuda; a
// bfloat16 plan with snapshot weights gives eager autocast's bits with fewer launches and follows
// weight changes after refreshWeights() (a live one at once).
import { expect, it } from 'vitest';
import { autocast, cast, noGrad, tensor, tidy, vit, type Tensor } from '../../lib/index.js';
import { withCastCache } from '../../lib/autocast.js';
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
      // Each block launches at least its two LayerNorms, four GEMMs and the attention kernel.
      const { nodes, kernels } = plan.graphStats;
      expect(kernels).toBeGreaterThanOrEqual(7 * cfg.depth);
      expect(nodes).toBeGreaterThanOrEqual(kernels);
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

  it('bfloat16: snapshot weights give the eager autocast bits with one cast per weight fewer, refreshed on demand', () => {
    const model = vit.create(cfg, { seed: 11 });
    model.eval();
    model.to('cuda');
    const eager = (data: Float32Array) =>
      tidy(() => noGrad(() => autocast('bfloat16', () => model.forward(tensor(data, [1, 3, 32, 32], { device: 'cuda' }))).values()));
    const snap = createInferencePlan(model, [3, 32, 32], { precision: 'bfloat16' });
    const live = createInferencePlan(model, [3, 32, 32], { precision: 'bfloat16', weights: 'live' });
    try {
      // The casts the snapshot saves: one per float32 tensor a lowered op reads (counted by the cache).
      const cache = new Map<Tensor, Tensor>();
      for (const p of model.parameters()) cache.set(p, cast(p, 'bfloat16'));
      const { hits } = tidy(() => noGrad(() => autocast('bfloat16', () =>
        withCastCache(cache, () => model.forward(tensor(randn([1, 3, 32, 32], RUN_SEED), [1, 3, 32, 32], { device: 'cuda' }))))));
      for (const c of cache.values()) c.dispose();
      // every block's four Linear weights and the qkv and fc1 biases (proj and fc2 add a float32
      // residual: their float32 bias goes to the GEMM as it is)
      expect(hits).toBeGreaterThanOrEqual(6 * cfg.depth);
      expect(live.graphStats.kernels - snap.graphStats.kernels).toBe(hits);
      // The snapshot holds copies of just those parameters, not of LayerNorm's or the tokens'.
      expect(snap.weightCopies).toBe(hits);
      expect(snap.weightCopies).toBeLessThan(model.parameters().length);
      expect(live.weightCopies).toBe(0);

      const data = randn([1, 3, 32, 32], RUN_SEED + 7);
      const before = eager(data);
      expect(Array.from(snap.run(data).values())).toEqual(Array.from(before));
      expect(Array.from(live.run(data).values())).toEqual(Array.from(before));
      // Change a weight in place: the live plan sees it, the snapshot after refreshWeights().
      const w = model.parameters().find((p) => p.shape.length === 2)!;
      w.handle.write(randn([...w.shape], RUN_SEED + 8, 0.2));
      const after = eager(data);
      expect(Array.from(after)).not.toEqual(Array.from(before));
      expect(Array.from(live.run(data).values())).toEqual(Array.from(after));
      expect(Array.from(snap.run(data).values())).toEqual(Array.from(before));
      snap.refreshWeights();
      expect(Array.from(snap.run(data).values())).toEqual(Array.from(after));
    } finally {
      snap.dispose();
      live.dispose();
    }
    expect(() => snap.refreshWeights()).toThrow(/after dispose/);
    expect(() => createInferencePlan(model, [3, 32, 32], { precision: 'bfloat16', weights: 'frozen' as 'live' })).toThrow(/weights must be/);
  });

  it('takes its input as host data or as a tensor on either device, in any float dtype', () => {
    const model = vit.create(cfg, { seed: RUN_SEED % 997 });
    model.eval();
    model.to('cuda');
    const plan = createInferencePlan(model, [3, 32, 32], { batch: 2 });
    try {
      const data = randn([2, 3, 32, 32], RUN_SEED + 50);
      const want = Array.from(plan.run(data).values());
      const onCuda = tensor(data, [2, 3, 32, 32], { device: 'cuda' });
      const onCpu = tensor(data, [2, 3, 32, 32]);
      plan.run(randn([2, 3, 32, 32], RUN_SEED + 51)); // other logits in between
      expect(Array.from(plan.run(onCuda).values())).toEqual(want); // copied on the device
      plan.run(randn([2, 3, 32, 32], RUN_SEED + 52));
      expect(Array.from(plan.run(onCpu).values())).toEqual(want);
      // a bfloat16 input goes in as its float32 values
      const half = cast(onCuda, 'bfloat16');
      const rounded = half.values();
      expect(Array.from(plan.run(half).values())).toEqual(Array.from(plan.run(rounded).values()));
      expect(() => plan.run(tensor(data, [1, 6, 32, 32], { device: 'cuda' }))).toThrow(/input must have shape/);
      onCuda.dispose();
      expect(() => plan.run(onCuda)).toThrow(/disposed/);
      onCpu.dispose();
      half.dispose();
    } finally {
      plan.dispose();
    }
  });

  it('refuses to run once the model moved back to the cpu', () => {
    const model = vit.create(cfg, { seed: 3 });
    model.to('cuda');
    const plan = createInferencePlan(model, [3, 32, 32]);
    model.to('cpu');
    expect(() => plan.run(randn([1, 3, 32, 32], RUN_SEED))).toThrow(/moved off cuda/);
    plan.dispose();
  });
});
