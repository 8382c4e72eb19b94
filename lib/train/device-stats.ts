/**
 * Training statistics that stay on the device until they are read, so a training step queues its
 * work and returns without waiting for the GPU (each host read of a loss, a prediction or a norm is a
 * sync that stops the host from queuing the next step while the GPU works). All functions take and
 * return native handles; the caller frees what it gets back.
 *
 * - RunningSums: named float32 sums (Σ loss·B, correct predictions, usage·B), read together in one
 *   transfer.
 * - correctCount: how many argmax predictions equal the labels, as a float32 scalar on the device.
 * - clipCoef: torch.nn.utils.clip_grad_norm_'s factor min(1, maxNorm / (norm + 1e-6)) on the device,
 *   for AdamW.step to multiply the gradients by inside its update (no extra pass, no read-back). The
 *   clamp is formed exactly as k·(1 − s) + s with s = [k > 1], so a factor below 1 is the quotient
 *   itself and above 1 is exactly 1.
 */
import { freeOnThrow } from '../handles.js';
import { native, type Device, type NativeTensor } from '../native.js';

function freeAll(...hs: NativeTensor[]): void {
  for (const h of hs) h.free();
}

export class RunningSums {
  private sums = new Map<string, NativeTensor>();

  constructor(readonly device: Device) {}

  /** sums[key] += weight · x, for a one-element float32 tensor x on the device (not taken over). */
  add(key: string, x: NativeTensor, weight = 1): void {
    freeOnThrow(() => this.addTerm(key, x, weight));
  }

  private addTerm(key: string, x: NativeTensor, weight: number): void {
    const flat = x.reshape([1]);
    const f32 = x.dtype === 'float32' ? flat : native.cast(flat, 'float32');
    const term = native.affine(f32, weight, 0);
    flat.free();
    if (f32 !== flat) f32.free();
    const prev = this.sums.get(key);
    if (!prev) {
      this.sums.set(key, term);
      return;
    }
    this.sums.set(key, native.binary('add', prev, term));
    freeAll(prev, term);
  }

  /** Every sum, in one read (a sync on the GPU); keys never added are absent. */
  read(): Record<string, number> {
    const keys = [...this.sums.keys()];
    if (!keys.length) return {};
    const all = native.concat(keys.map((k) => this.sums.get(k)!), 0);
    try {
      const v = all.read() as Float32Array;
      return Object.fromEntries(keys.map((k, i) => [k, v[i]]));
    } finally {
      all.free();
    }
  }

  dispose(): void {
    for (const h of this.sums.values()) h.free();
    this.sums.clear();
  }
}

/** The number of rows of `logits` [B, C] whose argmax is `labels` [B] (int32), as a float32 [1]. */
export function correctCount(logits: NativeTensor, labels: NativeTensor): NativeTensor {
  return freeOnThrow(() => {
    const B = labels.shape[0];
    const [values, idx] = native.topk(logits, 1, true);
    const pred = native.cast(idx, 'float32');
    const lab = native.cast(labels, 'float32');
    const predFlat = pred.reshape([B]);
    const diff = native.binary('sub', predFlat, lab);
    const dist = native.unary('abs', diff);
    const wrong = native.step(dist, 0.5);
    const nWrong = native.reduce('sum', wrong, [], false);
    const flat = nWrong.reshape([1]);
    const correct = native.affine(flat, -1, B);
    freeAll(values, idx, pred, lab, predFlat, diff, dist, wrong, nWrong, flat);
    return correct;
  });
}

/**
 * torch.nn.utils.clip_grad_norm_'s factor for `grads`, on their device: the global L2 norm (float32
 * [1]; its square accumulated in double by one multi-tensor native call) and
 * coef = min(1, maxNorm / (norm + 1e-6)) (float32 [1]), which AdamW.step takes as its gradient scale.
 */
export function clipCoef(grads: NativeTensor[], maxNorm: number): { coef: NativeTensor; norm: NativeTensor } {
  return freeOnThrow(() => {
    const sq = native.sumSquares(grads);
    const norm = native.unary('sqrt', sq);
    const den = native.affine(norm, 1, 1e-6);
    const num = native.full([1], maxNorm, 'float32', norm.device);
    const k = native.binary('div', num, den);
    const s = native.step(k, 1);
    const keep = native.affine(s, -1, 1);
    const kk = native.binary('mul', k, keep);
    const coef = native.binary('add', kk, s);
    freeAll(sq, den, num, k, s, keep, kk);
    return { coef, norm };
  });
}
