/**
 * AdaViT inference that removes the dropped work.
 *
 * Activations stay a dense [B·N, C] matrix that each block updates in place. For a gated block the
 * policy's decisions are read back (a few hundred numbers), then for the attention sub-layer the
 * rows of the samples that run it and of their kept tokens (class token always) are gathered into
 * one packed [R, C] matrix; LayerNorm, the qkv GEMM, varlen attention (per-sample sequences, dropped
 * heads not computed) and the output GEMM run on the packed rows only, and the result is added back
 * into those rows. The MLP sub-layer does the same for the samples whose MLP gate is on. A dropped
 * token's row is untouched, exactly as in the masked training forward (AdaVitPolicy.maskedBlock).
 *
 * Budget knobs (no retraining): `threshold` moves θ for every gate; `keepRatio` instead keeps, per
 * sample and block, the ⌈keepRatio·(N−1)⌉ patches with the highest gate logits.
 * MACs are counted per sample from the decisions actually taken (lib/infer/flops.ts), gates included.
 *
 * Devices: everything runs on the input's device (model and policy must be there too). The gate
 * logits are read back to the host once per gated block (on cuda: one small device-to-host copy that
 * waits for the queued work); the decisions, row lists and MAC counts are computed on the host and
 * the row lists / offsets / head gates are uploaded as small int32 / float32 tensors. `ms` includes a
 * final device synchronisation. Under autocast('bfloat16') on cuda the GEMMs and varlen attention of
 * the packed sub-layers run in bfloat16 and their results are added to the float32 activations; the
 * gate GEMM and LayerNorm stay float32 (decisions are taken on float32 logits).
 */
import { lowersOn } from '../autocast.js';
import { int, num, optsOf, show } from '../args.js';
import { ArgumentError, ShapeError } from '../errors.js';
import { native, type Device, type NativeTensor } from '../native.js';
import type { Linear } from '../nn/layers.js';
import { AdaVitPolicy } from '../policies/adavit.js';
import { noGrad } from '../autograd.js';
import { handleOf, Tensor } from '../tensor.js';
import { attnMacs, headMacs, mlpMacs, patchEmbedMacs } from './flops.js';

export interface AdaVitInferOptions {
  /** Decision threshold θ for all gates (default: the policy's). Higher keeps less. */
  threshold?: number;
  /** Keep this fraction of patches per gated block (top gate logits) instead of thresholding them. */
  keepRatio?: number;
  /**
   * Baseline: ignore the learned gates and keep each patch / head / sub-layer independently with these
   * probabilities (the class token always), drawn from Philox with `seed`. Gate layers are not run.
   */
  random?: { patch: number; head: number; block: number; seed?: number };
  /** Also return the per-block decisions and patch scores (for explanations). */
  record?: boolean;
}

/** Decisions of one gated block, per sample (row-major [B, ...]). */
export interface BlockDecisions {
  block: number;
  /** [B, N−1] 1 = patch kept */
  patches: Uint8Array;
  /** [B, N−1] σ(z/τ): the gate's keep score per patch */
  scores: Float32Array;
  /** [B, H] 1 = head kept */
  heads: Uint8Array;
  /** [B, 2] attention / MLP sub-layer run */
  sublayers: Uint8Array;
}

export interface InferResult {
  logits: Tensor;
  /** Mean fraction kept over gated blocks and samples: patches, heads, sub-layers. */
  kept: { patch: number; head: number; block: number };
  /** MACs per image (mean over the batch) and per sample. */
  macs: number;
  macsPerSample: Float64Array;
  /** Dense model MACs per image, for the ratio. */
  denseMacs: number;
  ms: number;
  /** With `record`: one entry per gated block. */
  decisions?: BlockDecisions[];
}

function logit(p: number): number {
  return Math.log(p / (1 - p));
}

/** A host array as a tensor on `device`. */
function upload(data: Int32Array | Float32Array, shape: number[], device: Device): NativeTensor {
  const h = native.fromArray(data, shape, data instanceof Int32Array ? 'int32' : 'float32');
  if (device === 'cpu') return h;
  try {
    return native.toDevice(h, device);
  } finally {
    h.free();
  }
}

