/**
 * End-to-end CPU inference: DeiT-Tiny (224 px, random weights) images/s at batch 1, 8, 32, side by
 * side with onnxruntime-node running timm's DeiT-Tiny exported to ONNX (bench/anchors/deit-tiny.onnx.xz,
 * random weights, dynamic batch) in the same process, same thread count. The two alternate in
 * rounds (see timeRounds) and each side's figure is its median.
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
import { median } from './stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const ORT_VERSION = '1.30.0';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Times each function (ms per call; the median over all timed calls). The sides alternate in rounds
 * (a: 1 warm-up + `per` timed calls, then b likewise, then a again ...), with a pause at every switch
 * long enough for onnxruntime's spinning pool threads to go to sleep, so neither side runs while the
 * other's threads still hold the cores. Rounds make a slow drift of the machine's speed (shared
 * cores, another job starting) hit both sides alike, which keeps the ratio meaningful.
 */
async function timeRounds(fns: (() => unknown | Promise<unknown>)[], rounds: number, per: number): Promise<number[]> {
  const ts: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const [k, f] of fns.entries()) {
      await sleep(200);
      await f();
      for (let i = 0; i < per; i++) {
        const t0 = performance.now();
        await f();
        ts[k].push(performance.now() - t0);
      }
    }
  }
  return ts.map(median);
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
  const ort = 'ort' in ortLoaded ? ortLoaded.ort : null;
  if ('ort' in ortLoaded) {
    session = await ort.InferenceSession.create(ortLoaded.model, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
  }
  for (const B of batches) {
    const n = B * 3 * 224 * 224;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.37) * 1.5;
    const x = tensor(data, [B, 3, 224, 224]);
    const [rounds, per] = opts.quick ? [1, 3] : B === 1 ? [4, 8] : B === 8 ? [4, 3] : [3, 2];
    const ourFn = () => noGrad(() => tidy(() => { m.forward(x).dataSync(); }));
    const fns: (() => unknown)[] = [ourFn];
    if (session) {
      const input = new ort.Tensor('float32', data, [B, 3, 224, 224]);
      const inName = session.inputNames[0];
      fns.push(() => session.run({ [inName]: input }));
    }
    const [ms, oms] = await timeRounds(fns, rounds, per);
    const ours = (1000 * B) / ms;
    const row: Row = { name: 'DeiT-Tiny inference (cpu, fp32)', shape: `batch ${B}`, value: ours, unit: 'img/s' };
    if (session) {
      row.compare = { name: `onnxruntime-node ${ORT_VERSION} (${threads} threads)`, value: (1000 * B) / oms };
      row.ratio = ours / row.compare.value;
    } else row.note = (ortLoaded as { error: string }).error;
    rows.push(row);
    x.dispose();
  }
  m.dispose();
  return rows;
}
