/** Patch embedding as unfold + GEMM: x [B,C,H,W] → [B, (H/p)(W/p), E] with a Conv2d weight [E,C,p,p]. */
import { needsGrad, record } from '../autograd.js';
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, int, out } from './_util.js';
import { linearFused } from './linalg.js';
import { reshape } from './layout.js';

/** [B, C, H, W] → [B, (H/p)(W/p), C·p·p], each patch flattened (c, py, px). */
export function patchify(x: Tensor, p: number): Tensor {
  const hx = handleOf(x, 'x', 'patchify');
  int(p, 'patchSize', 'patchify', 1);
  const y = out(call('patchify', () => native.patchify(hx, p)));
  if (needsGrad(x)) {
    const xs = [...x.shape];
    record(y, 'patchify', [x], (g) => [native.unpatchify(g, xs, p)]);
  }
  return y;
}

/** Conv2d(kernel = stride = p) as patchify + linear; weight [E, C, p, p], bias [E]. */
export function patchEmbed(x: Tensor, weight: Tensor, bias: Tensor | null, p: number): Tensor {
  handleOf(weight, 'weight', 'patchEmbed');
  if (weight.rank !== 4 || weight.shape[2] !== p || weight.shape[3] !== p) {
    throw new ArgumentError(`patchEmbed: weight must be [E, C, ${p}, ${p}], got [${weight.shape}]`);
  }
  const cols = patchify(x, p);
  const w2 = reshape(weight, [weight.shape[0], -1]);
  const y = linearFused(cols, w2, bias); // plain linear when recording; packed-weight cache otherwise
  cols.dispose();
  w2.dispose();
  return y;
}
