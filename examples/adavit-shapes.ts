/**
 * AdaViT end to end with the library API, on the built-in procedural shapes (no download):
 *   1. train a dense ViT (Trainer.fit);
 *   2. attach an AdaViT policy and fine-tune backbone and gates toward a compute budget, distilling
 *      from a frozen copy of the dense model;
 *   3. compare on the test split: the dense model, AdaViT at its threshold, AdaViT with the budget
 *      knob (keepRatio, no retraining), and random decisions at the same cost (the control: what
 *      the learned decisions are worth);
 *   4. show what the gates decided for a few test images (kept patches as a map);
 *   5. load the run back from disk (vit.fromFile, policies.fromFile) and check it gives the same
 *      logits and decisions.
 *
 *   npx tsx examples/adavit-shapes.ts                                        # the README's main job, 2-5 min on 2 cores
 *   npx tsx examples/adavit-shapes.ts --epochs 1 --ada-epochs 1 --limit 20   # a quick look
 *   npx tsx examples/adavit-shapes.ts --device cuda --precision bfloat16
 *
 * Accuracy, MACs and throughput are those of `evaluate` (MACs counted from the decisions taken,
 * gate layers included; throughput is wall-clock on this machine, not a benchmark). The AdaViT rows
 * have had the dense model's 5 epochs plus 3 of their own. Measured with the defaults (2-core
 * AMD Zen 4, seed 0, 2026-11-24): dense 61.4 %; AdaViT 65.8 % at 52.3 % of the dense MACs;
 * keepRatio 0.25 28.8 % at 34.0 %; random decisions at 52.3 % of the MACs 46.2 %.
 */
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import {
  adavitInfer, data, evaluate, matchedRandom, noGrad, policies, resolveDevice, tensor, Trainer, vit,
  type EvalResult, type Precision,
} from '../lib/index.js';

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const opts = new Command('adavit-shapes')
  .option('--epochs <n>', 'dense training epochs', int('epochs', 1), 5)
  .option('--ada-epochs <n>', 'AdaViT fine-tuning epochs', int('ada-epochs', 1), 3)
  .option('--limit <n>', 'batches per epoch (quick runs; default: the whole 20000-image training split)', int('limit', 1))
  .option('--test-size <n>', 'test images', int('test-size', 1), 2000)
  .option('--batch-size <n>', 'batch size', int('batch-size', 1), 64)
  .option('--target <r>', 'AdaViT target usage of patches, heads and sub-layers', (v) => {
    const r = Number(v);
    if (!(r > 0 && r <= 1)) throw new InvalidArgumentError('target must be in (0, 1]');
    return r;
  }, 0.5)
  .option('--out <dir>', 'run directory (dense/ and adavit/ inside)', 'runs/example-adavit')
  .option('--device <d>', 'cpu | cuda | auto', 'cpu')
  .option('--precision <p>', 'float32 | bfloat16 (mixed precision on cuda; a no-op on the cpu)', 'float32')
  .option('--seed <n>', 'seed of the data order and the initialisation', int('seed', 0), 0)
  .parse()
  .opts<{ epochs: number; adaEpochs: number; limit?: number; testSize: number; batchSize: number; target: number; out: string;
    device: 'cpu' | 'cuda' | 'auto'; precision: string; seed: number }>();

// the CLI's shapes-vit preset: 64 patches of 4x4 pixels, 4 blocks of width 96
const config = { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 96, depth: 4, numHeads: 3, mlpRatio: 2, numClasses: 10 };

function line(name: string, r: EvalResult): string {
  const kept = r.kept
    ? `  kept: patches ${(100 * r.kept.patch).toFixed(0)} %, heads ${(100 * r.kept.head).toFixed(0)} %, sub-layers ${(100 * r.kept.block).toFixed(0)} %`
    : '';
  return `${name.padEnd(30)} accuracy ${(100 * r.accuracy).toFixed(1).padStart(5)} %   MACs ${((100 * r.macs) / r.denseMacs).toFixed(1).padStart(5)} % of dense   ${r.imagesPerSec.toFixed(0).padStart(6)} img/s${kept}`;
}

