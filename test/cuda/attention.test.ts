/**
 * CUDA fused attention (attentionForward / attentionBackward on cuda) against the CPU op on fresh
 * random inputs: the CPU runs on the inputs rounded through the dtype, the GPU on the same values
 * stored in that dtype; fp32 must match to 1e-5, bf16 to 1e-2 (‖got − want‖/‖want‖, the q, k and v
 * parts of gqkv judged separately). Covers both kernel paths (bf16 with D ∈ {32, 64, 128} runs
 * the tensor-core kernels, fp32 forwards with D ∈ {32, 64} the 3xTF32 tensor-core kernel (also
 * compared with the SIMT one it replaces), the fp32 backward and other head dims the SIMT kernels), every keep mode (none,
 * fractional, hard 0/1) with eps 1e-6 and a large eps (where the gradient through the row max
 * shows), head gates with a hard 0 (whose gate gradient is recomputed), bf16 keep/gate, sequence
 * lengths 1 … 260 (one and several key fills, partial 16-row blocks), ViT shapes, the PyTorch
 * fixture, determinism, empty inputs and bad input. Skipped where no GPU is visible.
 */
import { expect, it } from 'vitest';
import { withEnv } from '../../bench/env.js';
import { native, type NativeTensor } from '../../lib/native.js';
import { readFixture } from '../fixture-reader.js';
import { expectCode, nt, randn, randu, rng, RUN_SEED } from '../helpers.js';
import { cudaAs, describeCuda, emulated, expectRel, FLOAT_DTYPES, roundTo, TOL, toCuda, values } from './helpers.js';

type KeepMode = 'none' | 'frac' | 'hard';
type FDType = 'float32' | 'bfloat16';

interface Case {
  B: number;
  N: number;
  H: number;
  D: number;
  mode: KeepMode;
  gate: boolean;
  eps: number;
  dtype: FDType;
  seed: number;
  /** multiplies the default scale D^-0.5 (peaked scores) */
  scaleMul?: number;
  /** dtype of keep / headGate on the GPU (default float32) */
  auxDtype?: FDType;
}

function makeKeep(mode: KeepMode, B: number, N: number, seed: number): Float32Array | null {
  if (mode === 'none') return null;
  if (mode === 'frac') return randu([B, N], seed, 0, 1);
  const r = rng(seed);
  const k = new Float32Array(B * N);
  for (let i = 0; i < k.length; i++) k[i] = r() < 0.5 ? 0 : 1;
  if (N > 1) k[0] = 0;
  if (k.length > 1) k[k.length - 1] = 1;
  return k;
}

function makeGate(B: number, H: number, seed: number): Float32Array {
  const g = randu([B, H], seed, 0.2, 1.5);
  if (H > 1) g[1] = 0; // a hard-dropped head: out 0, gate gradient recomputed from q, k, v
  return g;
}

/** The q, k and v parts of a [rows, 3C] array. */
function qkvParts(a: Float32Array, C: number): Float32Array[] {
  const rows = a.length / (3 * C);
  const parts = [new Float32Array(rows * C), new Float32Array(rows * C), new Float32Array(rows * C)];
  for (let r = 0; r < rows; r++) for (let p = 0; p < 3; p++) parts[p].set(a.subarray(r * 3 * C + p * C, r * 3 * C + (p + 1) * C), r * C);
  return parts;
}

function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/**
 * expectRel, except where the reference is exactly zero (e.g. gq and gk at N = 1, where the one
 * key gets probability 1 whatever the scores): then ‖got‖ must be ≤ tol·ref, ref the norm of a
 * related nonzero result.
 */
function expectRelOrZero(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, ref: number, what: string): void {
  if (norm(want) > 0) {
    expectRel(got, want, tol, what);
    return;
  }
  const e = norm(got);
  if (!(e <= tol * ref)) throw new Error(`${what}: the reference is 0 but ‖got‖ = ${e.toExponential(3)} > ${tol} x ${ref.toExponential(3)}`);
}

