// A/B helper (bench/cpu-inference-notes.md): onnxruntime-node on bench/.ort/deit-tiny.onnx (created by
// `npm run bench -- --filter vit`) with ONE intra-op thread, timed by process CPU time, so its cost per
// image can be compared with vitrim's (VITRIM_NUM_THREADS=1 node --import tsx bench/vit-cpu.mts B)
// while the machine is shared. ORT's thread pool spins, so only the 1-thread CPU time is meaningful.
//   node --import tsx bench/ort-cpu.mts [batch=8] [reps=6] [threads=1]
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const B = Number(process.argv[2] ?? 8), R = Number(process.argv[3] ?? 6), threads = Number(process.argv[4] ?? 1);
const require = createRequire(join(here, '.ort', 'package.json'));
const ort = require('onnxruntime-node');
const s = await ort.InferenceSession.create(join(here, '.ort', 'deit-tiny.onnx'), {
  intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
});
const n = B * 3 * 224 * 224;
const data = new Float32Array(n);
for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.37) * 1.5;
const input = new ort.Tensor('float32', data, [B, 3, 224, 224]);
const feeds = { [s.inputNames[0]]: input };
for (let i = 0; i < 2; i++) await s.run(feeds);
const walls: number[] = [], cpus: number[] = [];
for (let i = 0; i < R; i++) {
  const c0 = process.cpuUsage(); const t0 = performance.now();
  await s.run(feeds);
  walls.push(performance.now() - t0);
  const c = process.cpuUsage(c0); cpus.push((c.user + c.system) / 1000);
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
console.log(`ort ${threads}t batch ${B}: wall ms med ${med(walls).toFixed(1)} min ${Math.min(...walls).toFixed(1)} | cpu ms med ${med(cpus).toFixed(1)} min ${Math.min(...cpus).toFixed(1)} | img/s (min wall) ${((1000 * B) / Math.min(...walls)).toFixed(1)}`);
