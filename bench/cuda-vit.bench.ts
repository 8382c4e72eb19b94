/**
 * End-to-end DeiT-S on CUDA (random weights, 224 px), the figures of torch_anchors.py side by side:
 * - inference img/s at batch 1, 64, 256: float32 (TF32 off) and bf16 autocast, eager (one launch per
 *   op, as our ops run);
 * - batch 1 through createInferencePlan (the whole forward captured once as a CUDA graph; each run
 *   uploads the input from host memory and replays), float32, and bf16 with the weights cast once
 *   (snapshot, the default) or in every replay (live);
 * - a training step (forward, cross-entropy, backward, AdamW) at batch 64, float32 and bf16 autocast;
 *   and the same step through Trainer.fit (host batches built and uploaded each step, the figures
 *   summed on the device), the path a user's training run takes.
 * Timing: wall clock over `inner` back-to-back iterations closed by a synchronize, median of reps.
 * Set VITRIM_TORCH_JSON to torch_anchors.py's JSON from the same call for ratios (vitrim / timm:
 * above 1 is faster, all figures are img/s).
 */
import { existsSync, readFileSync } from 'node:fs';
import { AdamW, autocast, backward, keep, noGrad, ops, tensor, tidy, Trainer, vit, type Tensor } from '../lib/index.js';
import type { Dataset } from '../lib/data/dataset.js';
import { denseMacs } from '../lib/infer/flops.js';
import { createInferencePlan } from '../lib/infer/plan.js';
import { native } from '../lib/native.js';
import type { BenchOptions, Row } from './run.js';
import { withEnv } from './env.js';
import { median } from './stats.js';
import { addNote, pctOf, statedPeaks } from './peaks.js';

type TorchJson = Record<string, Record<string, number>>;
const MODEL = 'deit_small_patch16_224';


/** Median seconds per iteration: `inner` iterations then one synchronize, `reps` times (+1 warm-up). */
function time(fn: () => void, reps: number, inner: number): number {
  const run = () => {
    for (let i = 0; i < inner; i++) fn();
    native.synchronize('cuda');
  };
  run();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run();
    ts.push((performance.now() - t0) / 1000 / inner);
  }
  return median(ts);
}

