/**
 * Fused attention (native attentionForward / attentionBackward) against an unfused float64 reference:
 * explicit scores, DynamicViT's softmax_with_policy written out op by op (max, exp, policy matrix,
 * eps-smoothed normalisation), A·V and the head gate, with the backward derived mechanically by the
 * chain rule through each of those ops (including the non-detached row max). Plus central finite
 * differences of the native forward, the PyTorch fixture, cross-path consistency and bad input.
 */
import { describe, expect, it } from 'vitest';
import { native, type NativeTensor } from '../lib/native.js';
import { attentionReference as reference, type Dims } from './attention-ref.js';
import { readFixture } from './fixture-reader.js';
import { dot, expectClose, expectCloseSum, expectCode, finiteDiff, nt, randn, randu, relErr, rng } from './helpers.js';

type KeepMode = 'none' | 'frac' | 'hard';

function makeKeep(mode: KeepMode, B: number, N: number, seed: number): Float32Array | null {
  if (mode === 'none') return null;
  if (mode === 'frac') return randu([B, N], seed, 0.05, 0.95);
  const r = rng(seed);
  const k = new Float32Array(B * N);
  for (let i = 0; i < k.length; i++) k[i] = r() < 0.5 ? 0 : 1;
  if (N > 1) k[0] = 0; // make sure both values occur
  if (k.length > 1) k[k.length - 1] = 1;
  return k;
}

function makeGate(B: number, H: number, seed: number): Float32Array {
  const g = randu([B, H], seed, 0.2, 1.5);
  if (H > 1) g[1] = 0; // a hard-dropped head: its output is 0, its gate gradient is not
  return g;
}

function runNative(
  qkv: Float32Array,
  { B, N, H, D }: Dims,
  scale: number,
  keep: Float32Array | null,
  gate: Float32Array | null,
  eps: number,
  gout: Float32Array,
) {
  const C = H * D;
  const tq = nt(qkv, [B, N, 3 * C]);
  const tk = keep ? nt(keep, [B, N]) : null;
  const tg = gate ? nt(gate, [B, H]) : null;
  const [out, stats] = native.attentionForward(tq, H, scale, tk, tg, eps);
  expect(out.shape).toEqual([B, N, C]);
  const [gqkv, gkeep, ggate] = native.attentionBackward(nt(gout, [B, N, C]), tq, H, scale, tk, tg, eps, out, stats);
  expect(gqkv.shape).toEqual([B, N, 3 * C]);
  expect(gkeep === null).toBe(keep === null);
  expect(ggate === null).toBe(gate === null);
  return {
    out: out.read() as Float32Array,
    gqkv: gqkv.read() as Float32Array,
    gkeep: gkeep ? (gkeep.read() as Float32Array) : null,
    ggate: ggate ? (ggate.read() as Float32Array) : null,
    stats,
  };
}

function checkCase(dims: Dims, mode: KeepMode, withGate: boolean, eps: number, seed: number, scaleMul = 1): void {
  const { B, N, H, D } = dims;
  const C = H * D;
  const qkv = randn([B, N, 3 * C], seed, 1.5);
  const keep = makeKeep(mode, B, N, seed + 1);
  const gate = withGate ? makeGate(B, H, seed + 2) : null;
  const gout = randn([B, N, C], seed + 3);
  const scale = scaleMul / Math.sqrt(D);
  const ref = reference(qkv, dims, scale, keep, gate, eps, gout);
  const got = runNative(qkv, dims, scale, keep, gate, eps, gout);
  const what = `B${B} N${N} H${H} D${D} keep=${mode} gate=${withGate} eps=${eps}`;
  expectClose(got.out, ref.out, 1e-5, `${what} out`);
  expectClose(got.gqkv, ref.gqkv, 1e-5, `${what} gqkv`);
  // gkeep sums terms of both signs over queries and heads: judged against their scale as well
  // (seed 8585 drew a cancelling column: 1.05e-5 relative to the sum)
  if (keep) expectCloseSum(got.gkeep!, ref.gkeep!, ref.gkeepMag!, 1e-5, `${what} gkeep`);
  if (gate) {
    // ggate[b,h] = Σ_i go_i·(PV)_i is a sum of terms that can cancel (at H = 1 a run-specific seed gave
    // 2.2e-5 relative to the result): judge fp32 rounding against the scale of the terms, Σ|go·(PV)|.
    const termScale = new Float64Array(B * H);
    for (let b = 0; b < B; b++) for (let i = 0; i < N; i++) for (let c = 0; c < C; c++) {
      const h = Math.floor(c / D);
      const g = gate[b * H + h];
      if (g !== 0) termScale[b * H + h] += Math.abs(gout[(b * N + i) * C + c] * ref.out[(b * N + i) * C + c] / g);
    }
    let num = 0;
    let den = 0;
    for (let k = 0; k < B * H; k++) {
      num += (got.ggate![k] - ref.ggate![k]) ** 2;
      den += termScale[k] ** 2;
    }
    const e = Math.sqrt(num / (den || 1));
    if (!(e <= 1e-5)) throw new Error(`${what} gheadGate: error ${e.toExponential(3)} relative to the terms' scale > 1e-5`);
  }
}

