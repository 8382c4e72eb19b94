// Per-op A/B helper for CPU inference work (bench/cpu-inference-notes.md): the native ops of one
// DeiT-Tiny block at batch B, each timed alone. Reports wall and process CPU time per call and
// GFLOP/s per busy core (flops / CPU seconds; 111 is this machine's per-core FMA peak), which is
// what to compare while the cores are shared.
//   node --import tsx bench/vit-ops.mts [batch=8] [filter]
import { native } from '../lib/native.js';

const B = Number(process.argv[2] ?? 8);
const filter = process.argv[3] ?? '';
const N = 197, C = 192, H = 3, D = 64, F = 768;
const rnd = (n: number, s = 1) => {
  const a = new Float32Array(n);
  let z = 12345;
  for (let i = 0; i < n; i++) { z = (z * 1103515245 + 12345) >>> 0; a[i] = ((z / 2 ** 32) * 2 - 1) * s; }
  return a;
};
const T = (shape: number[], s = 1) => native.fromArray(rnd(shape.reduce((p, q) => p * q, 1), s), shape, 'float32');
const M = B * N;
const x = T([B, N, C]), xh = T([B, N, F]), qkv = T([B, N, 3 * C]);
const wqkv = T([3 * C, C], 0.05), bqkv = T([3 * C], 0.1), wp = T([C, C], 0.05), bp = T([C], 0.1);
const w1 = T([F, C], 0.05), b1 = T([F], 0.1), w2 = T([C, F], 0.05), b2 = T([C], 0.1);
const lnw = T([C]), lnb = T([C]);
const cases: [string, number, () => { free(): void } | unknown][] = [
  ['linear qkv', 2 * M * C * 3 * C, () => native.linearForward(x, wqkv, bqkv)],
  ['linear proj', 2 * M * C * C, () => native.linearForward(x, wp, bp)],
  ['linear fc1', 2 * M * C * F, () => native.linearForward(x, w1, b1)],
  ['linear fc2', 2 * M * F * C, () => native.linearForward(xh, w2, b2)],
  ['fused fc1+gelu', 2 * M * C * F, () => native.linearFused(x, w1, b1, 'gelu', null)],
  ['fused fc2+res', 2 * M * F * C, () => native.linearFused(xh, w2, b2, 'none', x)],
  ['attention', 4 * B * H * N * N * D, () => native.attentionForward(qkv, H, 1 / 8, null, null, 0)],
  ['gelu', 0, () => native.unary('gelu', xh)],
  ['layernorm', 0, () => native.layernormForward(x, lnw, lnb, 1e-6)],
  ['add', 0, () => native.binary('add', x, x)],
];
const freeAll = (r: unknown) => {
  if (Array.isArray(r)) r.forEach(freeAll);
  else if (r && typeof (r as any).free === 'function') (r as any).free();
};
for (const [name, flops, fn] of cases) {
  if (filter && !name.includes(filter)) continue;
  for (let i = 0; i < 3; i++) freeAll(fn());
  const reps = Math.max(5, Math.round(2e9 / Math.max(flops, 2e7) / B));
  const walls: number[] = [], cpus: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage(); const t0 = performance.now();
    for (let i = 0; i < reps; i++) freeAll(fn());
    walls.push((performance.now() - t0) / reps);
    const c = process.cpuUsage(c0); cpus.push((c.user + c.system) / 1000 / reps);
  }
  const w = Math.min(...walls), c = [...cpus].sort((p, q) => p - q)[2];
  console.log(`${name.padEnd(14)} wall ${w.toFixed(3).padStart(8)} ms  cpu ${c.toFixed(3).padStart(8)} ms` +
    (flops ? `  ${(flops / c / 1e6).toFixed(1).padStart(6)} GFLOP/s/core  ${(flops / w / 1e6).toFixed(1).padStart(6)} GFLOP/s wall` : ''));
}
