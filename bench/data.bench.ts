/**
 * Data-layer throughput: shapes generation (images/s, getBatch of 256 incl. normalisation and masks)
 * at 32, 64 and 224 px, and Fashion-MNIST batches (28 → 32 resize, 3 channels) when the files exist.
 * Single-threaded JS. Run alone: node --import tsx bench/data.bench.ts
 */
import { existsSync } from 'node:fs';
import { batches } from '../lib/data/dataset.js';
import { fashionMnist, DEFAULT_FASHION_MNIST_DIR } from '../lib/data/fashion-mnist.js';
import { shapes } from '../lib/data/shapes.js';
import type { Dataset } from '../lib/data/dataset.js';

export interface Row {
  name: string;
  shape: string;
  value: number;
  unit: string;
}

/**
 * Images per second of wall time and per second of this process's CPU time (the second is the
 * steadier figure on a shared machine: other processes' load inflates wall time, not CPU time).
 */
function throughput(ds: Dataset, batchSize: number, minMs: number): { wall: number; cpu: number } {
  let n = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let epoch = 0; performance.now() - t0 < minMs; epoch++) {
    for (const b of batches(ds, { batchSize, shuffle: true, seed: 1, epoch })) {
      n += b.labels.length;
      if (performance.now() - t0 >= minMs) break;
    }
  }
  const c = process.cpuUsage(c0);
  return { wall: (n * 1000) / (performance.now() - t0), cpu: n / ((c.user + c.system) / 1e6) };
}

export async function run(opts: { quick?: boolean } = {}): Promise<Row[]> {
  const ms = opts.quick ? 300 : 2000;
  const rows: Row[] = [];
  const add = (name: string, shape: string, t: { wall: number; cpu: number }) => {
    rows.push({ name, shape, value: t.wall, unit: 'img/s' }, { name, shape, value: t.cpu, unit: 'img/cpu-s' });
  };
  for (const size of [32, 64, 224]) {
    const ds = shapes({ size, length: 100_000 });
    const B = size === 224 ? 32 : 256;
    throughput(ds, B, 100); // warm-up (JIT)
    add('shapes getBatch (render + normalise + masks)', `${size}×${size}, batch ${B}`, throughput(ds, B, ms));
  }
  if (existsSync(DEFAULT_FASHION_MNIST_DIR)) {
    const fm = fashionMnist({ split: 'train', size: 32, channels: 3, augment: { cropPadding: 2 } });
    throughput(fm, 256, 100);
    add('fashion-mnist getBatch (resize 32, 3 ch, crop+flip)', 'batch 256', throughput(fm, 256, ms));
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await run({ quick: process.argv.includes('--quick') })) {
    console.log(`${r.name.padEnd(52)} ${r.shape.padEnd(20)} ${r.value.toFixed(0).padStart(8)} ${r.unit}`);
  }
}
