/**
 * CPU GEMM bench: GFLOP/s (2·M·N·K / time) of vitrim's sgemm at ViT linear-layer shapes
 * (M×N×K = 1576×1152×384: ViT-S qkv at 8 images of 197 tokens; 1576×384×1536: ViT-S fc2;
 * 12608×768×192: fc1 of a width-192 model at 64 images),
 * C = A·B (NN) and C = A·Bᵀ (NT, the linear layer's x·Wᵀ), side by side with OpenBLAS when Debian's
 * libopenblas is installed (bench/openblas_sgemm.c, compiled here with `cc -O2 ... -lopenblas` into a
 * temp dir; a comparison only, never a dependency of vitrim).
 *
 * Method: each figure is the median of `reps` timed calls after 2 warm-up calls, into a preallocated
 * C (alpha 1, beta 0). vitrim and OpenBLAS alternate shape by shape, and the whole sweep is repeated
 * `rounds` times; the best median of each side is reported (the machine is shared, so the best
 * median is the least disturbed one). OpenBLAS runs with OPENBLAS_NUM_THREADS = vitrim's thread
 * count and with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its environment (the core type
 * it then picks is reported); when either variable is set here, a second comparison with the
 * environment as set is reported too.
 * Extra rows: each micro-kernel this CPU runs (gemmSetIsa), single-thread figures, and the
 * linearForward / linearBackward ops (which allocate their outputs).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, type NativeTensor } from '../lib/native.js';
import type { BenchOptions, Row } from './run.js';
import { median } from './stats.js';

export const filterCases = true;

const SHAPES: [number, number, number][] = [
  [1576, 1152, 384],
  [1576, 384, 1536],
  [12608, 768, 192],
];

const here = dirname(fileURLToPath(import.meta.url));


function rand(shape: number[], seed: number): NativeTensor {
  let a = seed >>> 0;
  const n = shape.reduce((x, y) => x * y, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    d[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return native.fromArray(d, shape, 'float32');
}

/** Median seconds of fn over reps calls after 2 warm-up calls. */
function timeIt(fn: () => void, reps: number): number {
  fn();
  fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(ts);
}

interface Operands {
  a: NativeTensor;
  b: NativeTensor;
  c: NativeTensor;
  free(): void;
}

function operands(M: number, N: number, K: number, tb: boolean): Operands {
  const a = rand([M, K], 1), b = rand(tb ? [N, K] : [K, N], 2), c = native.full([M, N], 0, 'float32');
  return { a, b, c, free: () => [a, b, c].forEach((t) => t.free()) };
}

function vitrimGflops(M: number, N: number, K: number, tb: boolean, reps: number, ops: Operands): number {
  const s = timeIt(() => native.gemm(false, tb, M, N, K, 1, ops.a, ops.b, 0, ops.c), reps);
  return (2 * M * N * K) / s / 1e9;
}

// ---- OpenBLAS side ----

interface Blas {
  bin?: string;
  dir?: string;
  error?: string;
}

function buildOpenblas(): Blas {
  const dir = mkdtempSync(join(tmpdir(), 'vitrim-openblas-'));
  const bin = join(dir, 'openblas_sgemm');
  const r = spawnSync('cc', ['-O2', join(here, 'openblas_sgemm.c'), '-o', bin, '-lopenblas'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    const why = r.error ? r.error.message : (r.stderr || '').split('\n').find((l) => l.trim()) ?? `exit ${r.status}`;
    return { error: `OpenBLAS not available (cc ... -lopenblas failed: ${why}); install libopenblas-dev to compare` };
  }
  return { bin, dir };
}

interface BlasInfo {
  corename: string;
  config: string;
  threads: number;
}

function blasEnv(threads: number, asSet: boolean): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  if (!asSet) {
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
  }
  return env;
}

