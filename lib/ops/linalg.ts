/** matmul and linear (y = x Wᵀ + b, timm's nn.Linear layout W [out, in]). */
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, optHandle, out } from './_util.js';

/** [.., M, K] × [.., K, N] with optional transposes; b may be 2-D (shared across the batch). */
export function matmul(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean } = {}): Tensor {
  const ha = handleOf(a, 'a', 'matmul');
  const hb = handleOf(b, 'b', 'matmul');
  const ta = !!opts.transA;
  const tb = !!opts.transB;
  const y = out(call('matmul', () => native.matmul(ha, hb, ta, tb)));
  if (needsGrad(a, b)) {
    const sa = save(ha);
    const sb = save(hb);
    const batchAxes = a.shape.slice(0, -2).map((_, i) => i);
    const sharedB = b.rank === 2 && batchAxes.length > 0;
    record(y, 'matmul', [a, b], (g) => {
      // C = op(A)·op(B):  d op(A) = G·op(B)ᵀ,  d op(B) = op(A)ᵀ·G; then undo the transposes.
      const gopA = native.matmul(g, sb, false, !tb);
      let ga = gopA;
      if (ta) {
        const r = gopA.shape.length;
        const perm = gopA.shape.map((_, i) => i);
        [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
        ga = native.permute(gopA, perm);
        gopA.free();
      }
      const gbFull = tb ? native.matmul(g, sa, true, ta) : native.matmul(sa, g, !ta, false);
      if (!sharedB) return [ga, gbFull];
      const gb = native.reduce('sum', gbFull, batchAxes, false);
      gbFull.free();
      return [ga, gb];
    }, [sa, sb]);
  }
  return y;
}

/** y = x Wᵀ + b over the last axis of x. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const hx = handleOf(x, 'x', 'linear');
  const hw = handleOf(weight, 'weight', 'linear');
  const hb = optHandle(bias, 'bias', 'linear');
  const y = out(call('linear', () => native.linearForward(hx, hw, hb)));
  if (needsGrad(x, weight, bias)) {
    const sx = save(hx);
    const sw = save(hw);
    const needBias = !!bias && !!(bias.requiresGrad || bias.gradFn);
    record(y, 'linear', [x, weight, bias ?? null], (g) => native.linearBackward(g, sx, sw, needBias), [sx, sw]);
  }
  return y;
}
