/**
 * Fused softmax cross-entropy (mean over rows), with label smoothing as torch.nn.functional.cross_entropy.
 * Under autocast('bfloat16') it runs in float32 (bfloat16 logits are cast up).
 */
import { highIn, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, num, optsOf, out } from './_util.js';

export function crossEntropy(logits0: Tensor, labels: Tensor, opts0: { labelSmoothing?: number } | null = {}): Tensor {
  const opts = optsOf(opts0, 'crossEntropy');
  handleOf(logits0, 'logits', 'crossEntropy');
  const temps: Tensor[] = [];
  const logits = highIn(logits0, temps);
  const hl = logits.handle;
  const hy = handleOf(labels, 'labels', 'crossEntropy');
  const s = opts.labelSmoothing ?? 0;
  num(s, 'labelSmoothing', 'crossEntropy', (v) => v >= 0 && v < 1, 'in [0, 1)');
  const [loss, lse] = call('crossEntropy', () => native.crossEntropyForward(hl, hy, s));
  const y = out(loss);
  if (needsGrad(logits)) {
    const sl = save(hl);
    const sy = save(hy);
    record(y, 'crossEntropy', [logits, null], (g) => {
      // the upstream scalar stays where it is (the kernel reads it: no host sync on cuda)
      const g32 = g.dtype === 'float32' ? g : native.cast(g, 'float32');
      try {
        return [native.crossEntropyBackward(sl, sy, s, lse, g32), null];
      } finally {
        if (g32 !== g) g32.free();
      }
    }, [sl, sy, lse]);
  } else free(lse);
  release(temps);
  return y;
}
