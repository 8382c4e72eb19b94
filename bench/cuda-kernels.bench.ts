/**
 * CUDA kernel bench (the shapes of `../shared/gpu/torch_anchors.py`, so the figures line up with
 * PyTorch's): device copy, fused attention forward/backward (256×6×{197,138,68}×64, bf16 and fp32),
 * token gather 256×197×{384,768} → 138, LayerNorm forward 50432×384, the DeiT-S linear layers, and
 * the dispatch cost of a tiny op. Where no GPU is visible it returns no rows and says why.
 *
 * Timing: every op is enqueued `inner` times back to back, then the stream is synchronised; the
 * figure is the median over `reps` such groups of (wall time / inner). Launches are asynchronous, so
 * this is GPU time as long as the host enqueues faster than the GPU runs (true for every kernel here
 * but the tiny-op row, which measures exactly the host side).
 *
 * Side by side with PyTorch: set VITRIM_TORCH_JSON to the JSON that torch_anchors.py wrote in the
 * same call on the same machine; rows then carry PyTorch's figure and the ratio (vitrim/PyTorch:
 * below 1 is faster for ms, above 1 is faster for TB/s).
 *
 * Fractions of the device, in the notes: memory-bound rows give their share of the `copy` row of the
 * same run and of the stated HBM bandwidth; attention and linear rows their TFLOP/s and its share of
 * the stated peak of the units they run on (bench/peaks.ts: datasheet figures, dense).
 */
import { existsSync, readFileSync } from 'node:fs';
import { native, type DType, type NativeTensor } from '../lib/native.js';
import type { BenchOptions, Row } from './run.js';
import { withCublasLt, withEnv } from './env.js';
import { median } from './stats.js';
import { addNote, pctOf, statedPeaks } from './peaks.js';

export const filterCases = true;

type TorchJson = Record<string, Record<string, number>>;

function torchFigures(): TorchJson | null {
  const p = process.env.VITRIM_TORCH_JSON;
  if (!p || !existsSync(p)) return null;
  return JSON.parse(readFileSync(p, 'utf8')) as TorchJson;
}


/** Median ms per call: `inner` calls enqueued, then one synchronize. Frees each call's outputs. */
function gpuTime(fn: () => (NativeTensor | null)[] | void, reps: number, inner: number): number {
  const run = () => {
    for (let i = 0; i < inner; i++) {
      const out = fn();
      if (out) for (const t of out) t?.free();
    }
    native.synchronize('cuda');
  };
  run(); // warm-up: allocator cache, cuBLASLt heuristics, module load
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run();
    ts.push((performance.now() - t0) / inner);
  }
  return median(ts);
}

/** Random cpu tensor (uniform in [-1, 1)) moved to cuda as `dtype`. */
function rand(shape: number[], dtype: DType, seed: number): NativeTensor {
  const x = native.random(shape, 'uniform', seed, 0);
  const y = native.affine(x, 2, -1);
  x.free();
  const c = dtype === 'float32' ? y : native.cast(y, dtype);
  const g = native.toDevice(c, 'cuda');
  if (c !== y) c.free();
  y.free();
  return g;
}

const short = (d: DType) => (d === 'bfloat16' ? 'bfloat16' : 'float32');

/** Host cost of one tiny op (JS -> napi -> backend -> kernel or launch), call + free, in µs. */
function dispatchRow(device: 'cpu' | 'cuda', reps: number): Row {
  const c = native.fromArray(new Float32Array([1.5]), [1], 'float32');
  const x = device === 'cpu' ? c : native.toDevice(c, 'cuda');
  const n = 20000;
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) native.affine(x, 2, 1).free();
    if (device === 'cuda') native.synchronize('cuda');
    ts.push(((performance.now() - t0) / n) * 1000);
  }
  x.free();
  if (x !== c) c.free();
  return { name: `dispatch affine(x[1]) ${device}`, shape: '1', value: median(ts), unit: 'us', note: 'call + free' };
}