/** h as `dtype` (a new handle; h is freed when a cast was needed). */
function castTo(h: NativeTensor, dtype: 'float32' | 'bfloat16'): NativeTensor {
  if (h.dtype === dtype) return h;
  const c = native.cast(h, dtype);
  h.free();
  return c;
}

/**
 * The packed sub-layers' linears: fused native calls on the packed rows, in bfloat16 under autocast on
 * cuda (input, weight and bias cast per call), else in the input's dtype. Frees nothing it is given.
 */
function packedLinear(x: NativeTensor, l: Linear, act: 'none' | 'gelu', low: boolean): NativeTensor {
  if (!low) return native.linearFused(x, l.weight.handle, l.bias?.handle ?? null, act, null);
  const tmp: NativeTensor[] = [];
  const lo = (h: NativeTensor): NativeTensor => {
    if (h.dtype === 'bfloat16') return h;
    const c = native.cast(h, 'bfloat16');
    tmp.push(c);
    return c;
  };
  try {
    return native.linearFused(lo(x), lo(l.weight.handle), l.bias ? lo(l.bias.handle) : null, act, null);
  } finally {
    for (const h of tmp) h.free();
  }
}

export function adavitInfer(policy: AdaVitPolicy, x: Tensor, opts0: AdaVitInferOptions | null = {}): InferResult {
  const t0 = performance.now();
  if (!(policy instanceof AdaVitPolicy)) throw new ArgumentError(`infer: policy must be an AdaViT policy (policies.adavit), got ${show(policy)}`);
  const opts = optsOf(opts0, 'infer');
  const m = policy.model;
  const c = m.config;
  handleOf(x, 'x', 'infer');
  if (x.rank !== 4 || x.shape[1] !== c.inChans || x.shape[2] !== c.imgSize || x.shape[3] !== c.imgSize) {
    throw new ShapeError(`infer: x must be [B, ${c.inChans}, ${c.imgSize}, ${c.imgSize}], got [${x.shape}]`);
  }
  const theta = num(opts.threshold ?? policy.threshold, 'threshold', 'infer', (v) => v > 0 && v < 1, 'in (0, 1)');
  const ratio = opts.keepRatio === undefined ? undefined : num(opts.keepRatio, 'keepRatio', 'infer', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  const cut = logit(theta) * policy.tau; // keep iff z > τ·logit(θ)  ⟺  σ(z/τ) > θ
  const rnd = opts.random === undefined || opts.random === null ? undefined : optsOf(opts.random, 'infer') as AdaVitInferOptions['random'] & object;
  if (rnd) {
    for (const k of ['patch', 'head', 'block'] as const) num(rnd[k], `random.${k}`, 'infer', (v) => v >= 0 && v <= 1, 'a probability in [0, 1]');
    int(rnd.seed ?? 0, 'random.seed', 'infer', 0, Number.MAX_SAFE_INTEGER);
    // keepRatio ranks the gate logits; random decisions have none to rank (it kept the first patches
    // by index before this check)
    if (ratio !== undefined) throw new ArgumentError('infer: keepRatio does not apply to random decisions (random.patch is their patch keep rate)');
  }
  const B = x.shape[0];
  const N = m.numTokens;
  const C = c.embedDim;
  const H = c.numHeads;
  const macs = new Float64Array(B).fill(patchEmbedMacs(c) + headMacs(c));
  let keptPatch = 0;
  let keptHead = 0;
  let keptBlock = 0;
  let gated = 0;
  const decisions: BlockDecisions[] | undefined = opts.record ? [] : undefined;

  const device = x.device;
  const low = lowersOn(device);
  const lnOut = low ? 'bfloat16' : null; // the norms feed bf16 GEMMs only (as in Block.forward)
  // Every handle made below is freed on the way out, also when a call throws (out of memory): a
  // failed inference leaves nothing allocated for the GC to find later. `tmp` holds a sub-layer's.
  const tmp: (NativeTensor | null)[] = [];
  const T = <H extends NativeTensor | null>(h: H): H => (tmp.push(h), h);
  const freeTmp = () => {
    for (const h of tmp.splice(0)) h?.free();
  };
  return noGrad(() => {
    const t = m.forwardBlocks(m.embed(x), policy.keepLayers);
    for (let b = 0; b < B; b++) macs[b] += policy.keepLayers * (attnMacs(c, N) + mlpMacs(c, N));
    // From here the activations are updated in place: take a private handle on [B·N, C].
    let x2: NativeTensor;
    try {
      const own = castTo(native.copy(t.handle), 'float32');
      x2 = own.reshape([B * N, C]);
      own.free(); // x2 holds the storage
    } finally {
      t.dispose();
    }
    const tokensView = new Tensor(x2.reshape([B, N, C]), false);
    let logits: Tensor;
    try {
      for (let l = policy.keepLayers; l < m.blocks.length; l++) {
        const blk = m.blocks[l];
        let zh: Float32Array;
        let zb: Float32Array;
        let zp: Float32Array;
        if (rnd) {
          // Uniform draws mapped to logits that pass the cut with the requested probability.
          const draw = (n: number, p: number, k: number) => {
            const u = T(native.random([n], 'uniform', rnd.seed ?? 0, l * 3 + k));
            const d = u.read() as Float32Array;
            freeTmp();
            return d.map((v) => (v < p ? cut + 1 : cut - 1));
          };
          zh = draw(B * H, rnd.head, 0);
          zb = draw(B * 2, rnd.block, 1);
          zp = draw(B * (N - 1), rnd.patch, 2);
        } else {
          // All three gates in one GEMM over every token: the stacked weights [H + 2 + 1, C] (head,
          // block, patch); the class-token rows give the head and block logits, the patch rows the
          // patch logits. One narrow GEMM and one read-back instead of three plus slices.
          const g = policy.gates[l - policy.keepLayers];
          const K = H + 3;
          const wcat = T(native.concat([g.head.weight.handle, g.block.weight.handle, g.patch.weight.handle], 0));
          const bcat = T(native.concat([g.head.bias!.handle, g.block.bias!.handle, g.patch.bias!.handle], 0));
          const za = T(native.linearForward(x2, wcat, bcat)).read() as Float32Array;
          freeTmp();
          zh = new Float32Array(B * H);
          zb = new Float32Array(B * 2);
          zp = new Float32Array(B * (N - 1));
          for (let b = 0; b < B; b++) {
            const row = b * N * K;
            for (let k = 0; k < H; k++) zh[b * H + k] = za[row + k];
            zb[b * 2] = za[row + H];
            zb[b * 2 + 1] = za[row + H + 1];
            for (let j = 1; j < N; j++) zp[b * (N - 1) + j - 1] = za[row + j * K + H + 2];
          }
        }
        gated++;
        const rows: number[] = [];
        const rowsMlp: number[] = [];
        const cuAttn: number[] = [0];
        const gates: number[] = [];
        const kPatch = ratio === undefined ? -1 : Math.ceil(ratio * (N - 1));
        const rec: BlockDecisions | undefined = decisions ? {
          block: l, patches: new Uint8Array(B * (N - 1)), heads: new Uint8Array(B * H), sublayers: new Uint8Array(B * 2),
          scores: zp.map((v) => 1 / (1 + Math.exp(-v / policy.tau))),
        } : undefined;
        if (rec) decisions!.push(rec);
        for (let b = 0; b < B; b++) {
          if (!rnd) macs[b] += N * C * (H + 3); // the gate GEMM as run: every token against all gates
          const kept: number[] = [0];
          if (!policy.gatePatches) for (let j = 1; j < N; j++) kept.push(j);
          else if (kPatch >= 0) {
            const order = Array.from({ length: N - 1 }, (_, j) => j).sort((p, q) => zp[b * (N - 1) + q] - zp[b * (N - 1) + p] || p - q);
            for (let j = 0; j < kPatch; j++) kept.push(order[j] + 1);
            kept.sort((p, q) => p - q);
          } else for (let j = 1; j < N; j++) if (zp[b * (N - 1) + j - 1] > cut) kept.push(j);
          let h = 0;
          for (let k = 0; k < H; k++) {
            const on = !policy.gateHeads || zh[b * H + k] > cut ? 1 : 0;
            h += on;
            gates.push(on);
          }
          const attnOn = !policy.gateBlocks || zb[b * 2] > cut;
          const mlpOn = !policy.gateBlocks || zb[b * 2 + 1] > cut;
          if (rec) {
            for (const j of kept) if (j > 0) rec.patches[b * (N - 1) + j - 1] = 1;
            for (let k = 0; k < H; k++) rec.heads[b * H + k] = gates[gates.length - H + k];
            rec.sublayers[b * 2] = attnOn ? 1 : 0;
            rec.sublayers[b * 2 + 1] = mlpOn ? 1 : 0;
          }
          keptPatch += (kept.length - 1) / (N - 1);
          keptHead += h / H;
          keptBlock += ((attnOn ? 1 : 0) + (mlpOn ? 1 : 0)) / 2;
          const n = kept.length;
          if (attnOn && h > 0) {
            for (const j of kept) rows.push(b * N + j);
            cuAttn.push(cuAttn[cuAttn.length - 1] + n);
            macs[b] += attnMacs(c, n, h);
          } else gates.length -= H; // this sample does not run attention
          if (mlpOn) {
            for (const j of kept) rowsMlp.push(b * N + j);
            macs[b] += mlpMacs(c, n);
          }
        }
        if (rows.length) {
          const S = cuAttn.length - 1;
          const r = T(upload(Int32Array.from(rows), [rows.length], device));
          const cu = T(upload(Int32Array.from(cuAttn), [S + 1], device));
          const hg = T(policy.gateHeads ? upload(Float32Array.from(gates), [S, H], device) : null);
          const p = T(native.gatherRows(x2, r));
          const [ln] = native.layernormForward(p, blk.norm1.weight.handle, blk.norm1.bias.handle, blk.norm1.eps, lnOut).map(T);
          const qkv = T(packedLinear(ln, blk.attn.qkv, 'none', low));
          const o = T(native.attentionVarlen(qkv, cu, H, (C / H) ** -0.5, hg));
          // bf16 under autocast: indexAddRows adds it into the float32 stream as the cast would
          const y = T(packedLinear(o, blk.attn.proj, 'none', low));
          native.indexAddRows(x2, r, y);
          freeTmp();
        }
        if (rowsMlp.length) {
          const r = T(upload(Int32Array.from(rowsMlp), [rowsMlp.length], device));
          const p = T(native.gatherRows(x2, r));
          const [ln] = native.layernormForward(p, blk.norm2.weight.handle, blk.norm2.bias.handle, blk.norm2.eps, lnOut).map(T);
          // fc1 with GELU in the GEMM's store epilogue (as the dense inference path does)
          const a = T(packedLinear(ln, blk.mlp.fc1, 'gelu', low));
          const y = T(packedLinear(a, blk.mlp.fc2, 'none', low));
          native.indexAddRows(x2, r, y);
          freeTmp();
        }
      }
      logits = m.classify(tokensView);
    } finally {
      freeTmp();
      tokensView.dispose();
      x2.free();
    }
    try {
      if (device !== 'cpu') native.synchronize(device); // ms covers the queued device work
    } catch (e) {
      logits.dispose(); // a device error of the queued work
      throw e;
    }
    const denom = Math.max(1, gated * B);
    let total = 0;
    for (const v of macs) total += v;
    const dense = patchEmbedMacs(c) + headMacs(c) + c.depth * (attnMacs(c, N) + mlpMacs(c, N));
    return {
      logits,
      kept: { patch: keptPatch / denom, head: keptHead / denom, block: keptBlock / denom },
      macs: total / B,
      macsPerSample: macs,
      denseMacs: dense,
      ms: performance.now() - t0,
      decisions,
    };
  });
}
