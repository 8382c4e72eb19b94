/** Top-k along the last axis (sorted). Values carry a gradient (scattered back); indices are int32. */
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { boolOpt, call, handleOf, int, optsOf, out } from './_util.js';

export function topk(x: Tensor, k: number, opts0: { largest?: boolean } | null = {}): { values: Tensor; indices: Tensor } {
  const hx = handleOf(x, 'x', 'topk');
  int(k, 'k', 'topk');
  const largest = boolOpt(optsOf(opts0, 'topk').largest, true, 'largest', 'topk');
  const [hv, hi] = call('topk', () => native.topk(hx, k, largest));
  const values = out(hv);
  const indices = out(hi);
  if (needsGrad(x)) {
    const si = save(hi);
    const xs = [...x.shape];
    const L = xs[xs.length - 1];
    record(values, 'topk', [x], (g) => {
      // Rows are independent: view [..., L] as [R, L, 1] tokens and scatter the k values back.
      const R = g.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const g3 = g.reshape([R, k, 1]);
      const i2 = si.reshape([R, k]);
      const s = native.scatterTokens(g3, i2, L);
      g3.free();
      i2.free();
      const r = s.reshape(xs);
      s.free();
      return [r];
    }, [si]);
  }
  return { values, indices };
}
