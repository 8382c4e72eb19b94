#!/usr/bin/env node
/**
 * The `vitrim` command: info, train, eval, explain.
 *
 *   vitrim info
 *   vitrim train --data fashion-mnist --model fmnist-vit --epochs 10 --out runs/dense
 *   vitrim train --data fashion-mnist --init runs/dense/model.safetensors --policy adavit --targets 0.5 --out runs/ada
 *   vitrim eval  --data fashion-mnist --checkpoint runs/ada --batch-size 64
 *   vitrim explain --data fashion-mnist --checkpoint runs/ada --count 8 --out explain.png
 *
 * train / eval / explain take --device cpu|cuda|auto (default cpu; auto = cuda when available) and
 * train / eval --precision float32|bfloat16 (bf16 autocast on cuda; a no-op on the CPU).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import * as data from './data/index.js';
import type { Dataset } from './data/dataset.js';
import { backends, resolveDevice, setNumThreads } from './index.js';
import type { Device } from './native.js';
import type { Precision } from './train/trainer.js';
import { native } from './native.js';
import { create, fromFile, type VitConfig, VisionTransformer } from './nn/vit.js';
import { PRESETS } from './nn/presets.js';
import { adavit, fromFile as policyFromFile, type AdaVitOptions, type AdaVitPolicy } from './policies/adavit.js';
import { evaluate, matchedRandom, Trainer } from './train/trainer.js';
import { explanationSize, renderExplanation } from './explain/heatmap.js';
import { adavitInfer } from './infer/adavit-infer.js';
import { writeFileAtomic } from './io/safetensors.js';
import * as ops from './ops/index.js';
import { tensor } from './tensor.js';

const num = (name: string, int = false, min = -Infinity) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < min) throw new InvalidArgumentError(`${name} must be ${int ? 'an integer' : 'a number'} ≥ ${min}`);
  return n;
};

function dataset(name: string, split: 'train' | 'test', o: { dataDir?: string; imgSize?: number; seed?: number; length?: number; channels?: number }): Dataset {
  if (name === 'shapes') return data.shapes({ split, size: o.imgSize ?? 32, seed: o.seed ?? 0, length: o.length ?? (split === 'train' ? 20000 : 2000) });
  if (name === 'fashion-mnist') return data.fashionMnist({ split, dir: o.dataDir, size: o.imgSize, channels: o.channels as 1 | 3 | undefined });
  throw new InvalidArgumentError(`unknown data set '${name}' (shapes, fashion-mnist)`);
}

async function loadModel(spec: string, over: Partial<VitConfig>): Promise<VisionTransformer> {
  if (existsSync(spec)) return fromFile(spec, over); // a file or a run directory
  if (PRESETS[spec]) return create({ ...PRESETS[spec], ...over });
  if (spec.includes('/') || spec.endsWith('.safetensors')) throw new InvalidArgumentError(`no such checkpoint or run directory: ${spec}`);
  return create(spec, over);
}

async function loadPolicy(dir: string, model: VisionTransformer, opts: AdaVitOptions): Promise<AdaVitPolicy | null> {
  return existsSync(join(dir, 'policy.safetensors')) ? policyFromFile(model, dir, opts) : null;
}

function deviceOpt(v: string): Device | 'auto' {
  if (v !== 'cpu' && v !== 'cuda' && v !== 'auto') throw new InvalidArgumentError('--device must be cpu, cuda or auto');
  return v;
}
function precisionOpt(v: string): Precision {
  if (v !== 'float32' && v !== 'bfloat16') throw new InvalidArgumentError('--precision must be float32 or bfloat16');
  return v;
}

const program = new Command();
program.name('vitrim').description('Adaptive vision transformers: train, evaluate and inspect').version('0.1.0');

program.command('info').description('backends (with the reasons a device is unavailable), CPU features and build').action(() => {
  // backends() first: it loads the CUDA backend when it can, so memory() then lists it too
  const b = backends();
  console.log(JSON.stringify({ backends: b, build: native.info(), memory: native.memory() }, null, 2));
});

program.command('train')
  .description('train a ViT (dense) or an AdaViT policy on it')
  .option('--data <name>', 'shapes | fashion-mnist', 'shapes')
  .option('--data-dir <dir>', 'Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)')
  .option('--model <spec>', 'preset (fmnist-vit, shapes-vit), timm name, or checkpoint', '')
  .option('--init <checkpoint>', 'start from these weights (e.g. a trained dense model)')
  .option('--policy <name>', 'none | adavit', 'none')
  .option('--targets <ratio>', 'AdaViT target usage for patches, heads and blocks', num('targets', false, 0), 0.5)
  .option('--target-patch <ratio>', 'AdaViT target patch usage (overrides --targets)', num('target-patch', false, 0))
  .option('--target-head <ratio>', 'AdaViT target head usage (overrides --targets)', num('target-head', false, 0))
  .option('--target-block <ratio>', 'AdaViT target sub-layer usage (overrides --targets)', num('target-block', false, 0))
  .option('--tau <t>', 'Gumbel temperature', num('tau', false, 0), 5)
  .option('--epochs <n>', 'epochs', num('epochs', true, 1), 10)
  .option('--batch-size <n>', 'batch size', num('batch-size', true, 1), 64)
  .option('--lr <lr>', 'learning rate (backbone)', num('lr', false, 0), 5e-4)
  .option('--policy-lr <lr>', 'learning rate of the policy', num('policy-lr', false, 0))
  .option('--backbone-lr-scale <k>', 'backbone lr relative to --lr', num('backbone-lr-scale', false, 0), 1)
  .option('--freeze-backbone', 'train the policy only')
  .option('--weight-decay <wd>', 'AdamW weight decay', num('weight-decay', false, 0), 0.05)
  .option('--warmup <epochs>', 'warm-up epochs', num('warmup', false, 0), 1)
  .option('--label-smoothing <s>', 'label smoothing', num('label-smoothing', false, 0), 0)
  .option('--distill', 'distil from the frozen --init model (AdaViT)')
  .option('--limit <n>', 'batches per epoch (quick runs)', num('limit', true, 1))
  .option('--eval-limit <n>', 'test batches evaluated after each epoch (quick runs; default: the whole test split)', num('eval-limit', true, 1))
  .option('--seed <n>', 'seed', num('seed', true, 0), 0)
  .option('--threads <n>', 'CPU threads', num('threads', true, 1))
  .option('--out <dir>', 'output directory (checkpoints, metrics.jsonl)', 'runs/latest')
  .option('--resume', 'continue from --out')
  .option('--device <d>', 'cpu | cuda | auto (cuda when available)', deviceOpt, 'cpu')
  .option('--precision <p>', 'float32 | bfloat16 (mixed precision with float32 master weights; cuda only, a no-op on the CPU)', precisionOpt, 'float32')
  .action(async (o) => {
    const device = resolveDevice(o.device, 'cpu', '--device');
    if (o.distill && !o.init) throw new InvalidArgumentError('--distill needs --init <checkpoint>: the teacher is a frozen copy of the weights training starts from');
    if (o.threads) setNumThreads(o.threads);
    const train = dataset(o.data, 'train', { dataDir: o.dataDir, seed: o.seed });
    const test = dataset(o.data, 'test', { dataDir: o.dataDir, seed: o.seed });
    const spec = o.init ?? (o.model || (o.data === 'fashion-mnist' ? 'fmnist-vit' : 'shapes-vit'));
    const model = await loadModel(spec, {});
    const [C, H] = train.imageShape;
    if (model.config.inChans !== C || model.config.imgSize !== H) {
      throw new InvalidArgumentError(`model expects [${model.config.inChans}, ${model.config.imgSize}, ${model.config.imgSize}] images, the data set gives [${train.imageShape}]`);
    }
    let policy: AdaVitPolicy | null = null;
    const pcfg = {
      targets: { patch: o.targetPatch ?? o.targets, head: o.targetHead ?? o.targets, block: o.targetBlock ?? o.targets },
      tau: o.tau, seed: o.seed,
    };
    if (o.policy === 'adavit') policy = adavit(model, pcfg);
    else if (o.policy !== 'none') throw new InvalidArgumentError(`unknown policy '${o.policy}' (none, adavit)`);
    const teacher = o.distill && o.init ? await loadModel(o.init, {}) : null;
    const trainer = new Trainer({
      model, policy, outDir: o.out, seed: o.seed, device, precision: o.precision,
      optimizer: { lr: o.lr, weightDecay: o.weightDecay }, policyLr: o.policyLr,
      backboneLrScale: o.backboneLrScale, freezeBackbone: !!o.freezeBackbone,
      warmupEpochs: o.warmup, labelSmoothing: o.labelSmoothing,
      distill: teacher ? { teacher, alpha: 0.5 } : undefined,
    });
    await trainer.fit(train, { epochs: o.epochs, batchSize: o.batchSize, eval: test, limit: o.limit, evalLimit: o.evalLimit, resume: !!o.resume });
    console.log(`saved to ${o.out}`);
  });

program.command('eval')
  .description('accuracy, kept units, MACs and images/s of a checkpoint (with its policy when present)')
  .option('--data <name>', 'shapes | fashion-mnist', 'shapes')
  .option('--data-dir <dir>', 'Fashion-MNIST IDX directory')
  .requiredOption('--checkpoint <path>', 'a run directory (model + policy) or a model .safetensors')
  .option('--split <split>', 'train | test', 'test')
  .option('--dense', 'ignore the policy: run the dense model')
  .option('--random-policy', 'replace the learned decisions with random ones at the same cost (matched MACs)')
  .option('--threshold <t>', 'decision threshold (budget knob)', num('threshold', false, 0))
  .option('--keep-ratio <r>', 'keep this fraction of patches per block (budget knob)', num('keep-ratio', false, 0))
  .option('--batch-size <n>', 'batch size', num('batch-size', true, 1), 64)
  .option('--limit <n>', 'batches', num('limit', true, 1))
  .option('--threads <n>', 'CPU threads', num('threads', true, 1))
  .option('--device <d>', 'cpu | cuda | auto (cuda when available)', deviceOpt, 'cpu')
  .option('--precision <p>', 'float32 | bfloat16 (autocast on cuda; a no-op on the CPU)', precisionOpt, 'float32')
  .option('--json', 'print JSON')
  .action(async (o) => {
    const device = resolveDevice(o.device, 'cpu', '--device');
    const precision: Precision = o.precision;
    if (o.threads) setNumThreads(o.threads);
    const ds = dataset(o.data, o.split, { dataDir: o.dataDir });
    const model = await loadModel(o.checkpoint, {});
    const dir = existsSync(o.checkpoint) && statSync(o.checkpoint).isDirectory() ? o.checkpoint : null;
    const policy = dir && !o.dense ? await loadPolicy(dir, model, {}) : null;
    let random: { patch: number; head: number; block: number; seed: number } | undefined;
    if (o.randomPolicy) {
      if (!policy) throw new InvalidArgumentError('--random-policy needs a run directory with a policy (its cost sets the budget)');
      // Same budget as the learned policy (matchedRandom: its head and sub-layer keep rates, the patch
      // rate bisected until the MACs match).
      const m = matchedRandom(model, policy, ds, { batchSize: o.batchSize, threshold: o.threshold, keepRatio: o.keepRatio, limit: o.limit, device, precision });
      const learned = m.learned;
      random = m.random;
      if (!m.matched) {
        console.error(`vitrim: random decisions cannot match the learned policy's cost by their patch rate: ${((100 * m.randomMacs) / learned.denseMacs).toFixed(1)} % of dense MACs against its ${((100 * learned.macs) / learned.denseMacs).toFixed(1)} %`);
      }
      if (!o.json) console.log(`learned policy: accuracy ${(100 * learned.accuracy).toFixed(2)} %, ${((100 * learned.macs) / learned.denseMacs).toFixed(1)} % of dense MACs`);
    }
    // random decisions have their own keep rates: --threshold and --keep-ratio set the learned ones (and so the budget)
    const knobs = random ? { random } : { threshold: o.threshold, keepRatio: o.keepRatio };
    const r = evaluate(model, policy, ds, { batchSize: o.batchSize, limit: o.limit, device, precision, ...knobs });
    if (o.json) console.log(JSON.stringify(r));
    else {
      console.log(`accuracy ${(100 * r.accuracy).toFixed(2)} % on ${r.count} images (${o.data} ${o.split})`);
      console.log(`MACs/image ${(r.macs / 1e6).toFixed(2)} M = ${((100 * r.macs) / r.denseMacs).toFixed(1)} % of dense (${(r.denseMacs / 1e6).toFixed(2)} M)`);
      if (r.kept) console.log(`kept: patches ${(100 * r.kept.patch).toFixed(1)} %, heads ${(100 * r.kept.head).toFixed(1)} %, sub-layers ${(100 * r.kept.block).toFixed(1)} %`);
      console.log(`throughput ${r.imagesPerSec.toFixed(1)} images/s (batch ${Math.min(o.batchSize, r.count)}, ${device === 'cpu' ? `${native.info().threads} threads` : `${device}, ${precision}`})`);
    }
  });

program.command('explain')
  .description('render which patches each gated block kept, and the gates\' keep scores, as a PNG')
  .requiredOption('--checkpoint <dir>', 'a run directory with model and policy')
  .option('--data <name>', 'shapes | fashion-mnist', 'shapes')
  .option('--data-dir <dir>', 'Fashion-MNIST IDX directory')
  .option('--split <split>', 'train | test', 'test')
  .option('--count <n>', 'images', num('count', true, 1), 8)
  .option('--start <i>', 'first image index', num('start', true, 0), 0)
  .option('--threshold <t>', 'decision threshold', num('threshold', false, 0))
  .option('--keep-ratio <r>', 'keep this fraction of patches per block', num('keep-ratio', false, 0))
  .option('--zoom <z>', 'pixel zoom', num('zoom', true, 1), 4)
  .option('--out <file>', 'PNG to write', 'explain.png')
  .option('--device <d>', 'cpu | cuda | auto (cuda when available)', deviceOpt, 'cpu')
  .action(async (o) => {
    const device = resolveDevice(o.device, 'cpu', '--device');
    const ds = dataset(o.data, o.split, { dataDir: o.dataDir });
    const model = (await loadModel(o.checkpoint, {})).to(device);
    const policy = await loadPolicy(o.checkpoint, model, {});
    if (!policy) throw new InvalidArgumentError(`${o.checkpoint} has no policy.safetensors to explain`);
    const layout = { imgSize: model.config.imgSize, patchSize: model.config.patchSize, channels: model.config.inChans, zoom: o.zoom };
    explanationSize(o.count, model.blocks.length - policy.keepLayers, layout); // refuses a huge --count / --zoom before any work
    const idx = Array.from({ length: o.count }, (_, i) => (o.start + i) % ds.length);
    const b = ds.getBatch(idx);
    const x = tensor(b.images, [idx.length, ...ds.imageShape], { device });
    const r = adavitInfer(policy, x, { threshold: o.threshold, keepRatio: o.keepRatio, record: true });
    const { png, width, height } = renderExplanation(b.images, idx.length, r.decisions!, layout);
    await writeFileAtomic(o.out, png);
    const pred = ops.topk(r.logits, 1).indices.dataSync();
    console.log(`wrote ${o.out} (${width}×${height}): ${idx.length} images × [input, ${r.decisions!.map((d) => `block ${d.block}`).join(', ')}, mean keep score]`);
    idx.forEach((i, k) => console.log(`  #${i}: label ${ds.classNames[b.labels[k]]}, predicted ${ds.classNames[pred[k]]}`));
    console.log(`kept: patches ${(100 * r.kept.patch).toFixed(1)} %, heads ${(100 * r.kept.head).toFixed(1)} %, sub-layers ${(100 * r.kept.block).toFixed(1)} %; ${((100 * r.macs) / r.denseMacs).toFixed(1)} % of dense MACs`);
  });

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`vitrim: ${e.message}`);
  process.exit(1);
});