async function main(): Promise<void> {
  if (opts.precision !== 'float32' && opts.precision !== 'bfloat16') throw new InvalidArgumentError('--precision must be float32 or bfloat16');
  const precision = opts.precision as Precision;
  const device = resolveDevice(opts.device, 'cpu', '--device');
  const train = data.shapes({ split: 'train', size: 32, seed: opts.seed, length: 20000 });
  const test = data.shapes({ split: 'test', size: 32, seed: opts.seed, length: opts.testSize });
  const fit = { batchSize: opts.batchSize, limit: opts.limit, eval: test };
  const denseDir = join(opts.out, 'dense');
  const adaDir = join(opts.out, 'adavit');

  console.log(`1. dense ViT (${vit.parameterCount({ ...config, qkvBias: true, layerNormEps: 1e-6 }).toLocaleString('en')} parameters) on ${device}`);
  const model = vit.create(config, { seed: opts.seed });
  const dense = new Trainer({ model, device, precision, optimizer: { lr: 5e-4 }, outDir: denseDir, log: 'lines', seed: opts.seed });
  await dense.fit(train, { ...fit, epochs: opts.epochs });
  dense.dispose();

  console.log(`\n2. AdaViT: gates toward ${opts.target} usage, distilled from the frozen dense model`);
  const teacher = await vit.fromFile(denseDir); // a separate, frozen copy of the weights just trained
  const t = opts.target;
  const policy = policies.adavit(model, { targets: { patch: t, head: t, block: t }, seed: opts.seed });
  const ada = new Trainer({
    model, policy, device, precision, optimizer: { lr: 5e-4 }, outDir: adaDir, log: 'lines', seed: opts.seed,
    distill: { teacher, alpha: 0.5 },
  });
  await ada.fit(train, { ...fit, epochs: opts.adaEpochs });
  ada.dispose();
  teacher.dispose();

  console.log('\n3. on the test split');
  const ev = { batchSize: opts.batchSize, device, precision };
  const rDense = evaluate(model, null, test, ev);
  const rAda = evaluate(model, policy, test, ev);
  const rKnob = evaluate(model, policy, test, { ...ev, keepRatio: 0.25 });
  // The control: random decisions at the learned policy's cost (matchedRandom: heads and sub-layers
  // kept at the learned rates, the patch rate bisected until the MACs match).
  const { random, matched } = matchedRandom(model, policy, test, { ...ev, probeImages: 512 });
  const rRandom = evaluate(model, policy, test, { ...ev, random });
  const randomName = matched ? 'random decisions, same MACs' : 'random decisions (MACs unmatched)';
  console.log(line('dense', rDense));
  console.log(line(`AdaViT (threshold ${policy.threshold})`, rAda));
  console.log(line('AdaViT, keepRatio 0.25', rKnob));
  console.log(line(randomName, rRandom));

  console.log('\n4. decisions for three test images (# = patch kept, per gated block)');
  const b = test.getBatch([0, 1, 2]);
  const x = tensor(b.images, [3, ...test.imageShape], { device });
  const r = noGrad(() => adavitInfer(policy, x, { record: true }));
  const grid = config.imgSize / config.patchSize;
  const H = config.numHeads;
  const pred = Array.from(r.logits.to('cpu').dataSync() as Float32Array);
  for (let i = 0; i < 3; i++) {
    const row = pred.slice(i * config.numClasses, (i + 1) * config.numClasses);
    const cls = row.indexOf(Math.max(...row));
    const perBlock = r.decisions!.map((d) => {
      const kept = d.patches.subarray(i * grid * grid, (i + 1) * grid * grid).reduce((a, v) => a + v, 0);
      const heads = d.heads.subarray(i * H, (i + 1) * H).reduce((a, v) => a + v, 0);
      return `block ${d.block}: ${kept}/${grid * grid} patches, ${heads}/${H} heads, attn ${d.sublayers[2 * i] ? 'on' : 'off'}, mlp ${d.sublayers[2 * i + 1] ? 'on' : 'off'}`;
    });
    console.log(`image ${i}: ${data.SHAPE_NAMES[b.labels[i]]}, predicted ${data.SHAPE_NAMES[cls]}, ${((100 * r.macsPerSample[i]) / r.denseMacs).toFixed(0)} % of dense MACs`);
    for (const l of perBlock) console.log(`  ${l}`);
    console.log(`  ${r.decisions!.map((d) => `block ${d.block}`.padEnd(grid + 2)).join('')}`.trimEnd());
    for (let y = 0; y < grid; y++) {
      let s = '  ';
      for (const d of r.decisions!) {
        for (let xx = 0; xx < grid; xx++) s += d.patches[i * grid * grid + y * grid + xx] ? '#' : '.';
        s += '  ';
      }
      console.log(s.trimEnd());
    }
  }

  console.log(`\n5. the run loaded back from ${adaDir}`);
  const model2 = await vit.fromFile(adaDir);
  model2.to(device);
  const policy2 = await policies.fromFile(model2, adaDir);
  const r2 = noGrad(() => adavitInfer(policy2, x, { record: true }));
  const same = (a: ArrayLike<number>, c: ArrayLike<number>) => a.length === c.length && Array.from(a).every((v, i) => Object.is(v, c[i]));
  const logitsSame = same(r.logits.to('cpu').dataSync() as Float32Array, r2.logits.to('cpu').dataSync() as Float32Array);
  const decisionsSame = r.decisions!.every((d, k) => same(d.patches, r2.decisions![k].patches) && same(d.heads, r2.decisions![k].heads));
  console.log(`same logits: ${logitsSame ? 'yes' : 'NO'}; same decisions: ${decisionsSame ? 'yes' : 'NO'}`);
  for (const z of [x, r.logits, r2.logits, policy, policy2, model, model2]) z.dispose();
  if (!logitsSame || !decisionsSame) process.exitCode = 1;
}

main().catch((e) => {
  console.error(`adavit-shapes: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
