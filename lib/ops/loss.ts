/** Fused softmax cross-entropy (mean over rows), with label smoothing as torch.nn.functional.cross_entropy. */
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, num, out } from './_util.js';

export function crossEntropy(logits: Tensor, labels: Tensor, opts: { labelSmoothing?: number } = {}): Tensor {
  const hl = handleOf(logits, 'logits', 'crossEntropy');
  const hy = handleOf(labels, 'labels', 'crossEntropy');
  const s = opts.labelSmoothing ?? 0;
  num(s, 'labelSmoothing', 'crossEntropy', (v) => v >= 0 && v < 1, 'in [0, 1)');
  const [loss, lse] = call('crossEntropy', () => native.crossEntropyForward(hl, hy, s));
  const y = out(loss);
  if (needsGrad(logits)) {
    const sl = save(hl);
    const sy = save(hy);
    record(y, 'crossEntropy', [logits, null], (g) => {
      const gl = g.read()[0];
      return [native.crossEntropyBackward(sl, sy, s, lse, gl), null];
    }, [sl, sy, lse]);
  } else free(lse);
  return y;
}