describe('attention vs float64 reference', () => {
  const Ds = [4, 7, 16];
  let seed = 100;
  for (const N of [1, 5, 17, 50]) {
    for (const [hi, H] of [1, 3, 4].entries()) {
      it(`N=${N} H=${H}: every keep mode x gate, eps 1e-6 and a large eps`, () => {
        const dims = { B: 2, N, H, D: Ds[hi] };
        for (const mode of ['none', 'frac', 'hard'] as KeepMode[])
          for (const withGate of [false, true]) {
            checkCase(dims, mode, withGate, 1e-6, (seed += 10));
            // eps = 0.3 makes the eps/N smoothing and the gradient through the row max visible at
            // fp32 precision (with 1e-6 they sit below the 1e-5 tolerance).
            if (mode !== 'none') checkCase(dims, mode, withGate, 0.3, (seed += 10), 1.7);
          }
      });
    }
  }

  it('crosses query-row blocks (N = 130, 197) with every keep mode', () => {
    for (const N of [130, 197])
      for (const mode of ['none', 'frac', 'hard'] as KeepMode[]) {
        checkCase({ B: 1, N, H: 3, D: 8 }, mode, true, 1e-6, (seed += 10));
        if (mode !== 'none') checkCase({ B: 1, N, H: 2, D: 5 }, mode, false, 0.05, (seed += 10));
      }
  });

  it('handles peaked scores (large logits) without overflow', () => {
    const dims = { B: 2, N: 17, H: 2, D: 8 };
    for (const mode of ['none', 'frac', 'hard'] as KeepMode[]) checkCase(dims, mode, true, 1e-6, (seed += 10), 4);
  });
});

/**
 * Random qkv whose every score row has a gap between its largest and second largest score wider
 * than a step of h on one qkv element can close. With eps > 0 the output depends on the row max
 * (DynamicViT does not detach it), so it has a kink where a row's argmax changes: a central
 * difference whose two points straddle one measures no derivative (seed 828282 drew a row whose
 * top two scores were that close: gqkv 7.9e-3 off at h = 3e-3, 2e-4 at h = 1e-3). A step on
 * q_i[d] or k_j[d] moves a gap by at most scale·h·(|x_a| + |x_b|) ≤ 2·scale·h·max|qkv|.
 * Measured on 3000 draws of this test's shapes at eps 0.3: a third are redrawn; the worst error
 * of the others was 1.7e-4, of the redrawn ones 4.4e-2.
 */
function qkvAwayFromKinks({ B, N, H, D }: Dims, scale: number, h: number, seed: number): Float32Array {
  const C = H * D;
  const score = (qkv: Float32Array, b: number, hd: number, i: number, j: number) => {
    let acc = 0;
    for (let d = 0; d < D; d++) acc += qkv[(b * N + i) * 3 * C + hd * D + d] * qkv[(b * N + j) * 3 * C + C + hd * D + d];
    return scale * acc;
  };
  const clear = (qkv: Float32Array) => {
    const margin = 2.5 * scale * h * qkv.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let b = 0; b < B; b++)
      for (let hd = 0; hd < H; hd++)
        for (let i = 0; i < N; i++) {
          const s = Array.from({ length: N }, (_, j) => score(qkv, b, hd, i, j)).sort((x, y) => y - x);
          if (s[0] - s[1] <= margin) return false;
        }
    return true;
  };
  for (let attempt = 0; attempt < 100; attempt++) {
    const qkv = randn([B, N, 3 * C], seed + 1000 * attempt);
    if (clear(qkv)) return qkv;
  }
  throw new Error('no qkv with every row max clear of its kink in 100 draws');
}

