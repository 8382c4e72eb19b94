/** Token gather/scatter by per-sample int32 indices: x [B,N,C], idx [B,K]. */
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, int, out } from './_util.js';

/** out[b, k] = x[b, idx[b, k]] */
export function gatherTokens(x: Tensor, idx: Tensor): Tensor {
  const hx = handleOf(x, 'x', 'gatherTokens');
  const hi = handleOf(idx, 'idx', 'gatherTokens');
  const y = out(call('gatherTokens', () => native.gatherTokens(hx, hi)));
  if (needsGrad(x)) {
    const si = save(hi);
    const n = x.shape[1];
    record(y, 'gatherTokens', [x, null], (g) => [native.scatterTokens(g, si, n), null], [si]);
  }
  return y;
}

/** out[b, idx[b, k]] += g[b, k], out [B, n, C] zero elsewhere. */
export function scatterTokens(g: Tensor, idx: Tensor, n: number): Tensor {
  const hg = handleOf(g, 'g', 'scatterTokens');
  const hi = handleOf(idx, 'idx', 'scatterTokens');
  int(n, 'n', 'scatterTokens', 0);
  const y = out(call('scatterTokens', () => native.scatterTokens(hg, hi, n)));
  if (needsGrad(g)) {
    const si = save(hi);
    record(y, 'scatterTokens', [g, null], (gy) => [native.gatherTokens(gy, si), null], [si]);
  }
  return y;
}