/** Runs the OpenBLAS program on one shape: {info, gflops} or an error string. */
function blasRun(bin: string, env: NodeJS.ProcessEnv, reps: number, M: number, N: number, K: number, tb: boolean):
  { info: BlasInfo; gflops: number } | { error: string } {
  const r = spawnSync(bin, [String(reps), `${M},${N},${K},0,${tb ? 1 : 0}`], { env, encoding: 'utf8', timeout: 300_000 });
  if (r.error || r.status !== 0) return { error: `openblas_sgemm failed: ${r.error?.message ?? r.stderr}` };
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  return { info: lines[0] as BlasInfo, gflops: lines[1].gflops as number };
}

function envNote(): string {
  const set = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'].filter((k) => process.env[k] !== undefined);
  return set.length ? set.map((k) => `${k}=${process.env[k]}`).join(' ') : '';
}

export async function run(opts: BenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const threads = native.info().threads;
  const reps = opts.quick ? 5 : 15;
  const rounds = opts.quick ? 1 : 3;
  const want = (name: string, shape: string) => !opts.filter || `${name} ${shape}`.includes(opts.filter);
  const shapeStr = (M: number, N: number, K: number) => `${M}x${N}x${K}`;
  const gemmName = (tb: boolean) => `sgemm ${tb ? 'NT (x·Wᵀ)' : 'NN'}`;
  const envSet = envNote();
  const blas = buildOpenblas();
  native.gemmSetIsa('auto');
  const isa = native.gemmIsa();

  try {
    // Main comparison: alternating vitrim / OpenBLAS per shape, best median over rounds.
    interface Cell { M: number; N: number; K: number; tb: boolean; ours: number; clean: number; asSet: number; }
    const cells: Cell[] = [];
    for (const [M, N, K] of SHAPES) {
      for (const tb of [false, true]) {
        if (want(gemmName(tb), shapeStr(M, N, K))) cells.push({ M, N, K, tb, ours: 0, clean: 0, asSet: 0 });
      }
    }
    let blasInfo: BlasInfo | undefined, blasInfoSet: BlasInfo | undefined;
    let blasError = blas.error;
    for (let r = 0; r < rounds; r++) {
      for (const cell of cells) {
        const { M, N, K, tb } = cell;
        const ops = operands(M, N, K, tb);
        cell.ours = Math.max(cell.ours, vitrimGflops(M, N, K, tb, reps, ops));
        ops.free();
        if (!blas.bin) continue;
        const clean = blasRun(blas.bin, blasEnv(threads, false), reps, M, N, K, tb);
        if ('error' in clean) blasError = clean.error;
        else {
          blasInfo = clean.info;
          cell.clean = Math.max(cell.clean, clean.gflops);
        }
        if (envSet) {
          const s = blasRun(blas.bin, blasEnv(threads, true), reps, M, N, K, tb);
          if (!('error' in s)) {
            blasInfoSet = s.info;
            cell.asSet = Math.max(cell.asSet, s.gflops);
          }
        }
      }
    }
    const how = `best of ${rounds} medians of ${reps}; ${threads} threads; ${isa}`;
    const blasName = (i: BlasInfo) => `OpenBLAS ${i.config.split(' ')[1] ?? ''} ${i.corename} (${i.threads} thr)`;
    for (const cell of cells) {
      const { M, N, K, tb } = cell;
      const row: Row = { name: gemmName(tb), shape: shapeStr(M, N, K), value: cell.ours, unit: 'GFLOP/s', note: how };
      if (blasInfo && cell.clean > 0) {
        row.compare = { name: blasName(blasInfo), value: cell.clean };
        row.ratio = cell.ours / cell.clean;
        if (envSet) row.note += `; OpenBLAS with ${envSet} removed`;
      } else row.note += `; ${blasError ?? 'OpenBLAS not run'}`;
      rows.push(row);
      if (envSet && blasInfoSet && cell.asSet > 0) {
        rows.push({
          name: `${gemmName(tb)} [OpenBLAS env as set]`, shape: shapeStr(M, N, K), value: cell.ours, unit: 'GFLOP/s',
          compare: { name: blasName(blasInfoSet), value: cell.asSet }, ratio: cell.ours / cell.asSet,
          note: `OpenBLAS with ${envSet}`,
        });
      }
    }

    // Every micro-kernel this CPU runs, at the first shape (NT).
    const [M0, N0, K0] = SHAPES[0];
    const isas = (['generic', 'avx2', 'avx512'] as const).slice(0, ['generic', 'avx2', 'avx512'].indexOf(native.info().isa) + 1);
    for (const k of isas) {
      const name = `sgemm NT kernel=${k}`;
      if (!want(name, shapeStr(M0, N0, K0))) continue;
      native.gemmSetIsa(k);
      const ops = operands(M0, N0, K0, true);
      let best = 0;
      for (let r = 0; r < rounds; r++) best = Math.max(best, vitrimGflops(M0, N0, K0, true, k === 'generic' ? Math.min(reps, 5) : reps, ops));
      ops.free();
      rows.push({ name, shape: shapeStr(M0, N0, K0), value: best, unit: 'GFLOP/s', note: `${threads} threads` });
    }
    native.gemmSetIsa('auto');

    // Single thread (less exposed to other processes on a shared machine), NT, vs OpenBLAS 1 thread.
    if (!opts.quick && threads > 1) {
      try {
        native.setNumThreads(1);
        for (const [M, N, K] of SHAPES) {
          const name = 'sgemm NT 1 thread';
          if (!want(name, shapeStr(M, N, K))) continue;
          const ops = operands(M, N, K, true);
          let ours = 0, theirs = 0;
          let info: BlasInfo | undefined;
          for (let r = 0; r < rounds; r++) {
            ours = Math.max(ours, vitrimGflops(M, N, K, true, Math.max(5, reps >> 1), ops));
            if (blas.bin) {
              const b = blasRun(blas.bin, blasEnv(1, false), Math.max(5, reps >> 1), M, N, K, true);
              if (!('error' in b)) {
                theirs = Math.max(theirs, b.gflops);
                info = b.info;
              }
            }
          }
          ops.free();
          const row: Row = { name, shape: shapeStr(M, N, K), value: ours, unit: 'GFLOP/s', note: `best of ${rounds}; ${isa}` };
          if (info && theirs > 0) {
            row.compare = { name: blasName(info), value: theirs };
            row.ratio = ours / theirs;
          }
          rows.push(row);
        }
      } finally {
        native.setNumThreads(threads);
      }
    }

    // The ops as the model calls them (outputs allocated per call).
    for (const [M, N, K] of SHAPES) {
      const shape = `x[${M}, ${K}] W[${N}, ${K}]`;
      if (want('linearForward', shape)) {
        const x = rand([M, K], 3), w = rand([N, K], 4), bias = rand([N], 5);
        const s = timeIt(() => native.linearForward(x, w, bias).free(), reps);
        rows.push({ name: 'linearForward (+bias, allocates y)', shape, value: (2 * M * N * K) / s / 1e9, unit: 'GFLOP/s', note: `median of ${reps}` });
        [x, w, bias].forEach((t) => t.free());
      }
      if (want('linearBackward', shape) && !opts.quick) {
        const x = rand([M, K], 3), w = rand([N, K], 4), gy = rand([M, N], 6);
        const s = timeIt(() => native.linearBackward(gy, x, w, true).forEach((t) => t?.free()), Math.max(5, reps >> 1));
        rows.push({ name: 'linearBackward (gx, gw, gb)', shape, value: (4 * M * N * K) / s / 1e9, unit: 'GFLOP/s', note: `median of ${Math.max(5, reps >> 1)}; 4MNK flops` });
        [x, w, gy].forEach((t) => t.free());
      }
    }
  } finally {
    native.gemmSetIsa('auto');
    if (blas.dir) rmSync(blas.dir, { recursive: true, force: true });
  }
  return rows;
}