describe('attention vs finite differences of the native forward', () => {
  const dims = { B: 2, N: 5, H: 2, D: 3 };
  const { B, N, H, D } = dims;
  const C = H * D;
  for (const eps of [1e-6, 0.3]) {
    it(`gqkv, gkeep and gheadGate (fractional keep, eps ${eps})`, () => {
      const scale = 1 / Math.sqrt(D);
      const h = 3e-3;
      const qkv = qkvAwayFromKinks(dims, scale, h, 900);
      const keep = randu([B, N], 901, 0.1, 0.9);
      const gate = randu([B, H], 902, 0.3, 1.4);
      const w = randn([B, N, C], 903);
      const loss = (q: Float32Array, k: Float32Array, g: Float32Array) => {
        const [out] = native.attentionForward(nt(q, [B, N, 3 * C]), H, scale, nt(k, [B, N]), nt(g, [B, H]), eps);
        return dot(out.read(), w);
      };
      const got = runNative(qkv, dims, scale, keep, gate, eps, w);
      expectClose(got.gqkv, finiteDiff((q) => loss(q, keep, gate), qkv, h), 5e-3, 'gqkv vs FD');
      expectClose(got.gkeep!, finiteDiff((k) => loss(qkv, k, gate), keep, h), 5e-3, 'gkeep vs FD');
      expectClose(got.ggate!, finiteDiff((g) => loss(qkv, keep, g), gate, h), 5e-3, 'gheadGate vs FD');
    });
  }

  it('gqkv without keep or gate', () => {
    const qkv = randn([B, N, 3 * C], 910);
    const w = randn([B, N, C], 911);
    const scale = 0.7;
    const loss = (q: Float32Array) => dot(native.attentionForward(nt(q, [B, N, 3 * C]), H, scale, null, null, 0)[0].read(), w);
    const got = runNative(qkv, dims, scale, null, null, 0, w);
    expectClose(got.gqkv, finiteDiff(loss, qkv, 3e-3), 5e-3, 'gqkv vs FD');
  });
});

describe('attention PyTorch fixture', () => {
  it('matches out, grad.qkv and grad.policy of the float64 PyTorch reference', () => {
    const fx = readFixture(new URL('./fixtures/attention-mask-ref.safetensors', import.meta.url).pathname);
    const H = Number(fx.metadata.heads);
    const eps = Number(fx.metadata.eps);
    expect(H).toBe(4);
    expect(eps).toBe(1e-6);
    const t = fx.tensors;
    const [B, N, C3] = t.qkv.shape;
    const C = C3 / 3;
    const scale = 1 / Math.sqrt(C / H);
    const qkv = nt(t.qkv.data, t.qkv.shape);
    const policy = nt(t.policy.data, t.policy.shape);
    const [out, stats] = native.attentionForward(qkv, H, scale, policy, null, eps);
    expect(out.shape).toEqual(t.out.shape);
    expectClose(out.read(), t.out.data, 1e-5, 'fixture out');
    const [gqkv, gkeep, ggate] = native.attentionBackward(
      nt(t.grad_out.data, [B, N, C]), qkv, H, scale, policy, null, eps, out, stats);
    expect(ggate).toBeNull();
    expectClose(gqkv.read(), t['grad.qkv'].data, 1e-5, 'fixture grad.qkv');
    expectClose(gkeep!.read(), t['grad.policy'].data, 1e-5, 'fixture grad.policy');
    // The fixture must not be trivially satisfiable: its policy mixes kept and dropped tokens.
    const p = Array.from(t.policy.data);
    expect(p.some((x) => x < 0.5) && p.some((x) => x > 0.5)).toBe(true);
  });
});

