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

function imagesPerSecond(ds: Dataset, batchSize: number, minMs: number, epochOffset = 0): number {
  let n = 0;
  const t0 = performance.now();
  for (let epoch = epochOffset; performance.now() - t0 < minMs; epoch++) {
    for (const b of batches(ds, { batchSize, shuffle: true, seed: 1, epoch, limit: 4 })) n += b.labels.length;
  }
  return (n * 1000) / (performance.now() - t0);
}

export async function run(opts: { quick?: boolean } = {}): Promise<Row[]> {
  const ms = opts.quick ? 300 : 2000;
  const rows: Row[] = [];
  for (const size of [32, 64, 224]) {
    const ds = shapes({ size, length: 1_000_000 });
    imagesPerSecond(ds, 256, 100); // warm-up (JIT)
    rows.push({ name: 'shapes getBatch', shape: `${size}×${size}, batch 256`, value: imagesPerSecond(ds, size === 224 ? 32 : 256, ms), unit: 'img/s' });
  }
  if (existsSync(DEFAULT_FASHION_MNIST_DIR)) {
    const fm = fashionMnist({ split: 'train', size: 32, channels: 3, augment: { cropPadding: 2 } });
    imagesPerSecond(fm, 256, 100);
    rows.push({ name: 'fashion-mnist getBatch (resize 32, 3 ch, crop+flip)', shape: 'batch 256', value: imagesPerSecond(fm, 256, ms), unit: 'img/s' });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await run({ quick: process.argv.includes('--quick') })) {
    console.log(`${r.name.padEnd(56)} ${r.shape.padEnd(20)} ${r.value.toFixed(0).padStart(8)} ${r.unit}`);
  }
}
