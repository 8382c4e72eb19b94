/**
 * Kernel bench: fused attention forward/backward at DeiT-S shapes ×8 (B=8, H=6, N=197, D=64; plain
 * softmax and with DynamicViT keep-mask + head gate) and LayerNorm forward/backward at (8·197, 384).
 * Reports the median ms per call and, for attention, the achieved GFLOP/s of its matrix products
 * (forward 2 products, backward 5, each 2·N²·D flops per (b, h)).
 */
import { native, type NativeTensor } from '../lib/native.js';
import { median } from './stats.js';

export interface BenchRow {
  name: string;
  shape: string;
  value: number;
  unit: string;
}

export interface AttentionBenchOptions {
  /** Fewer repetitions (smoke runs). */
  quick?: boolean;
}


/** Median ms per call of fn after warm-up; frees what each call returns. */
function time(fn: () => NativeTensor[], reps: number, warm = 2): number {
  const free = (ts: (NativeTensor | null)[]) => ts.forEach((t) => t?.free());
  for (let i = 0; i < warm; i++) free(fn());
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const r = fn();
    ts.push(performance.now() - t0);
    free(r);
  }
  return median(ts);
}

function randTensor(shape: number[], seed: number, lo = -1, hi = 1): NativeTensor {
  let a = seed >>> 0;
  const n = shape.reduce((x, y) => x * y, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    d[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return native.fromArray(d, shape, 'float32');
}

export async function run(opts: AttentionBenchOptions = {}): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const reps = opts.quick ? 3 : 10;
  const B = 8, H = 6, N = 197, D = 64, C = H * D;
  const scale = 1 / Math.sqrt(D);
  const shape = `B${B} H${H} N${N} D${D}`;
  const qkv = randTensor([B, N, 3 * C], 1);
  const gout = randTensor([B, N, C], 2);
  const keep = randTensor([B, N], 3, 0, 1);
  const gate = randTensor([B, H], 4, 0, 1);
  const flopsPerProduct = 2 * B * H * N * N * D;

  for (const [label, k, g] of [
    ['plain', null, null],
    ['keep+gate', keep, gate],
  ] as const) {
    const [out, stats] = native.attentionForward(qkv, H, scale, k, g, 1e-6);
    const fwd = time(() => native.attentionForward(qkv, H, scale, k, g, 1e-6), reps);
    const bwd = time(() => {
      const [a, b, c] = native.attentionBackward(gout, qkv, H, scale, k, g, 1e-6, out, stats);
      return [a, b, c].filter((t): t is NativeTensor => t !== null);
    }, reps);
    rows.push({ name: `attention forward (${label})`, shape, value: fwd, unit: 'ms' });
    rows.push({ name: `attention forward (${label})`, shape, value: (2 * flopsPerProduct) / (fwd * 1e6), unit: 'GFLOP/s' });
    rows.push({ name: `attention backward (${label})`, shape, value: bwd, unit: 'ms' });
    rows.push({ name: `attention backward (${label})`, shape, value: (5 * flopsPerProduct) / (bwd * 1e6), unit: 'GFLOP/s' });
    out.free();
    stats.free();
  }

  const R = 8 * 197, L = 384;
  const lnShape = `${R}x${L}`;
  const x = randTensor([R, L], 5);
  const w = randTensor([L], 6);
  const b = randTensor([L], 7);
  const gy = randTensor([R, L], 8);
  const [, mean, rstd] = native.layernormForward(x, w, b, 1e-6);
  rows.push({ name: 'layernorm forward', shape: lnShape, value: time(() => native.layernormForward(x, w, b, 1e-6), reps * 3), unit: 'ms' });
  rows.push({
    name: 'layernorm backward',
    shape: lnShape,
    value: time(() => native.layernormBackward(gy, x, w, mean, rstd).filter((t): t is NativeTensor => t !== null), reps * 3),
    unit: 'ms',
  });
  for (const t of [qkv, gout, keep, gate, x, w, b, gy, mean, rstd]) t.free();
  return rows;
}

// Standalone: `node --import tsx bench/attention.bench.ts [--quick]`
if (import.meta.url === `file://${process.argv[1]}`) {
  run({ quick: process.argv.includes('--quick') }).then((rows) => {
    console.log(`threads ${native.info().threads}, gemm ${native.gemmIsa()}`);
    for (const r of rows) console.log(`${r.name.padEnd(32)} ${r.shape.padEnd(22)} ${r.value.toFixed(3).padStart(10)} ${r.unit}`);
  });
}