/**
 * What autograd's backward adds per graph node to make a failed node free what it made
 * (lib/handles.ts freeOnThrow: native.trackBegin + trackEnd around it), in µs, beside `dispatch` (a
 * tiny op's call + free measured just before in the same run): their ratio.
 */
function trackScopeRow(dispatch: Row, reps: number): Row {
  const n = 20000;
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) native.trackEnd(native.trackBegin(), false);
    ts.push(((performance.now() - t0) / n) * 1000);
  }
  const value = median(ts);
  return { name: 'dispatch trackBegin + trackEnd cpu', shape: '-', value, unit: 'us', compare: { name: dispatch.name, value: dispatch.value },
    ratio: value / dispatch.value, note: 'per backward node' };
}

/** The dispatch rows: cuda where it is available; the cpu one with the tracking scope beside it. */
function dispatchRows(devices: readonly ('cpu' | 'cuda')[], reps: number): Row[] {
  const rows = devices.map((d) => dispatchRow(d, reps));
  rows.push(trackScopeRow(rows[0], reps));
  return rows;
}

/**
 * GPU ms per call of fn, from a CUDA graph of `inner` calls replayed `reps` times (median): for
 * batch-1 kernels, which run for a few µs, about what one launch from Node costs, so that timing
 * them eagerly would time the launches. fn runs once eagerly first (module load, heuristics); the
 * outputs live until the graph is destroyed.
 */
export function graphTime(fn: () => (NativeTensor | null)[], reps: number, inner: number): number {
  for (const t of fn()) t?.free();
  native.synchronize('cuda');
  const outs: (NativeTensor | null)[] = [];
  native.graphBegin();
  try {
    for (let i = 0; i < inner; i++) outs.push(...fn());
  } catch (e) {
    native.graphAbort();
    for (const t of outs) t?.free();
    throw e;
  }
  const g = native.graphEnd();
  try {
    native.graphReplay(g);
    native.synchronize('cuda');
    const ts: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      native.graphReplay(g);
      native.synchronize('cuda');
      ts.push((performance.now() - t0) / inner);
    }
    return median(ts);
  } finally {
    for (const t of outs) t?.free();
    native.graphDestroy(g);
  }
}

