/**
 * AdaViT inference, dense vs adaptive, on the CPU: images/s at batch 64 and batch 1 on Fashion-MNIST
 * test images (decisions depend on the content), both measured in this process, plus the MACs per
 * image actually executed. Needs a trained run directory (model.safetensors + policy.safetensors):
 * VITRIM_ADAVIT_RUN (default runs/fmnist-ada, produced by scripts/fmnist-experiment.sh);
 * VITRIM_ADAVIT_THRESHOLD sets the decision threshold (the budget knob; default the policy's).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { adavitInfer, data, noGrad, policies, tensor, tidy, vit } from '../lib/index.js';
import { readCheckpoint } from '../lib/io/checkpoint.js';
import type { BenchOptions, Row } from './run.js';
import { median } from './stats.js';


export async function run(opts: BenchOptions): Promise<Row[]> {
  const dir = process.env.VITRIM_ADAVIT_RUN ?? 'runs/fmnist-ada';
  if (!existsSync(join(dir, 'policy.safetensors'))) {
    return [{ name: 'AdaViT inference', shape: '-', value: 0, unit: 'img/s', note: `no trained run at ${dir} (run scripts/fmnist-experiment.sh)` }];
  }
  const m = await vit.fromFile(join(dir, 'model.safetensors'));
  const { state, metadata } = await readCheckpoint(join(dir, 'policy.safetensors'));
  const p = policies.adavit(m, JSON.parse(metadata['vitrim.policy.config'] ?? '{}'));
  p.loadStateDict(state);
  m.eval();
  const test = data.fashionMnist({ split: 'test' });
  const rows: Row[] = [];
  const threshold = process.env.VITRIM_ADAVIT_THRESHOLD ? Number(process.env.VITRIM_ADAVIT_THRESHOLD) : undefined;
  for (const B of [64, 1]) {
    const nBatches = opts.quick ? 4 : B === 1 ? 200 : 40;
    const xs = Array.from({ length: nBatches }, (_, k) => {
      const b = test.getBatch(Array.from({ length: B }, (_, i) => (k * B + i) % test.length));
      return tensor(b.images, [B, ...test.imageShape]);
    });
    // Interleave dense and adaptive passes so both see the same machine state; take medians.
    const dense: number[] = [];
    const ada: number[] = [];
    let macs = 0;
    for (let rep = 0; rep < 3; rep++) {
      let t0 = performance.now();
      for (const x of xs) noGrad(() => tidy(() => { m.forward(x).dataSync(); }));
      dense.push((performance.now() - t0) / (nBatches * B));
      t0 = performance.now();
      macs = 0;
      for (const x of xs) noGrad(() => tidy(() => { const r = adavitInfer(p, x, { threshold }); r.logits.dataSync(); macs += r.macs; r.logits.dispose(); }));
      ada.push((performance.now() - t0) / (nBatches * B));
    }
    const d = 1000 / median(dense);
    const a = 1000 / median(ada);
    const denseMacs = m.config && (await import('../lib/infer/flops.js')).denseMacs(m.config);
    rows.push({
      name: 'AdaViT vs dense inference (cpu, fp32, Fashion-MNIST test images)', shape: `batch ${B}`, value: a, unit: 'img/s',
      compare: { name: 'same ViT, dense', value: d }, ratio: a / d,
      note: `θ ${threshold ?? p.threshold}; adaptive MACs ${(100 * (macs / nBatches) / denseMacs).toFixed(1)} % of dense; ${nBatches} batches × 3 rounds`,
    });
    for (const x of xs) x.dispose();
  }
  m.dispose();
  return rows;
}
