/**
 * LayerNorm over the last axis (fused forward/backward). timm's ViT uses eps = 1e-6. Under
 * autocast('bfloat16') it runs in float32 (bfloat16 inputs are cast up).
 */
import { highIn, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, num, optHandle, out } from './_util.js';

export function layerNorm(x0: Tensor, weight0?: Tensor | null, bias0?: Tensor | null, eps = 1e-6): Tensor {
  handleOf(x0, 'x', 'layerNorm');
  optHandle(weight0, 'weight', 'layerNorm');
  optHandle(bias0, 'bias', 'layerNorm');
  const temps: Tensor[] = [];
  const x = highIn(x0, temps);
  const weight = highIn(weight0, temps);
  const bias = highIn(bias0, temps);
  const hx = x.handle;
  const hw = weight ? weight.handle : null;
  const hb = bias ? bias.handle : null;
  num(eps, 'eps', 'layerNorm', (v) => v >= 0, '≥ 0');
  const [hy, mean, rstd] = call('layerNorm', () => native.layernormForward(hx, hw, hb, eps));
  const y = out(hy);
  if (needsGrad(x, weight, bias)) {
    const sx = save(hx);
    const sw = hw ? save(hw) : null;
    record(y, 'layerNorm', [x, weight ?? null, bias ?? null], (g) => native.layernormBackward(g, sx, sw, mean, rstd),
      sw ? [sx, sw, mean, rstd] : [sx, mean, rstd]);
  } else free(mean, rstd);
  release(temps);
  return y;
}
