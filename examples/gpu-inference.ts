/**
 * Inference on the GPU with the CPU's API, checked against the CPU.
 *
 * A ViT / DeiT, by timm name or from a safetensors checkpoint, runs on cuda when a GPU is usable.
 * Otherwise it runs on the CPU and the example prints why cuda is unavailable. On cuda it runs three
 * ways, each compared with the CPU's float32 logits on the same random images, and each timed:
 *   - eager float32 (no TF32: expect a relative difference near 1e-6);
 *   - eager bfloat16 autocast (GEMMs and attention in bf16 with fp32 accumulation: expect ~1e-2);
 *   - an inference plan: the whole forward recorded once as a CUDA graph and replayed.
 *
 *   npx tsx examples/gpu-inference.ts                         # DeiT-S, batch 8, random weights
 *   npx tsx examples/gpu-inference.ts --checkpoint deit_small.safetensors --batch 1 --iters 100
 *   npx tsx examples/gpu-inference.ts --model deit_tiny_patch16_224 --device cpu
 *
 * The timings are wall-clock medians over --iters calls after one warm-up, with a device
 * synchronisation in each: the latency a caller sees, not a kernel benchmark (`npm run bench` has those).
 */
import { Command, InvalidArgumentError } from 'commander';
import {
  autocast, backends, createInferencePlan, noGrad, ops, resolveDevice, synchronize, tensor, tidy, vit,
  type Device, type Tensor, type VisionTransformer,
} from '../lib/index.js';

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const opts = new Command('gpu-inference')
  .option('--model <name>', 'timm model name (random weights unless --checkpoint)', 'deit_small_patch16_224')
  .option('--checkpoint <file>', 'safetensors checkpoint (timm or Hugging Face names); its config wins over --model')
  .option('--batch <n>', 'images per call', int('batch', 1), 8)
  .option('--iters <n>', 'timed calls per mode', int('iters', 1), 20)
  .option('--img-size <n>', 'random weights only: another input size (fewer tokens, a quicker run)', int('img-size', 16))
  .option('--device <d>', 'cuda | cpu | auto', 'auto')
  .option('--seed <n>', 'seed of the random images (and of the random weights)', int('seed', 0), 0)
  .parse()
  .opts<{ model: string; checkpoint?: string; batch: number; iters: number; imgSize?: number; device: 'cuda' | 'cpu' | 'auto'; seed: number }>();

/** ‖a − b‖ / ‖b‖ and the share of rows whose argmax agrees. */
function compare(a: Float32Array, b: Float32Array, classes: number): { rel: number; top1: number } {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  const argmax = (x: Float32Array, r: number) => {
    let best = 0;
    for (let c = 1; c < classes; c++) if (x[r * classes + c] > x[r * classes + best]) best = c;
    return best;
  };
  let same = 0;
  const rows = b.length / classes;
  for (let r = 0; r < rows; r++) same += argmax(a, r) === argmax(b, r) ? 1 : 0;
  return { rel: Math.sqrt(num / den), top1: same / rows };
}

/** Median milliseconds of fn over `iters` calls (after one warm-up), synchronising `device` each time. */
function time(device: Device, iters: number, fn: () => void): number {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    if (device === 'cuda') synchronize('cuda');
    ts.push(performance.now() - t0);
  }
  ts.sort((x, y) => x - y);
  return ts[Math.floor(ts.length / 2)];
}

async function main(): Promise<void> {
  const device = resolveDevice(opts.device, 'cpu', '--device');
  const cuda = backends().find((b) => b.device === 'cuda');
  if (device === 'cpu') {
    console.log(`running on the cpu${cuda?.available ? '' : ` (cuda unavailable: ${(cuda?.reasons ?? []).join('; ') || 'no cuda backend'})`}`);
  } else {
    console.log(`running on ${cuda?.detail}`);
  }
  if (opts.checkpoint && opts.imgSize) throw new InvalidArgumentError('--img-size applies to random weights only (a checkpoint fixes the size)');
  const model: VisionTransformer = opts.checkpoint
    ? await vit.fromFile(opts.checkpoint)
    : vit.create(opts.model, { seed: opts.seed, ...(opts.imgSize ? { imgSize: opts.imgSize } : {}) });
  model.eval();
  const cfg = model.config;
  const shape = [opts.batch, cfg.inChans, cfg.imgSize, cfg.imgSize];
  const images = ops.random(shape, 'normal', { seed: opts.seed + 1 });
  const forward = (x: Tensor) => noGrad(() => model.forward(x));

  // The reference: float32 on the CPU, with the model still there.
  const ref = tidy(() => forward(images).values());
  const rows: { mode: string; ms: number; rel?: number; top1?: number }[] = [];
  if (device === 'cpu') {
    rows.push({ mode: 'cpu float32 eager', ms: time('cpu', opts.iters, () => tidy(() => void forward(images))) });
  } else {
    // Every mode starts from the images in host memory, as a server's decoded images would be.
    model.to('cuda');
    const host = images.values();
    const check = (mode: string, logits: () => Float32Array, ms: number) =>
      rows.push({ mode, ms, ...compare(logits(), ref, cfg.numClasses) });
    const fp32 = () => forward(tensor(host, shape, { device: 'cuda' }));
    check('cuda float32 eager', () => tidy(() => fp32().values()), time('cuda', opts.iters, () => tidy(() => void fp32())));
    const bf16 = () => autocast('bfloat16', fp32);
    check('cuda bfloat16 eager (autocast)', () => tidy(() => bf16().values()), time('cuda', opts.iters, () => tidy(() => void bf16())));
    for (const precision of ['float32', 'bfloat16'] as const) {
      const plan = createInferencePlan(model, shape.slice(1), { batch: opts.batch, precision });
      try {
        check(`cuda ${precision} plan (graph of ${plan.graphStats.kernels} kernels)`, () => plan.run(host).values(),
          time('cuda', opts.iters, () => void plan.run(host)));
      } finally {
        plan.dispose();
      }
    }
  }
  images.dispose();

  console.log(`${opts.checkpoint ?? opts.model}: batch ${opts.batch}, ${cfg.numClasses} classes, medians of ${opts.iters} calls`);
  for (const r of rows) {
    const imgs = (opts.batch / r.ms) * 1000;
    const acc = r.rel === undefined ? '' : `  vs cpu float32: rel ${r.rel.toExponential(2)}, same top-1 ${(100 * r.top1!).toFixed(1)} %`;
    console.log(`  ${r.mode.padEnd(44)} ${r.ms.toFixed(3).padStart(9)} ms  ${imgs.toFixed(1).padStart(9)} img/s${acc}`);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
  process.exitCode = 1;
});