function cpuAux(x: Float32Array | null, shape: number[], dt: FDType): NativeTensor | null {
  return x ? roundTo(nt(x, shape), dt) : null;
}
function gpuAux(x: Float32Array | null, shape: number[], dt: FDType): NativeTensor | null {
  return x ? cudaAs(nt(x, shape), dt) : null;
}

function runCase(c: Case): void {
  const { B, N, H, D, mode, eps, dtype, seed } = c;
  const C = H * D;
  const aux = c.auxDtype ?? 'float32';
  const scale = (c.scaleMul ?? 1) / Math.sqrt(D);
  const qkv = randn([B, N, 3 * C], seed);
  const keep = makeKeep(mode, B, N, seed + 1);
  const gate = c.gate ? makeGate(B, H, seed + 2) : null;
  const gout = randn([B, N, C], seed + 3);
  const what = `${dtype} B${B} N${N} H${H} D${D} keep=${mode} gate=${c.gate} eps=${eps} aux=${aux} (seed ${RUN_SEED})`;

  // CPU reference on the rounded inputs (keep and gate rounded through their GPU dtype).
  const cq = roundTo(nt(qkv, [B, N, 3 * C]), dtype);
  const ck = cpuAux(keep, [B, N], aux);
  const cg = cpuAux(gate, [B, H], aux);
  const [cOut, cStats] = native.attentionForward(cq, H, scale, ck, cg, eps);
  const cgo = roundTo(nt(gout, [B, N, C]), dtype);
  const [cGqkv, cGkeep, cGgate] = native.attentionBackward(cgo, cq, H, scale, ck, cg, eps, cOut, cStats);

  const gq = cudaAs(nt(qkv, [B, N, 3 * C]), dtype);
  const gk = gpuAux(keep, [B, N], aux);
  const gg = gpuAux(gate, [B, H], aux);
  const [out, stats] = native.attentionForward(gq, H, scale, gk, gg, eps);
  expect(out.device).toBe('cuda');
  expect(out.dtype).toBe(dtype);
  expect(out.shape).toEqual([B, N, C]);
  expect(stats.device).toBe('cuda');
  expectRel(out, cOut, TOL[dtype], `${what} out`);

  const [gqkv, gkeep, ggate] = native.attentionBackward(cudaAs(nt(gout, [B, N, C]), dtype), gq, H, scale, gk, gg, eps,
    out, stats);
  expect(gqkv.dtype).toBe(dtype);
  expect(gqkv.shape).toEqual([B, N, 3 * C]);
  const got = qkvParts(values(gqkv), C);
  const want = qkvParts(values(cGqkv), C);
  const ref = norm(want[2]);
  ['gq', 'gk', 'gv'].forEach((name, p) => expectRelOrZero(got[p], want[p], TOL[dtype], ref, `${what} ${name}`));
  expect(gkeep === null).toBe(keep === null);
  expect(ggate === null).toBe(gate === null);
  if (keep) {
    expect(gkeep!.dtype).toBe(aux);
    expect(gkeep!.shape).toEqual([B, N]);
    // (at N = 1 there is no off-diagonal key: gkeep is exactly 0)
    expectRelOrZero(values(gkeep!), values(cGkeep!), TOL[dtype], ref, `${what} gkeep`);
  }
  if (gate) {
    expect(ggate!.dtype).toBe(aux);
    // ggate[b,h] = Σ_i go_i·O_i (O ungated) can cancel: judge it against the scale of its terms,
    // Σ_i |go_i·O_i|, with O from an ungated CPU forward (so dropped heads are judged too).
    const [ungated] = native.attentionForward(cq, H, scale, ck, null, eps);
    const o = values(ungated);
    const go = values(cgo);
    const terms = new Float64Array(B * H);
    for (let b = 0; b < B; b++)
      for (let i = 0; i < N; i++)
        for (let h = 0; h < H; h++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += go[(b * N + i) * C + h * D + d] * o[(b * N + i) * C + h * D + d];
          terms[b * H + h] += Math.abs(s);
        }
    const g = values(ggate!);
    const w = values(cGgate!);
    let num = 0;
    let den = 0;
    for (let k = 0; k < B * H; k++) {
      num += (g[k] - w[k]) ** 2;
      den += terms[k] ** 2;
    }
    const e = Math.sqrt(num / (den || 1));
    if (!(e <= TOL[dtype])) throw new Error(`${what} gheadGate: error ${e.toExponential(3)} relative to its terms > ${TOL[dtype]}`);
    // The dropped head's output is exactly 0 and its gate gradient is not.
    if (H > 1) {
      const ov = values(out);
      for (let i = 0; i < N; i++) for (let d = 0; d < D; d++) expect(ov[i * C + D + d] === 0).toBe(true);
    }
  }
}