describe('attention consistency', () => {
  const dims = { B: 2, N: 17, H: 3, D: 8 };
  const { B, N, H, D } = dims;
  const C = H * D;

  it('keep of all ones with eps 0 equals plain softmax; a gate of ones equals no gate', () => {
    const qkv = nt(randn([B, N, 3 * C], 950), [B, N, 3 * C]);
    const [plain] = native.attentionForward(qkv, H, 0.35, null, null, 1e-6);
    const [ones] = native.attentionForward(qkv, H, 0.35, native.full([B, N], 1, 'float32'), null, 0);
    const [gated] = native.attentionForward(qkv, H, 0.35, null, native.full([B, H], 1, 'float32'), 1e-6);
    expect(relErr(ones.read(), plain.read())).toBeLessThan(1e-6);
    expect(Array.from(gated.read())).toEqual(Array.from(plain.read()));
  });

  it('is deterministic and independent of the thread count', () => {
    const q = randn([B, N, 3 * C], 960);
    const k = randu([B, N], 961);
    const go = randn([B, N, C], 962);
    const runOnce = () => runNative(q, dims, 0.3, k, makeGate(B, H, 963), 1e-6, go);
    const threads = native.info().threads;
    const a = runOnce();
    native.setNumThreads(1);
    const b = runOnce();
    native.setNumThreads(threads);
    for (const key of ['out', 'gqkv', 'gkeep', 'ggate'] as const)
      expect(Array.from(b[key]!)).toEqual(Array.from(a[key]!));
  });

  it('accepts empty batches and sequences', () => {
    for (const [b, n] of [[0, 5], [2, 0]]) {
      const qkv = native.full([b, n, 12], 1, 'float32');
      const keep = native.full([b, n], 1, 'float32');
      const gate = native.full([b, 2], 1, 'float32');
      const [out, stats] = native.attentionForward(qkv, 2, 0.5, keep, gate, 1e-6);
      expect(out.shape).toEqual([b, n, 4]);
      const [gq, gk, gg] = native.attentionBackward(native.full([b, n, 4], 1, 'float32'), qkv, 2, 0.5, keep, gate, 1e-6, out, stats);
      expect(gq.shape).toEqual([b, n, 12]);
      expect(gk!.shape).toEqual([b, n]);
      expect(Array.from(gg!.read())).toEqual(new Array(b * 2).fill(0));
    }
  });
});

