/**
 * What a batch-1 inference plan of DeiT-S launches: the recorded graph's kernel and node counts,
 * float32 and bfloat16 (weights snapshot / live). Runs wherever the cuda backend loads, the CPU emulation included (the op
 * sequence, hence the count, is the GPU's; cuBLASLt counts one kernel per GEMM there).
 * Usage: npx tsx scripts/graph-census.ts [model name, default deit_small_patch16_224]
 */
import { vit } from '../lib/index.js';
import { createInferencePlan } from '../lib/infer/plan.js';

const name = process.argv[2] ?? 'deit_small_patch16_224';
const model = vit.create(name, { seed: 1 });
model.eval();
model.to('cuda');
const cfg = model.config;
for (const [precision, weights] of [['float32', 'live'], ['bfloat16', 'snapshot'], ['bfloat16', 'live']] as const) {
  const plan = createInferencePlan(model, [cfg.inChans, cfg.imgSize, cfg.imgSize], { batch: 1, precision, weights });
  const { nodes, kernels } = plan.graphStats;
  const what = precision === 'bfloat16' ? `${precision} (weights: ${weights})` : precision;
  console.log(`${name} batch 1 ${what}: ${kernels} kernels, ${nodes} nodes (${(kernels / cfg.depth).toFixed(1)} per block over ${cfg.depth} blocks)`);
  plan.dispose();
}