describeCuda('cuda attention vs cpu', () => {
  let seed = 1000;
  const Ns = [1, 5, 68, 138, 197, 260];
  for (const dtype of FLOAT_DTYPES)
    for (const D of [64, 32]) {
      it(`${dtype} D=${D}: N in {${Ns}}, keep none / fractional / hard, gates with a dropped head`, () => {
        for (const N of Ns) {
          const B = N > 100 ? 3 : 4;
          runCase({ B, N, H: 3, D, mode: 'none', gate: false, eps: 1e-6, dtype, seed: (seed += 10) });
          runCase({ B, N, H: 3, D, mode: 'frac', gate: true, eps: 1e-6, dtype, seed: (seed += 10) });
          runCase({ B, N, H: 2, D, mode: 'hard', gate: true, eps: 1e-6, dtype, seed: (seed += 10) });
          runCase({ B: 2, N, H: 2, D, mode: 'none', gate: true, eps: 0, dtype, seed: (seed += 10) });
        }
      });
    }

  for (const dtype of FLOAT_DTYPES)
    it(`${dtype}: a large eps makes the eps/N smoothing and the row-max gradient visible`, () => {
      for (const N of [5, 68, 197])
        for (const mode of ['frac', 'hard'] as KeepMode[]) {
          runCase({ B: 2, N, H: 3, D: 64, mode, gate: true, eps: 0.3, dtype, seed: (seed += 10), scaleMul: 1.7 });
          runCase({ B: 2, N, H: 2, D: 32, mode, gate: false, eps: 0.05, dtype, seed: (seed += 10) });
        }
    });

  for (const dtype of FLOAT_DTYPES)
    it(`${dtype}: other head dims (SIMT kernels; D = 128 is a tensor-core size for bf16)`, () => {
      for (const D of [7, 16, 48, 100, 128])
        for (const N of [17, 197]) {
          runCase({ B: 2, N, H: 2, D, mode: 'frac', gate: true, eps: 1e-6, dtype, seed: (seed += 10) });
          runCase({ B: 2, N, H: 2, D, mode: 'none', gate: false, eps: 1e-6, dtype, seed: (seed += 10) });
        }
      runCase({ B: 2, N: 197, H: 2, D: 128, mode: 'hard', gate: true, eps: 0.3, dtype, seed: (seed += 10) });
      // a gate with a dropped head and no keep: the backward's D-recompute pass without keep at these
      // sizes (scripts/launch-check.mjs listed its D = 48 bf16, D = 100 and D = 128 kernels as never launched)
      for (const D of [48, 100, 128]) runCase({ B: 2, N: 61, H: 2, D, mode: 'none', gate: true, eps: 1e-6, dtype, seed: (seed += 10) });
    });

  // The batch only multiplies the grid (the kernels' configuration follows N and D): emulated, 2
  // samples keep every path and the grid-stride loops (4 emulated SMs) at an eighth of the time.
  const vitB = emulated ? 2 : 16;
  for (const dtype of FLOAT_DTYPES)
    it(`${dtype}: ViT-S shapes (B = ${vitB}, N = 197, H = 6, D = 64) and peaked scores`, () => {
      runCase({ B: vitB, N: 197, H: 6, D: 64, mode: 'none', gate: false, eps: 1e-6, dtype, seed: (seed += 10) });
      runCase({ B: vitB, N: 197, H: 6, D: 64, mode: 'frac', gate: true, eps: 1e-6, dtype, seed: (seed += 10) });
      runCase({ B: 2, N: 138, H: 3, D: 64, mode: 'hard', gate: true, eps: 1e-6, dtype, seed: (seed += 10), scaleMul: 4 });
    });

  it('bf16 keep and head gate with bf16 qkv (their gradients come back in bf16)', () => {
    runCase({ B: 3, N: 197, H: 3, D: 64, mode: 'frac', gate: true, eps: 1e-6, dtype: 'bfloat16', seed: (seed += 10), auxDtype: 'bfloat16' });
    runCase({ B: 3, N: 50, H: 2, D: 24, mode: 'hard', gate: true, eps: 0.3, dtype: 'bfloat16', seed: (seed += 10), auxDtype: 'bfloat16' });
  });

  it('a long sequence (N = 600: several key fills per head)', () => {
    runCase({ B: 1, N: 600, H: 2, D: 64, mode: 'frac', gate: true, eps: 1e-6, dtype: 'bfloat16', seed: (seed += 10) });
    runCase({ B: 1, N: 600, H: 2, D: 64, mode: 'hard', gate: false, eps: 0.3, dtype: 'float32', seed: (seed += 10) });
  });
});

