/**
 * Fused multi-head attention over timm's packed qkv [B, N, 3C] → [B, N, C] (before the output
 * projection), with DynamicViT's optional per-key keep mask (diagonal kept; its gradient flows to the
 * mask) and an optional per-head gate [B, H].
 */
import { lowIn, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, int, num, optHandle, optsOf, out } from './_util.js';

export interface AttentionOptions {
  numHeads: number;
  /** Score scale; default head_dim^-0.5. */
  scale?: number;
  /** [B, N] keep decisions (0..1) for keys; DynamicViT's softmax_with_policy. */
  keep?: Tensor | null;
  /** [B, H] per-head output gate. */
  headGate?: Tensor | null;
  /** DynamicViT's ε in (A + ε/N)/(ΣA + ε); default 1e-6. */
  eps?: number;
}

/**
 * Under autocast('bfloat16') on cuda, qkv is cast to bfloat16 (and the output is bfloat16); keep and
 * headGate stay as given (float32 masks).
 */
export function attention(qkv0: Tensor, opts0: AttentionOptions): Tensor {
  const op = 'attention';
  handleOf(qkv0, 'qkv', op);
  const opts = optsOf(opts0, op);
  const temps: Tensor[] = [];
  const qkv = lowIn(qkv0, temps);
  const hq = qkv.handle;
  const H = int(opts?.numHeads, 'numHeads', op, 1);
  const C = qkv.shape[qkv.rank - 1] / 3;
  const scale = opts.scale ?? (Number.isInteger(C / H) && C > 0 ? (C / H) ** -0.5 : 1);
  num(scale, 'scale', op);
  const eps = opts.eps ?? 1e-6;
  num(eps, 'eps', op, (v) => v >= 0, '≥ 0');
  const hk = optHandle(opts.keep, 'keep', op);
  const hg = optHandle(opts.headGate, 'headGate', op);
  const [ho, stats] = call(op, () => native.attentionForward(hq, H, scale, hk, hg, eps));
  const y = out(ho);
  if (needsGrad(qkv, opts.keep, opts.headGate)) {
    const sq = save(hq);
    const sk = hk ? save(hk) : null;
    const sg = hg ? save(hg) : null;
    const so = save(ho);
    record(y, op, [qkv, opts.keep ?? null, opts.headGate ?? null],
      (g) => native.attentionBackward(g, sq, H, scale, sk, sg, eps, so, stats),
      [sq, so, stats, ...(sk ? [sk] : []), ...(sg ? [sg] : [])]);
  } else free(stats);
  release(temps);
  return y;
}