export async function run(opts: BenchOptions): Promise<Row[]> {
  const cuda = native.backends().find((b) => b.device === 'cuda')!;
  if (!cuda.available) {
    console.log(`cuda unavailable, no rows: ${cuda.reasons.join('; ')}`);
    return [];
  }
  const p = process.env.VITRIM_TORCH_JSON;
  const torch: TorchJson | null = p && existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as TorchJson) : null;
  native.setAllowTf32(false);
  const reps = opts.quick ? 3 : 7;
  const want = (name: string) => !opts.filter || name.includes(opts.filter);
  const rows: Row[] = [];
  const model = vit.create(MODEL, { seed: 1 });
  const flopPerImg = 2 * denseMacs(model.config);
  const peaks = statedPeaks(cuda.detail);
  /**
   * Appends the achieved TFLOP/s and its fraction of the stated peak of the units the linears run on
   * (bf16 tensor cores; float32: fp32 FMA for cuBLASLt SGEMM with TF32 off, a third of the TF32 rate
   * for the 3xTF32 kernel). FLOP = 2·MACs of the dense model (lib/infer/flops.ts, DeiT-S 4.6 GMAC an
   * image); a training step counts 3 forwards (the backward's two products per forward one).
   */
  const push = (row: Row, key: string, field: string) => {
    const v = torch?.[key]?.[field];
    if (v !== undefined) {
      row.compare = { name: `timm ${field}`, value: v };
      row.ratio = row.value / v;
    }
    if (row.unit === 'img/s') {
      const tflops = (row.value * flopPerImg * (row.name.startsWith('train') ? 3 : 1)) / 1e12;
      row.note = addNote(row.note, `${tflops.toFixed(1)} TFLOP/s`);
      if (peaks) {
        row.note = addNote(row.note, row.name.includes('bfloat16') ? pctOf(tflops, peaks.bf16, 'the bf16 tensor peak', 'TFLOP/s')
          : row.name.includes('3xTF32') ? pctOf(tflops, +(peaks.tf32 / 3).toFixed(1), 'a third of the TF32 tensor peak', 'TFLOP/s')
            : pctOf(tflops, peaks.fp32, 'the fp32 FMA peak', 'TFLOP/s'));
      }
    }
    rows.push(row);
    console.log(`${row.name} ${row.shape}: ${row.value.toFixed(1)} ${row.unit}${row.ratio ? ` (${row.ratio.toFixed(2)}x timm)` : ''}`);
  };

  model.to('cuda');
  model.eval();

  // ---- inference ----
  for (const B of [1, 64, 256]) {
    for (const precision of ['float32', 'bfloat16'] as const) {
      const name = `infer ${precision}`;
      if (!want(name) && !want('infer')) continue;
      const x = ops.random([B, 3, 224, 224], 'normal', { seed: B, device: 'cuda' });
      const fwd = () =>
        tidy(() => {
          noGrad(() => (precision === 'bfloat16' ? autocast('bfloat16', () => model.forward(x)) : model.forward(x)));
        });
      const inner = B === 1 ? 20 : B === 64 ? 5 : 2;
      const s = time(fwd, reps, inner);
      push({ name: `${name} eager`, shape: `B${B}`, value: B / s, unit: 'img/s' }, `${MODEL}_infer_B${B}`,
        precision === 'float32' ? 'fp32_img_s' : 'bf16_autocast_img_s');
      if (precision === 'bfloat16' && B > 1) {
        // the same with the opt-in bf16 mma linears (VITRIM_CUDA_GEMM_BF16=mma: GELU fused)
        const sm = withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', () => time(fwd, reps, inner));
        push({ name: `${name} eager (mma linears)`, shape: `B${B}`, value: B / sm, unit: 'img/s', note: `default path: ${(B / s).toFixed(1)} img/s` },
          `${MODEL}_infer_B${B}`, 'bf16_autocast_img_s');
      }
      if (precision === 'float32' && B > 1) {
        // the same with the opt-in 3xTF32 linears (VITRIM_CUDA_GEMM_F32=3xtf32: fp32 accuracy, GELU fused)
        const s3 = withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () => time(fwd, reps, inner));
        push({ name: `${name} eager (3xTF32 linears)`, shape: `B${B}`, value: B / s3, unit: 'img/s', note: `default path: ${(B / s).toFixed(1)} img/s` },
          `${MODEL}_infer_B${B}`, 'fp32_img_s');
      }
      x.dispose();
    }
  }

  // ---- batch 1 as a CUDA graph (createInferencePlan: the input written from host memory, replayed) ----
  for (const [precision, weights] of [['float32', 'live'], ['bfloat16', 'snapshot'], ['bfloat16', 'live']] as const) {
    const name = `infer ${precision} graph${precision === 'bfloat16' && weights === 'live' ? ' (weights live)' : ''}`;
    if (!want(name) && !want('graph')) continue;
    const plan = createInferencePlan(model, [3, 224, 224], { batch: 1, precision, weights });
    const data = new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i));
    const st = plan.graphStats;
    const s = time(() => plan.run(data), reps, 50);
    push({ name, shape: 'B1', value: 1 / s, unit: 'img/s', note: `plan.run: upload + replay (${st.kernels} kernels, ${st.nodes} nodes)` },
      `${MODEL}_infer_B1`, precision === 'float32' ? 'fp32_img_s' : 'bf16_autocast_img_s');
    plan.dispose();
    if (precision === 'bfloat16' && weights === 'snapshot') {
      // the plan recorded with the opt-in bf16 mma linears (their GELU fused: fewer kernels)
      // (their plan splits K at batch 1; VITRIM_CUDA_GEMM_SPLITK=1: the same without split-K)
      for (const split of [undefined, '1']) {
        const pm = withEnv('VITRIM_CUDA_GEMM_SPLITK', split, () => withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', () =>
          createInferencePlan(model, [3, 224, 224], { batch: 1, precision })));
        const sm = time(() => pm.run(data), reps, 50);
        push({ name: `${name} (mma linears${split ? ', no split-K' : ''})`, shape: 'B1', value: 1 / sm, unit: 'img/s',
          note: `plan.run (${pm.graphStats.kernels} kernels); default plan: ${(1 / s).toFixed(1)} img/s` }, `${MODEL}_infer_B1`, 'bf16_autocast_img_s');
        pm.dispose();
      }
    }
    if (precision === 'float32') {
      // the plan recorded with the opt-in 3xTF32 linears (their GELU fused: fewer kernels)
      // (split-K at batch 1, and without it)
      for (const split of [undefined, '1']) {
        const p3 = withEnv('VITRIM_CUDA_GEMM_SPLITK', split, () => withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () =>
          createInferencePlan(model, [3, 224, 224], { batch: 1, precision })));
        const s3 = time(() => p3.run(data), reps, 50);
        push({ name: `${name} (3xTF32 linears${split ? ', no split-K' : ''})`, shape: 'B1', value: 1 / s3, unit: 'img/s',
          note: `plan.run (${p3.graphStats.kernels} kernels); default plan: ${(1 / s).toFixed(1)} img/s` }, `${MODEL}_infer_B1`, 'fp32_img_s');
        p3.dispose();
      }
    }
  }

  // ---- training step ----
  for (const precision of ['float32', 'bfloat16'] as const) {
    const name = `train ${precision}`;
    if (!want(name) && !want('train')) continue;
    const B = 64;
    const x = ops.random([B, 3, 224, 224], 'normal', { seed: 11, device: 'cuda' });
    const labels = tensor(Int32Array.from({ length: B }, (_, i) => (i * 37) % 1000), [B], { dtype: 'int32', device: 'cuda' });
    const opt = new AdamW(model.parameters(), { lr: 1e-4 });
    model.train();
    const step = () => {
      tidy(() => {
        opt.zeroGrad();
        const logits = precision === 'bfloat16' ? autocast('bfloat16', () => model.forward(x)) : model.forward(x);
        backward(ops.crossEntropy(logits, labels));
        opt.step();
      });
    };
    const s = time(step, reps, 3);
    push({ name, shape: `B${B}`, value: B / s, unit: 'img/s', note: 'fwd+bwd+AdamW' }, `${MODEL}_train_B64`,
      precision === 'float32' ? 'fp32_img_s' : 'bf16_autocast_img_s');
    model.eval();
    labels.dispose();
    x.dispose();
  }

  // ---- training through Trainer.fit ----
  for (const precision of ['float32', 'bfloat16'] as const) {
    const name = `train ${precision} Trainer.fit`;
    if (!want(name) && !want('train')) continue;
    const B = 64;
    const steps = opts.quick ? 4 : 10;
    // An in-memory dataset: every batch is a fresh host array (as a decoder would give), so the
    // copy into the batch and its upload are part of the step.
    const img = new Float32Array(3 * 224 * 224);
    for (let i = 0; i < img.length; i++) img[i] = Math.sin(i * 0.37) * 1.3;
    const ds: Dataset = {
      name: 'synthetic', length: B * steps, numClasses: 1000, classNames: [], imageShape: [3, 224, 224],
      getBatch: (idx: number[]) => {
        const images = new Float32Array(idx.length * img.length);
        for (let i = 0; i < idx.length; i++) images.set(img, i * img.length);
        return { images, labels: Int32Array.from(idx, (k) => (k * 37) % 1000), indices: idx };
      },
    };
    const t = new Trainer({ model, device: 'cuda', precision, optimizer: { lr: 1e-4 }, warmupEpochs: 0, log: 'silent' });
    const fit = async () => {
      t.epoch = 0;
      const t0 = performance.now();
      await t.fit(ds, { epochs: 1, batchSize: B, limit: steps }); // ends with the epoch's read: a sync
      return (performance.now() - t0) / 1000 / steps;
    };
    await fit();
    const ts: number[] = [];
    for (let r = 0; r < reps; r++) ts.push(await fit());
    push({ name, shape: `B${B}`, value: B / median(ts), unit: 'img/s', note: `fit, ${steps} steps, host batches` }, `${MODEL}_train_B64`,
      precision === 'float32' ? 'fp32_img_s' : 'bf16_autocast_img_s');
    model.eval();
  }
  return rows;
}
