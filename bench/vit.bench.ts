/**
 * End-to-end CPU inference: DeiT-Tiny (224 px, random weights) images/s at batch 1, 8, 32, side by
 * side with onnxruntime-node running timm's DeiT-Tiny exported to ONNX (bench/anchors/deit-tiny.onnx.xz,
 * random weights, dynamic batch) in the same process, same thread count.
 *
 * onnxruntime-node is a bench-only dependency: it is installed on first use into bench/.ort with
 * --ignore-scripts (its install script downloads from the internet; the npm package already carries
 * the CPU binaries). Never a dependency of the library.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad, tensor, tidy, vit } from '../lib/index.js';
import { native } from '../lib/native.js';
import type { BenchOptions, Row } from './run.js';

const here = dirname(fileURLToPath(import.meta.url));
const ORT_VERSION = '1.30.0';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Times fn (ms per call): warm-up, then `reps` timed calls; returns the median. */
async function time(fn: () => unknown | Promise<unknown>, reps: number, warm = 2): Promise<number> {
  for (let i = 0; i < warm; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

async function loadOrt(): Promise<{ ort: any; model: string } | { error: string }> {
  const prefix = join(here, '.ort');
  const pkg = join(prefix, 'node_modules', 'onnxruntime-node');
  try {
    if (!existsSync(pkg)) {
      mkdirSync(prefix, { recursive: true });
      execFileSync('npm', ['install', '--ignore-scripts', '--no-save', '--no-audit', '--no-fund', '--prefix', prefix, `onnxruntime-node@${ORT_VERSION}`], { stdio: 'ignore' });
    }
    const model = join(prefix, 'deit-tiny.onnx');
    if (!existsSync(model)) writeFileSync(model, execFileSync('xz', ['-dc', join(here, 'anchors', 'deit-tiny.onnx.xz')], { maxBuffer: 1 << 30 }));
    const require = createRequire(join(prefix, 'package.json'));
    return { ort: require('onnxruntime-node'), model };
  } catch (e) {
    return { error: `onnxruntime-node unavailable (${(e as Error).message.split('\n')[0]})` };
  }
}

export async function run(opts: BenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const threads = native.info().threads;
  const batches = opts.quick ? [1, 8] : [1, 8, 32];
  const m = vit.create('deit_tiny_patch16_224', { seed: 1 }).eval();
  const ortLoaded = await loadOrt();
  let session: any = null;
  if ('ort' in ortLoaded) {
    session = await ortLoaded.ort.InferenceSession.create(ortLoaded.model, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
  }
  for (const B of batches) {
    const n = B * 3 * 224 * 224;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.37) * 1.5;
    const x = tensor(data, [B, 3, 224, 224]);
    const reps = opts.quick ? 3 : B === 1 ? 20 : B === 8 ? 8 : 4;
    const ms = await time(() => noGrad(() => tidy(() => { m.forward(x).dataSync(); })), reps);
    const ours = (1000 * B) / ms;
    const row: Row = { name: 'DeiT-Tiny inference (cpu, fp32)', shape: `batch ${B}`, value: ours, unit: 'img/s' };
    if (session) {
      const input = new ortLoaded.ort.Tensor('float32', data, [B, 3, 224, 224]);
      const inName = session.inputNames[0];
      const oms = await time(() => session.run({ [inName]: input }), reps);
      row.compare = { name: `onnxruntime-node ${ORT_VERSION} (${threads} threads)`, value: (1000 * B) / oms };
      row.ratio = ours / row.compare.value;
    } else row.note = (ortLoaded as { error: string }).error;
    rows.push(row);
    x.dispose();
  }
  m.dispose();
  return rows;
}