export async function run(opts: BenchOptions): Promise<Row[]> {
  const reps0 = opts.quick ? 3 : 9;
  const want0 = (name: string) => !opts.filter || name.includes(opts.filter);
  const cuda = native.backends().find((b) => b.device === 'cuda')!;
  if (!cuda.available) {
    console.log(`cuda unavailable, only the cpu dispatch row: ${cuda.reasons.join('; ')}`);
    return want0('dispatch') ? dispatchRows(['cpu'], reps0) : [];
  }
  console.log(`cuda: ${cuda.detail}`);
  native.setAllowTf32(false);
  const torch = torchFigures();
  const reps = opts.quick ? 3 : 9;
  const rows: Row[] = [];
  const want = (name: string) => !opts.filter || name.includes(opts.filter);
  // Fractions of the device: stated peaks (datasheet) and the copy bandwidth measured below.
  const peaks = statedPeaks(cuda.detail);
  console.log(peaks ? `stated peaks: ${JSON.stringify(peaks)}` : 'no stated peaks for this device: rows carry no fractions');
  let copyTBs: number | undefined;
  /** A memory-bound row's note: its fraction of the measured copy and of the stated HBM bandwidth. */
  const bwNote = (tbs: number, note?: string) => {
    let n = note;
    if (copyTBs !== undefined) n = addNote(n, `${((100 * tbs) / copyTBs).toFixed(0)}% of copy (${copyTBs.toFixed(2)} TB/s, this run)`);
    if (peaks) n = addNote(n, pctOf(tbs, peaks.hbm, 'the stated HBM bandwidth', 'TB/s'));
    return n;
  };
  /**
   * A compute row's note: TFLOP/s as a fraction of the peak of the units the kernel runs on: bf16
   * tensor cores; for float32, fp32 FMA, or a third of the TF32 rate for 3xTF32 (three tensor-core
   * products per multiply).
   */
  const flopNote = (tflops: number, unit: 'bf16' | 'fp32' | '3xtf32', showRate = false) => {
    let n = showRate ? `${tflops.toFixed(1)} TFLOP/s` : undefined;
    if (peaks) {
      n = addNote(n, unit === 'bf16' ? pctOf(tflops, peaks.bf16, 'the bf16 tensor peak', 'TFLOP/s')
        : unit === 'fp32' ? pctOf(tflops, peaks.fp32, 'the fp32 FMA peak', 'TFLOP/s')
          : pctOf(tflops, +(peaks.tf32 / 3).toFixed(1), 'a third of the TF32 tensor peak', 'TFLOP/s'));
    }
    return n;
  };
  // FLOP of attention as FlashAttention counts them: QKᵀ and PV, 4·B·H·N²·D forward; the backward
  // 2.5 times that (its five products, the recomputed QKᵀ included).
  const attnFlop = (B: number, H: number, N: number, D: number) => 4 * B * H * N * N * D;
  const cmp = (row: Row, key: string, field: string, unit: 'ms' | 'TB/s') => {
    const v = torch?.[key]?.[field];
    if (v !== undefined) {
      const tv = unit === 'TB/s' ? v / 1000 : v; // torch_anchors writes GB/s
      row.compare = { name: `torch ${key}`, value: tv };
      row.ratio = row.value / tv;
    }
    rows.push(row);
  };

  // ---- device copy (the bandwidth roof for the memory-bound kernels) ----
  if (want('copy')) {
    const n = 64 * 1024 * 1024;
    const x = rand([n], 'float32', 1);
    const ms = gpuTime(() => [native.copy(x)], reps, 10);
    copyTBs = (2 * n * 4) / ms / 1e9;
    cmp({ name: 'copy', shape: `${n} f32`, value: copyTBs, unit: 'TB/s',
      note: peaks ? pctOf(copyTBs, peaks.hbm, 'the stated HBM bandwidth', 'TB/s') : undefined }, 'copy', 'GBps', 'TB/s');
    x.free();
  }

  // ---- attention ----
  for (const N of [197, 138, 68]) {
    for (const dtype of ['bfloat16', 'float32'] as DType[]) {
      const name = `attention ${short(dtype)}`;
      if (!want(name) && !want('attention')) continue;
      const B = 256, H = 6, D = 64, C = H * D;
      const qkv = rand([B, N, 3 * C], dtype, 2);
      const gout = rand([B, N, C], dtype, 3);
      const scale = 1 / Math.sqrt(D);
      const key = `${B}x${H}x${N}x${D}_${short(dtype)}`;
      const fwd = gpuTime(() => native.attentionForward(qkv, H, scale, null, null, 0), reps, 10);
      const flop = attnFlop(B, H, N, D);
      // At D = 64 the float32 forward's default is the 3xTF32 kernel (fwd_path in attention.cu).
      cmp({ name: `${name} fwd`, shape: `${B}x${H}x${N}x${D}`, value: fwd, unit: 'ms',
        note: flopNote(flop / fwd / 1e9, dtype === 'bfloat16' ? 'bf16' : '3xtf32', true) }, `sdpa_fwd_${key}`, 'ms', 'ms');
      if (dtype === 'float32') {
        // The SIMT FMA kernel that 3xTF32 replaced as the float32 default (same accuracy bound).
        const simt = withEnv('VITRIM_CUDA_ATTN_F32', 'simt', () =>
          gpuTime(() => native.attentionForward(qkv, H, scale, null, null, 0), reps, 10));
        cmp({ name: `${name} fwd (SIMT kernel)`, shape: `${B}x${H}x${N}x${D}`, value: simt, unit: 'ms',
          note: flopNote(flop / simt / 1e9, 'fp32', true) }, `sdpa_fwd_${key}`, 'ms', 'ms');
      }
      const [out, stats] = native.attentionForward(qkv, H, scale, null, null, 0);
      const bwd = gpuTime(() => native.attentionBackward(gout, qkv, H, scale, null, null, 0, out, stats), reps, 5);
      // The float32 backward runs the SIMT kernels (fp32 FMA) whatever the forward's path.
      cmp({ name: `${name} bwd`, shape: `${B}x${H}x${N}x${D}`, value: bwd, unit: 'ms',
        note: flopNote((2.5 * flop) / bwd / 1e9, dtype === 'bfloat16' ? 'bf16' : 'fp32', true) }, `sdpa_bwd_${key}`, 'ms', 'ms');
      for (const t of [qkv, gout, out, stats]) t.free();
    }
  }

  // ---- configuration sweeps (only with --filter tune, attention-tune or gemm-tune) ----
  const tune = (what: string) => opts.filter !== undefined && (opts.filter === 'tune' || opts.filter.includes(what));
  // Sweeps the tensor-core forwards' CTA size and key fill through VITRIM_CUDA_ATTN_FWD, so that one
  // GPU run shows whether the defaults (make_config in native/cuda/attention.cu) are the best.
  if (tune('attention-tune')) {
    for (const N of [197, 138, 68]) {
      for (const dtype of ['bfloat16', 'float32'] as DType[]) {
        const B = 256, H = 6, D = 64, C = H * D;
        const qkv = rand([B, N, 3 * C], dtype, 2);
        const scale = 1 / Math.sqrt(D);
        const key = `${B}x${H}x${N}x${D}_${short(dtype)}`;
        const defMs = gpuTime(() => native.attentionForward(qkv, H, scale, null, null, 0), reps, 10);
        cmp({ name: `attention-tune ${short(dtype)} fwd default`, shape: `${B}x${H}x${N}x${D}`, value: defMs, unit: 'ms' },
          `sdpa_fwd_${key}`, 'ms', 'ms');
        for (const warps of dtype === 'float32' ? [1, 2, 4] : [2, 4, 8])
          for (const fill of [64, 128, 256]) {
            const ms = withEnv('VITRIM_CUDA_ATTN_FWD', `warps=${warps},fill=${fill}`, () =>
              gpuTime(() => native.attentionForward(qkv, H, scale, null, null, 0), reps, 10));
            cmp({ name: `attention-tune ${short(dtype)} fwd warps=${warps} fill=${fill}`, shape: `${B}x${H}x${N}x${D}`,
              value: ms, unit: 'ms' }, `sdpa_fwd_${key}`, 'ms', 'ms');
          }
        qkv.free();
      }
    }
    // Batch 1 (the graph-replayed inference): 6 heads x 2 CTAs of 7 warps at the default leave most
    // SMs idle; fewer warps a CTA give more, smaller CTAs. In µs, default first.
    for (const dtype of ['bfloat16', 'float32'] as DType[]) {
      const B = 1, N = 197, H = 6, D = 64, C = H * D;
      const qkv = rand([B, N, 3 * C], dtype, 2);
      const scale = 1 / Math.sqrt(D);
      for (const warps of [undefined, 1, 2, 4, ...(dtype === 'float32' ? [] : [8])]) {
        const us = withEnv('VITRIM_CUDA_ATTN_FWD', warps === undefined ? undefined : `warps=${warps}`, () =>
          graphTime(() => native.attentionForward(qkv, H, scale, null, null, 0), reps, 50)) * 1e3;
        rows.push({ name: `attention-tune ${short(dtype)} fwd B1 ${warps === undefined ? 'default' : `warps=${warps}`}`,
          shape: `${B}x${H}x${N}x${D}`, value: us, unit: 'µs', note: 'graph-replayed' });
      }
      qkv.free();
    }
  }

  // The tensor-core linears' CTA tiles (VITRIM_CUDA_GEMM_F32_TILE, VITRIM_CUDA_GEMM_BF16_TILE) at the
  // DeiT-S B256 shapes, each against cuBLASLt (+ the GELU pass) timed in the same run.
  if (tune('gemm-tune')) {
    const M = 256 * 197;
    const kernels = [
      { dtype: 'float32', env: 'VITRIM_CUDA_GEMM_F32', value: '3xtf32', label: 'float32 {act} 3xTF32', lt: 'cuBLASLt SGEMM' },
      { dtype: 'bfloat16', env: 'VITRIM_CUDA_GEMM_BF16', value: 'mma', label: 'bf16 {act} mma', lt: 'cuBLASLt bf16' },
    ] as const;
    for (const k of kernels) {
      for (const [K, N, act] of [[384, 1152, 'none'], [384, 1536, 'gelu'], [1536, 384, 'none']] as const) {
        const x = rand([M, K], k.dtype, 8), w = rand([N, K], k.dtype, 9), b = rand([N], k.dtype, 10);
        const flop = 2 * M * N * K;
        const lt = flop / withCublasLt(() => gpuTime(() => [native.linearFused(x, w, b, act, null)], reps, 5)) / 1e9;
        for (const tile of ['128x128', '128x64', '64x128', '64x64']) {
          const v = withEnv(k.env, k.value, () => withEnv(`${k.env}_TILE`, tile, () =>
            flop / gpuTime(() => [native.linearFused(x, w, b, act, null)], reps, 5) / 1e9));
          rows.push({
            name: `gemm-tune ${k.label.replace('{act}', act)} tile=${tile}`, shape: `${M}x${K}->${N}`, value: v, unit: 'TFLOP/s',
            compare: { name: `${k.lt}${act === 'gelu' ? ' + GELU pass' : ''}`, value: lt }, ratio: v / lt,
            note: flopNote(v, k.dtype === 'bfloat16' ? 'bf16' : '3xtf32'),
          });
        }
        for (const t of [x, w, b]) t.free();
      }
    }
  }

  // ---- token gather ----
  for (const C of [384, 768]) {
    for (const dtype of ['bfloat16', 'float32'] as DType[]) {
      const name = `gather ${short(dtype)}`;
      if (!want(name) && !want('gather')) continue;
      const B = 256, N = 197, K = 138;
      const x = rand([B, N, C], dtype, 4);
      // Each row keeps a sorted random subset of K tokens (as a pruning policy would).
      const idx = new Int32Array(B * K);
      let s = 12345;
      for (let b = 0; b < B; b++) {
        const perm = Array.from({ length: N }, (_, i) => i);
        for (let i = N - 1; i > 0; i--) {
          s = (s * 1103515245 + 12345) >>> 0;
          const j = s % (i + 1);
          [perm[i], perm[j]] = [perm[j], perm[i]];
        }
        perm.slice(0, K).sort((a, c) => a - c).forEach((v, k) => (idx[b * K + k] = v));
      }
      const ic = native.fromArray(idx, [B, K], 'int32');
      const ig = native.toDevice(ic, 'cuda');
      ic.free();
      const bytes = 2 * B * K * C * (dtype === 'float32' ? 4 : 2);
      // Uploaded indices carry known bounds, which prove them in range: no device-side check at all.
      // Indices the host knows nothing about (here a cast of the same values, as a policy computing
      // them on the GPU would make) are checked in the kernel: immediate checks (the default)
      // synchronise after every call to report a bad index at once; deferred checks report it at
      // the next read instead, so calls queue back to back.
      const asFloat = native.cast(ig, 'float32');
      const unknown = native.cast(asFloat, 'int32');
      asFloat.free();
      for (const [label, ids, mode] of [['known bounds', ig, 'immediate'], ['device-checked, immediate', unknown, 'immediate'],
        ['device-checked, deferred', unknown, 'deferred']] as const) {
        native.setDeviceChecks(mode);
        const ms = gpuTime(() => [native.gatherTokens(x, ids)], reps, 20);
        cmp({ name: `${name} (${label})`, shape: `${B}x${N}x${C}->${K}`, value: bytes / ms / 1e9, unit: 'TB/s',
          note: bwNote(bytes / ms / 1e9) },
          `gather_${B}x${N}x${C}_to${K}_${short(dtype)}`, 'GBps', 'TB/s');
      }
      unknown.free();
      native.setDeviceChecks('immediate');
      x.free();
      ig.free();
    }
  }

  // ---- LayerNorm forward ----
  for (const dtype of ['bfloat16', 'float32'] as DType[]) {
    const name = `layernorm ${short(dtype)}`;
    if (!want(name) && !want('layernorm')) continue;
    const R = 256 * 197, C = 384;
    const x = rand([R, C], dtype, 5), w = rand([C], dtype, 6), b = rand([C], dtype, 7);
    const ms = gpuTime(() => native.layernormForward(x, w, b, 1e-6), reps, 20);
    const bytes = 2 * R * C * (dtype === 'float32' ? 4 : 2);
    cmp({ name: `${name} fwd`, shape: `${R}x${C}`, value: bytes / ms / 1e9, unit: 'TB/s', note: bwNote(bytes / ms / 1e9) },
      `layernorm_fwd_${R}x${C}_${short(dtype)}`, 'GBps', 'TB/s');
    for (const t of [x, w, b]) t.free();
  }

  // ---- LayerNorm float32 -> bfloat16 (autocast's norm before a bf16 GEMM) vs the norm then a cast ----
  if (want('layernorm f32->bf16') || want('layernorm')) {
    const R = 256 * 197, C = 384;
    const x = rand([R, C], 'float32', 5), w = rand([C], 'float32', 6), b = rand([C], 'float32', 7);
    const fused = gpuTime(() => native.layernormForward(x, w, b, 1e-6, 'bfloat16'), reps, 20);
    const composed = gpuTime(() => {
      const [y, m, r] = native.layernormForward(x, w, b, 1e-6);
      const c = native.cast(y, 'bfloat16');
      y.free();
      return [c, m, r];
    }, reps, 20);
    rows.push({
      name: 'layernorm f32->bf16 fwd', shape: `${R}x${C}`, value: fused, unit: 'ms',
      note: bwNote(R * C * 6 / fused / 1e9,
        `norm then cast (same bits): ${composed.toFixed(4)} ms, ratio ${(composed / fused).toFixed(2)}x; ${(R * C * 6 / fused / 1e9).toFixed(2)} TB/s`),
    });
    for (const t of [x, w, b]) t.free();
  }

  // ---- autocast's residual linears (proj, fc2 at B256): bf16 GEMM + float32 residual in its C vs
  // the bf16 GEMM then the mixed-dtype add ----
  if (want('linear residual') || want('linear')) {
    const M = 256 * 197;
    for (const [K, N] of [[384, 384], [1536, 384]] as const) {
      const x = rand([M, K], 'bfloat16', 8), w = rand([N, K], 'bfloat16', 9), b = rand([N], 'float32', 10);
      const bl = native.cast(b, 'bfloat16');
      const res = rand([M, N], 'float32', 11);
      const fused = withCublasLt(() => gpuTime(() => [native.linearFused(x, w, b, 'none', res)], reps, 5));
      const mma = withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', () => gpuTime(() => [native.linearFused(x, w, b, 'none', res)], reps, 5));
      const composed = withCublasLt(() => gpuTime(() => {
        const y = native.linearFused(x, w, bl, 'none', null);
        const z = native.binary('add', res, y);
        y.free();
        return [z];
      }, reps, 5));
      rows.push({
        name: 'linear bf16 + f32 residual', shape: `${M}x${K}->${N}`, value: fused, unit: 'ms',
        note: `bf16 GEMM then mixed add: ${composed.toFixed(4)} ms, ratio ${(composed / fused).toFixed(2)}x`,
      });
      rows.push({
        name: 'linear bf16 + f32 residual (mma kernel)', shape: `${M}x${K}->${N}`, value: mma, unit: 'ms',
        compare: { name: 'cuBLASLt mixed-type GEMM', value: fused }, ratio: fused / mma,
      });
      for (const t of [x, w, b, bl, res]) t.free();
    }
  }

  // ---- DeiT-S linears at batch 256 (M = 256·197) ----
  for (const dtype of ['bfloat16', 'float32'] as DType[]) {
    const name = `linear ${short(dtype)}`;
    if (!want(name) && !want('linear')) continue;
    const M = 256 * 197;
    for (const [K, N, act] of [[384, 1152, 'none'], [384, 1536, 'gelu'], [1536, 384, 'none']] as const) {
      const x = rand([M, K], dtype, 8), w = rand([N, K], dtype, 9), b = rand([N], dtype, 10);
      const ms = withCublasLt(() => gpuTime(() => [native.linearFused(x, w, b, act, null)], reps, 5));
      const tflops = (2 * M * N * K) / ms / 1e9;
      rows.push({ name: `${name} ${act}`, shape: `${M}x${K}->${N}`, value: tflops, unit: 'TFLOP/s',
        note: flopNote(tflops, dtype === 'bfloat16' ? 'bf16' : 'fp32') });
      if (dtype === 'bfloat16') {
        // the opt-in bf16 mma kernel (GELU in its epilogue) against cuBLASLt (+ the GELU pass) just
        // measured: the figure that decides which one bf16 linears use
        const tc = withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', () => gpuTime(() => [native.linearFused(x, w, b, act, null)], reps, 5));
        const v = (2 * M * N * K) / tc / 1e9;
        rows.push({
          name: `${name} ${act} (mma kernel)`, shape: `${M}x${K}->${N}`, value: v, unit: 'TFLOP/s',
          compare: { name: `cuBLASLt bf16${act === 'gelu' ? ' + GELU pass' : ''}`, value: tflops }, ratio: v / tflops,
          note: flopNote(v, 'bf16'),
        });
      }
      if (dtype === 'float32') {
        // the opt-in 3xTF32 tensor-core kernel (GELU in its epilogue) against cuBLASLt SGEMM (+ the
        // GELU pass) just measured: the figure that decides which one float32 linears use
        const tc = withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () => gpuTime(() => [native.linearFused(x, w, b, act, null)], reps, 5));
        const v = (2 * M * N * K) / tc / 1e9;
        rows.push({
          name: `${name} ${act} (3xTF32 kernel)`, shape: `${M}x${K}->${N}`, value: v, unit: 'TFLOP/s',
          compare: { name: `cuBLASLt SGEMM${act === 'gelu' ? ' + GELU pass' : ''}`, value: tflops }, ratio: v / tflops,
          note: flopNote(v, '3xtf32'),
        });
      }
      for (const t of [x, w, b]) t.free();
    }
  }

  // ---- DeiT-S linears at batch 1 (M = 197): our tensor-core kernels (their plan picks small tiles
  // and split-K here) against cuBLASLt on the same operands, in µs, graph-replayed (as the batch-1
  // plan runs them) ----
  if (want('linear b1') || want('linear')) {
    const M = 197;
    for (const dtype of ['float32', 'bfloat16'] as DType[]) {
      const [env, value, label] = dtype === 'float32'
        ? ['VITRIM_CUDA_GEMM_F32', '3xtf32', '3xTF32 kernel'] : ['VITRIM_CUDA_GEMM_BF16', 'mma', 'mma kernel'];
      for (const [K, N, act] of [[384, 1152, 'none'], [384, 384, 'none'], [384, 1536, 'gelu'], [1536, 384, 'none']] as const) {
        const x = rand([M, K], dtype, 8), w = rand([N, K], dtype, 9), b = rand([N], dtype, 10);
        const lt = withCublasLt(() => graphTime(() => [native.linearFused(x, w, b, act, null)], reps, 50)) * 1e3;
        const tc = withEnv(env, value, () => graphTime(() => [native.linearFused(x, w, b, act, null)], reps, 50)) * 1e3;
        rows.push({
          name: `linear ${short(dtype)} B1 ${act} (${label})`, shape: `${M}x${K}->${N}`, value: tc, unit: 'µs',
          compare: { name: `cuBLASLt${act === 'gelu' ? ' + GELU pass' : ''}`, value: lt }, ratio: lt / tc,
          note: 'graph-replayed',
        });
        for (const t of [x, w, b]) t.free();
      }
    }
  }

  if (want('dispatch')) rows.push(...dispatchRows(['cpu', 'cuda'], reps));
  return rows;
}
