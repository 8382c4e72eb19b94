/**
 * Quick timings for the loss / topk / sampling / AdamW CPU kernels at ViT shapes (median of runs).
 * Run: node --import tsx bench/sample-ops.ts  (VITRIM_NUM_THREADS to pin threads)
 */
import { native } from '../lib/native.js';

function randn(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const r = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
  return out;
}

function time(name: string, bytes: number, fn: () => void, reps = 15) {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ts.sort((a, b) => a - b);
  const ms = ts[reps >> 1];
  console.log(`${name.padEnd(52)} ${ms.toFixed(3).padStart(9)} ms  ${(bytes / ms / 1e6).toFixed(2).padStart(7)} GB/s`);
}

const f32 = (d: Float32Array, shape: number[]) => native.fromArray(d, shape, 'float32');
console.log(`threads ${native.info().threads}`);

{
  const [R, K] = [256, 1000];
  const x = f32(randn(R * K, 1), [R, K]);
  const y = native.fromArray(Int32Array.from({ length: R }, (_, i) => (i * 7) % K), [R], 'int32');
  const [, lse] = native.crossEntropyForward(x, y, 0.1);
  time(`crossEntropyForward [${R},${K}]`, R * K * 4, () => void native.crossEntropyForward(x, y, 0.1));
  time(`crossEntropyBackward [${R},${K}]`, R * K * 8, () => void native.crossEntropyBackward(x, y, 0.1, lse, 1));
}
{
  const [B, N] = [256, 196];
  const x = f32(randn(B * N, 2), [B, N]);
  time(`topk [${B},${N}] k=137 (DynamicViT stage 1)`, B * N * 4, () => void native.topk(x, 137, true));
  const x6 = f32(randn(B * 6 * N, 3), [B * 6, N]);
  time(`topk [${B * 6},${N}] k=20`, B * 6 * N * 4, () => void native.topk(x6, 20, true));
}
{
  const n = 256 * 197;
  const z = f32(randn(n, 4), [256, 197]);
  time(`random normal [${n}]`, n * 4, () => void native.random([n], 'normal', 1, 0));
  time(`gumbelSigmoid [256,197] hard`, n * 12, () => void native.gumbelSigmoid(z, 5, 0.5, true, null, 1, 0));
  const z2 = f32(randn(n * 2, 5), [256, 197, 2]);
  time(`gumbelSoftmax [256,197,2] hard`, n * 24, () => void native.gumbelSoftmax(z2, 1, true, null, 1, 0));
}
{
  const n = 22_000_000; // ~ DeiT-S parameter count
  const p = f32(randn(n, 6), [n]);
  const g = f32(randn(n, 7), [n]);
  const m = native.full([n], 0, 'float32');
  const v = native.full([n], 0, 'float32');
  let t = 0;
  time(`adamwStep [${n}] (reads 4, writes 3 arrays)`, n * 28, () => native.adamwStep(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.05, ++t), 7);
}