/** Runs f with the float32 forward forced to the SIMT kernel ('simt') or to the 3xTF32 one ('default'). */
function withF32Path<T>(path: 'simt' | 'default', f: () => T): T {
  return withEnv('VITRIM_CUDA_ATTN_F32', path === 'simt' ? 'simt' : '3xtf32', f);
}

describeCuda('cuda attention: the two float32 forwards (3xTF32 tensor cores, SIMT FMA)', () => {
  // Both must hold fp32 accuracy against the CPU; they are different kernels (their bits differ),
  // and the stats of either serve the (SIMT) backward.
  it('agree with the CPU and with each other to 1e-5, out and stats, D = 64 / 32, N up to 600', () => {
    let seed = 7000;
    for (const [D, N, mode] of [[64, 197, 'none'], [64, 5, 'frac'], [32, 260, 'hard'], [64, 600, 'frac']] as const) {
      const B = 2, H = 2, C = H * D;
      const qkv = nt(randn([B, N, 3 * C], (seed += 10)), [B, N, 3 * C]);
      const keep = makeKeep(mode, B, N, seed + 1);
      const what = `D${D} N${N} keep=${mode} (seed ${RUN_SEED})`;
      const [cOut] = native.attentionForward(qkv, H, 1 / Math.sqrt(D), keep ? nt(keep, [B, N]) : null, null, 1e-6);
      const run = (path: 'simt' | 'default') =>
        withF32Path(path, () =>
          native.attentionForward(toCuda(qkv), H, 1 / Math.sqrt(D), keep ? toCuda(nt(keep, [B, N])) : null, null, 1e-6));
      const [tOut, tStats] = run('default');
      const [sOut, sStats] = run('simt');
      expectRel(tOut, cOut, TOL.float32, `${what} 3xTF32 out`);
      expectRel(sOut, cOut, TOL.float32, `${what} SIMT out`);
      // stats rows are [max (log2 units), denominator, first argmax]
      const ts = values(tStats), ss = values(sStats);
      const pick = (a: ArrayLike<number>, k: number) => Array.from({ length: a.length / 3 }, (_, i) => a[3 * i + k]);
      expectRel(pick(ts, 0), pick(ss, 0), TOL.float32, `${what} stats max`);
      expectRel(pick(ts, 1), pick(ss, 1), TOL.float32, `${what} stats denominator`);
      if (N > 5) expect(Array.from(values(tOut))).not.toEqual(Array.from(values(sOut)));
    }
    // unset is the default (3xTF32); a misspelt switch is refused, never silently the default
    const qkv = toCuda(nt(randn([1, 20, 3 * 64], (seed += 10)), [1, 20, 3 * 64]));
    const [dOut] = withEnv('VITRIM_CUDA_ATTN_F32', undefined, () => native.attentionForward(qkv, 1, 0.125, null, null, 1e-6));
    const [tOut] = withF32Path('default', () => native.attentionForward(qkv, 1, 0.125, null, null, 1e-6));
    expect(Array.from(values(dOut))).toEqual(Array.from(values(tOut)));
    for (const bad of ['SIMT', 'tf32'])
      withEnv('VITRIM_CUDA_ATTN_F32', bad, () =>
        expectCode(() => native.attentionForward(qkv, 1, 0.125, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT'));
  });
});

describeCuda('cuda attention: PyTorch fixture', () => {
  const fx = readFixture(new URL('../fixtures/attention-mask-ref.safetensors', import.meta.url).pathname);
  const H = Number(fx.metadata.heads);
  const eps = Number(fx.metadata.eps);
  const t = fx.tensors;
  const [B, N, C3] = t.qkv.shape;
  const C = C3 / 3;
  const scale = 1 / Math.sqrt(C / H);

  it('float32 matches out, grad.qkv and grad.policy of the float64 PyTorch reference', () => {
    const qkv = toCuda(nt(t.qkv.data, t.qkv.shape));
    const policy = toCuda(nt(t.policy.data, t.policy.shape));
    const [out, stats] = native.attentionForward(qkv, H, scale, policy, null, eps);
    expectRel(out, t.out.data, TOL.float32, 'fixture out');
    const [gqkv, gkeep, ggate] = native.attentionBackward(toCuda(nt(t.grad_out.data, [B, N, C])), qkv, H, scale, policy,
      null, eps, out, stats);
    expect(ggate).toBeNull();
    expectRel(gqkv, t['grad.qkv'].data, TOL.float32, 'fixture grad.qkv');
    expectRel(gkeep!, t['grad.policy'].data, TOL.float32, 'fixture grad.policy');
  });

  it('bfloat16 matches the CPU on the fixture rounded to bf16', () => {
    const q = nt(t.qkv.data, t.qkv.shape);
    const p = nt(t.policy.data, t.policy.shape);
    const go = nt(t.grad_out.data, [B, N, C]);
    const cq = roundTo(q, 'bfloat16');
    const cgo = roundTo(go, 'bfloat16');
    const [cOut, cStats] = native.attentionForward(cq, H, scale, p, null, eps);
    const [cG, cK] = native.attentionBackward(cgo, cq, H, scale, p, null, eps, cOut, cStats);
    const gq = cudaAs(q, 'bfloat16');
    const gp = toCuda(p);
    const [out, stats] = native.attentionForward(gq, H, scale, gp, null, eps);
    expectRel(out, cOut, TOL.bfloat16, 'fixture bf16 out');
    const [gG, gK] = native.attentionBackward(cudaAs(go, 'bfloat16'), gq, H, scale, gp, null, eps, out, stats);
    expectRel(gG, cG, TOL.bfloat16, 'fixture bf16 grad.qkv');
    expectRel(gK!, cK!, TOL.bfloat16, 'fixture bf16 grad.policy');
  });
});

describeCuda('cuda attention consistency', () => {
  const B = 2, N = 70, H = 3, D = 64, C = H * D;

  it('keep of all ones with eps 0 equals plain softmax; a gate of ones equals no gate (both dtypes)', () => {
    for (const dtype of FLOAT_DTYPES) {
      const q = cudaAs(nt(randn([B, N, 3 * C], 950), [B, N, 3 * C]), dtype);
      const [plain] = native.attentionForward(q, H, 0.35, null, null, 1e-6);
      const [ones] = native.attentionForward(q, H, 0.35, toCuda(nt(new Float32Array(B * N).fill(1), [B, N])), null, 0);
      const [gated] = native.attentionForward(q, H, 0.35, null, toCuda(nt(new Float32Array(B * H).fill(1), [B, H])), 1e-6);
      expectRel(ones, plain, 1e-6, `${dtype} keep of ones`);
      expect(Array.from(values(gated))).toEqual(Array.from(values(plain)));
    }
  });

  it('is deterministic: the same inputs give the same bytes (no atomics)', () => {
    for (const dtype of FLOAT_DTYPES) {
      const q = cudaAs(nt(randn([B, N, 3 * C], 960), [B, N, 3 * C]), dtype);
      const k = toCuda(nt(randu([B, N], 961), [B, N]));
      const g = toCuda(nt(makeGate(B, H, 962), [B, H]));
      const go = cudaAs(nt(randn([B, N, C], 963), [B, N, C]), dtype);
      const run = () => {
        const [out, stats] = native.attentionForward(q, H, 0.3, k, g, 1e-6);
        const [gq, gk, gg] = native.attentionBackward(go, q, H, 0.3, k, g, 1e-6, out, stats);
        return [out, gq, gk!, gg!].map((t) => Array.from(t.read() as ArrayLike<number>));
      };
      const a = run();
      const b = run();
      for (let i = 0; i < a.length; i++) expect(b[i]).toEqual(a[i]);
    }
  });

  it('accepts empty batches and sequences', () => {
    for (const [b, n] of [[0, 5], [2, 0]]) {
      const qkv = toCuda(nt(new Float32Array(b * n * 12), [b, n, 12]));
      const keep = toCuda(nt(new Float32Array(b * n).fill(1), [b, n]));
      const gate = toCuda(nt(new Float32Array(b * 2).fill(1), [b, 2]));
      const [out, stats] = native.attentionForward(qkv, 2, 0.5, keep, gate, 1e-6);
      expect(out.shape).toEqual([b, n, 4]);
      const [gq, gk, gg] = native.attentionBackward(toCuda(nt(new Float32Array(b * n * 4), [b, n, 4])), qkv, 2, 0.5,
        keep, gate, 1e-6, out, stats);
      expect(gq.shape).toEqual([b, n, 12]);
      expect(gk!.shape).toEqual([b, n]);
      expect(Array.from(values(gg!))).toEqual(new Array(b * 2).fill(0));
    }
  });
});

describeCuda('cuda attention bad input', () => {
  const B = 2, N = 5, H = 2, D = 8, C = H * D;
  const q = () => toCuda(nt(randn([B, N, 3 * C], 970), [B, N, 3 * C]));
  const keep = () => toCuda(nt(randu([B, N], 971), [B, N]));
  const gate = () => toCuda(nt(randu([B, H], 972), [B, H]));

  it('rejects bad forward arguments with typed errors and keeps working', () => {
    const x = q();
    const f = (qkv: NativeTensor, heads: number, k: NativeTensor | null, g: NativeTensor | null, eps = 1e-6) =>
      native.attentionForward(qkv, heads, 0.5, k, g, eps);
    expectCode(() => f(toCuda(nt(randn([N, 3 * C], 1), [N, 3 * C])), H, null, null), 'ERR_VITRIM_SHAPE');
    expectCode(() => f(toCuda(nt(randn([B, N, 20], 1), [B, N, 20])), H, null, null), 'ERR_VITRIM_SHAPE');
    expectCode(() => f(x, H, toCuda(nt(randu([B, N + 1], 1), [B, N + 1])), null), 'ERR_VITRIM_SHAPE');
    expectCode(() => f(x, H, null, toCuda(nt(randu([B, H + 1], 1), [B, H + 1]))), 'ERR_VITRIM_SHAPE');
    // head_dim 136 > 128: beyond the cuda kernels (the CPU takes it)
    expectCode(() => f(toCuda(nt(randn([1, 3, 3 * 136], 1), [1, 3, 3 * 136])), 1, null, null), 'ERR_VITRIM_SHAPE');
    expectCode(() => f(toCuda(native.full([B, N, 3 * C], 1, 'int32')), H, null, null), 'ERR_VITRIM_DTYPE');
    expectCode(() => f(x, H, toCuda(native.full([B, N], 1, 'int32')), null), 'ERR_VITRIM_DTYPE');
    // keep may be float32 or qkv's dtype: bf16 keep with float32 qkv is a dtype error
    expectCode(() => f(x, H, cudaAs(nt(randu([B, N], 2), [B, N]), 'bfloat16'), null), 'ERR_VITRIM_DTYPE');
    expectCode(() => f(x, 0, null, null), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => f(x, H, null, null, -1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(x, H, Number.NaN, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    // a cpu tensor mixed with cuda ones
    expectCode(() => f(x, H, nt(randu([B, N], 3), [B, N]), null), 'ERR_VITRIM_DEVICE');
    expectCode(() => f(x, H, null, nt(randu([B, H], 3), [B, H])), 'ERR_VITRIM_DEVICE');
    // keep values outside [0, 1] (or NaN) are found on the device
    for (const bad of [1.5, -0.1, Number.NaN]) {
      const k = randu([B, N], 5);
      k[3] = bad;
      expectCode(() => f(x, H, toCuda(nt(k, [B, N])), null), 'ERR_VITRIM_ARGUMENT');
      expectCode(() => f(cudaAs(nt(randn([B, N, 3 * C], 6), [B, N, 3 * C]), 'bfloat16'), H,
        cudaAs(nt(k, [B, N]), 'bfloat16'), null), 'ERR_VITRIM_ARGUMENT');
    }
    // still works
    const [out] = f(x, H, keep(), gate());
    expect(out.shape).toEqual([B, N, C]);
    expect(Array.from(values(out)).every(Number.isFinite)).toBe(true);
  });

  it('rejects bad backward arguments with typed errors and keeps working', () => {
    const x = q();
    const k = keep();
    const g = gate();
    const [out, stats] = native.attentionForward(x, H, 0.5, k, g, 1e-6);
    const go = toCuda(nt(randn([B, N, C], 980), [B, N, C]));
    type Over = Partial<Record<'go' | 'q' | 'k' | 'g' | 'out' | 'stats', NativeTensor | null>> & { heads?: number; eps?: number };
    const bwd = (o: Over) => native.attentionBackward(
      ('go' in o ? o.go : go) as NativeTensor, ('q' in o ? o.q : x) as NativeTensor, o.heads ?? H, 0.5,
      'k' in o ? (o.k ?? null) : k, 'g' in o ? (o.g ?? null) : g, o.eps ?? 1e-6, ('out' in o ? o.out : out) as NativeTensor,
      ('stats' in o ? o.stats : stats) as NativeTensor);
    // stats: the cuda layout is [B, H, N, 3]; the cpu's [B, H, N, 2] does not fit
    expectCode(() => bwd({ stats: toCuda(nt(randn([B, H, N, 2], 1), [B, H, N, 2])) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ stats: toCuda(nt(randn([B, H, N + 1, 3], 1), [B, H, N + 1, 3])) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ out: toCuda(nt(randn([B, N, C + 1], 1), [B, N, C + 1])) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ go: toCuda(nt(randn([B, N + 1, C], 1), [B, N + 1, C])) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ k: toCuda(nt(randu([B, N - 1], 1), [B, N - 1])) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ stats: toCuda(native.full([B, H, N, 3], 1, 'int32')) }), 'ERR_VITRIM_DTYPE');
    expectCode(() => bwd({ go: cudaAs(nt(randn([B, N, C], 2), [B, N, C]), 'bfloat16') }), 'ERR_VITRIM_DTYPE');
    expectCode(() => bwd({ out: toCuda(native.full([B, N, C], 1, 'int32')) }), 'ERR_VITRIM_DTYPE');
    expectCode(() => bwd({ heads: 0 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => bwd({ eps: -1 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => bwd({ stats: nt(randn([B, H, N, 3], 1), [B, H, N, 3]) }), 'ERR_VITRIM_DEVICE');
    expectCode(() => bwd({ go: nt(randn([B, N, C], 1), [B, N, C]) }), 'ERR_VITRIM_DEVICE');
    const badKeep = randu([B, N], 7);
    badKeep[0] = 2;
    expectCode(() => bwd({ k: toCuda(nt(badKeep, [B, N])) }), 'ERR_VITRIM_ARGUMENT');
    // still works
    const [gq, gk, gg] = bwd({});
    expect(gq.shape).toEqual([B, N, 3 * C]);
    expect(gk!.shape).toEqual([B, N]);
    expect(gg!.shape).toEqual([B, H]);
    expect(Array.from(values(gq)).every(Number.isFinite)).toBe(true);
  });
});