describe('attention bad input', () => {
  const B = 2, N = 5, H = 2, D = 3, C = H * D;
  const qkv = () => nt(randn([B, N, 3 * C], 970), [B, N, 3 * C]);
  const keep = () => nt(randu([B, N], 971), [B, N]);
  const gate = () => nt(randu([B, H], 972), [B, H]);

  it('rejects bad forward arguments with typed errors and keeps working', () => {
    const q = qkv();
    expectCode(() => native.attentionForward(nt(randn([N, 3 * C], 1), [N, 3 * C]), H, 0.5, null, null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(nt(randn([B, N, 20], 1), [B, N, 20]), H, 0.5, null, null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(nt(randn([B, N, 9], 1), [B, N, 9]), H, 0.5, null, null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(native.full([B, N, 0], 0, 'float32'), H, 0.5, null, null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(q, H, 0.5, nt(randu([B, N + 1], 1), [B, N + 1]), null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(q, H, 0.5, nt(randu([B * N], 1), [B * N]), null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(q, H, 0.5, null, nt(randu([B, H + 1], 1), [B, H + 1]), 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(q, H, 0.5, null, nt(randu([H], 1), [H]), 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionForward(native.full([B, N, 3 * C], 1, 'int32'), H, 0.5, null, null, 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.attentionForward(q, H, 0.5, native.full([B, N], 1, 'int32'), null, 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.attentionForward(q, H, 0.5, null, native.full([B, H], 1, 'int32'), 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.attentionForward(q, 0, 0.5, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, -2, 0.5, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, 1.5, 0.5, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, 2 ** 60, 0.5, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, H, 0.5, null, null, -1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, H, 0.5, null, null, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, H, Number.NaN, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, H, Infinity, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    const badKeep = randu([B, N], 5);
    badKeep[3] = 1.5;
    expectCode(() => native.attentionForward(q, H, 0.5, nt(badKeep, [B, N]), null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    badKeep[3] = Number.NaN;
    expectCode(() => native.attentionForward(q, H, 0.5, nt(badKeep, [B, N]), null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    badKeep[3] = -0.1;
    expectCode(() => native.attentionForward(q, H, 0.5, nt(badKeep, [B, N]), null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward({} as NativeTensor, H, 0.5, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, H, 0.5, 3 as unknown as NativeTensor, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionForward(q, '2' as unknown as number, 0.5, null, null, 1e-6), 'ERR_VITRIM_ARGUMENT');
    const freed = qkv();
    freed.free();
    expectCode(() => native.attentionForward(freed, H, 0.5, null, null, 1e-6), 'ERR_VITRIM_DISPOSED');
    const freedKeep = keep();
    freedKeep.free();
    expectCode(() => native.attentionForward(q, H, 0.5, freedKeep, null, 1e-6), 'ERR_VITRIM_DISPOSED');
    const freedGate = gate();
    freedGate.free();
    expectCode(() => native.attentionForward(q, H, 0.5, null, freedGate, 1e-6), 'ERR_VITRIM_DISPOSED');
    // still works
    const [out] = native.attentionForward(q, H, 0.5, keep(), gate(), 1e-6);
    expect(out.shape).toEqual([B, N, C]);
    expect(Array.from(out.read()).every(Number.isFinite)).toBe(true);
  });

  it('rejects bad backward arguments with typed errors and keeps working', () => {
    const q = qkv();
    const k = keep();
    const g = gate();
    const [out, stats] = native.attentionForward(q, H, 0.5, k, g, 1e-6);
    const go = nt(randn([B, N, C], 980), [B, N, C]);
    const bwd = (over: Partial<Record<'go' | 'q' | 'k' | 'g' | 'out' | 'stats', unknown>> & { heads?: unknown; eps?: unknown }) =>
      native.attentionBackward(
        ('go' in over ? over.go : go) as NativeTensor,
        ('q' in over ? over.q : q) as NativeTensor,
        (over.heads ?? H) as number,
        0.5,
        ('k' in over ? over.k : k) as NativeTensor | null,
        ('g' in over ? over.g : g) as NativeTensor | null,
        (over.eps ?? 1e-6) as number,
        ('out' in over ? over.out : out) as NativeTensor,
        ('stats' in over ? over.stats : stats) as NativeTensor,
      );
    expectCode(() => bwd({ stats: nt(randn([B, H, N], 1), [B, H, N]) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ stats: nt(randn([B, H, N + 1, 2], 1), [B, H, N + 1, 2]) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ out: nt(randn([B, N, C + 1], 1), [B, N, C + 1]) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ go: nt(randn([B, N + 1, C], 1), [B, N + 1, C]) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ q: nt(randn([B, N, 18], 1), [B, N, 18]), heads: 4 }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ k: nt(randu([B, N - 1], 1), [B, N - 1]) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ g: nt(randu([B + 1, H], 1), [B + 1, H]) }), 'ERR_VITRIM_SHAPE');
    expectCode(() => bwd({ stats: native.full([B, H, N, 2], 1, 'int32') }), 'ERR_VITRIM_DTYPE');
    expectCode(() => bwd({ go: native.full([B, N, C], 1, 'int32') }), 'ERR_VITRIM_DTYPE');
    expectCode(() => bwd({ out: native.full([B, N, C], 1, 'int32') }), 'ERR_VITRIM_DTYPE');
    expectCode(() => bwd({ heads: 0 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => bwd({ eps: -1 }), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => bwd({ stats: null }), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => bwd({ out: 'x' }), 'ERR_VITRIM_ARGUMENT');
    const freedStats = native.copy(stats);
    freedStats.free();
    expectCode(() => bwd({ stats: freedStats }), 'ERR_VITRIM_DISPOSED');
    const freedGo = native.copy(go);
    freedGo.free();
    expectCode(() => bwd({ go: freedGo }), 'ERR_VITRIM_DISPOSED');
    // still works
    const [gq, gk, gg] = bwd({});
    expect(gq.shape).toEqual([B, N, 3 * C]);
    expect(gk!.shape).toEqual([B, N]);
    expect(gg!.shape).toEqual([B, H]);
  });
});
