import { vit, tensor, noGrad, tidy } from './lib/index.js';
import { native } from './lib/native.js';
import { PRESETS } from './lib/cli.ts';
const acc: Record<string, number> = {};
for (const k of Object.keys(native) as (keyof typeof native)[]) {
  const f = (native as any)[k]; if (typeof f !== 'function' || k === 'NativeTensor') continue;
  (native as any)[k] = (...a: unknown[]) => { const t = performance.now(); const r = f(...a); acc[k] = (acc[k] ?? 0) + performance.now() - t; return r; };
}
const spec = process.argv[2] ?? 'fmnist-vit'; const B = Number(process.argv[3] ?? 128);
const m = spec in PRESETS ? vit.create(PRESETS[spec]) : vit.create(spec);
const c = m.config; const x = tensor(new Float32Array(B * c.inChans * c.imgSize ** 2).map((_, i) => Math.sin(i)), [B, c.inChans, c.imgSize, c.imgSize]);
for (let i = 0; i < 2; i++) noGrad(() => tidy(() => m.forward(x).dataSync()));
for (const k in acc) acc[k] = 0;
const t0 = performance.now(); const R = 5;
for (let i = 0; i < R; i++) noGrad(() => tidy(() => m.forward(x).dataSync()));
const tot = (performance.now() - t0) / R;
console.log(spec, 'batch', B, 'ms/forward', tot.toFixed(1), 'img/s', (1000 * B / tot).toFixed(0));
for (const [k, v] of Object.entries(acc).sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(k.padEnd(20), (v / R).toFixed(2), 'ms');
