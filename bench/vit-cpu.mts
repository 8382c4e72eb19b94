// A/B helper for CPU inference work (bench/cpu-inference-notes.md): DeiT-Tiny forward under noGrad,
// reporting wall ms and process CPU ms per forward (CPU time is what to compare while the machine is
// shared: it does not count time spent waiting for a core). Optional per-native-op wall breakdown.
//   node --import tsx bench/vit-cpu.mts [batch=8] [reps=6] [--ops]
import { noGrad, tensor, tidy, vit } from '../lib/index.js';
import { native } from '../lib/native.js';

const args = process.argv.slice(2);
const B = Number(args.find((a) => /^\d+$/.test(a)) ?? 8);
const R = Number(args.filter((a) => /^\d+$/.test(a))[1] ?? 6);
const ops = args.includes('--ops');
const acc: Record<string, number> = {};
if (ops) {
  for (const k of Object.keys(native) as (keyof typeof native)[]) {
    const f = (native as any)[k];
    if (typeof f !== 'function' || k === 'NativeTensor') continue;
    (native as any)[k] = (...a: unknown[]) => {
      const t = performance.now();
      const r = f(...a);
      acc[k] = (acc[k] ?? 0) + performance.now() - t;
      return r;
    };
  }
}
const m = vit.create('deit_tiny_patch16_224', { seed: 1 }).eval();
const n = B * 3 * 224 * 224;
const data = new Float32Array(n);
for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.37) * 1.5;
const x = tensor(data, [B, 3, 224, 224]);
const fwd = () => noGrad(() => tidy(() => { m.forward(x).dataSync(); }));
for (let i = 0; i < 2; i++) fwd();
for (const k in acc) acc[k] = 0;
const walls: number[] = [];
const cpus: number[] = [];
for (let i = 0; i < R; i++) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fwd();
  walls.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  cpus.push((c.user + c.system) / 1000);
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const min = (a: number[]) => Math.min(...a);
console.log(`batch ${B}: wall ms med ${med(walls).toFixed(1)} min ${min(walls).toFixed(1)} | cpu ms med ${med(cpus).toFixed(1)} min ${min(cpus).toFixed(1)} | img/s (min wall) ${((1000 * B) / min(walls)).toFixed(1)}`);
if (ops) for (const [k, v] of Object.entries(acc).sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log('  ', k.padEnd(20), (v / R).toFixed(2), 'ms');
