/** LayerNorm over the last axis (fused forward/backward). timm's ViT uses eps = 1e-6. */
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, num, optHandle, out } from './_util.js';

export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-6): Tensor {
  const hx = handleOf(x, 'x', 'layerNorm');
  const hw = optHandle(weight, 'weight', 'layerNorm');
  const hb = optHandle(bias, 'bias', 'layerNorm');
  num(eps, 'eps', 'layerNorm', (v) => v >= 0, '≥ 0');
  const [hy, mean, rstd] = call('layerNorm', () => native.layernormForward(hx, hw, hb, eps));
  const y = out(hy);
  if (needsGrad(x, weight, bias)) {
    const sx = save(hx);
    const sw = hw ? save(hw) : null;
    record(y, 'layerNorm', [x, weight ?? null, bias ?? null], (g) => native.layernormBackward(g, sx, sw, mean, rstd),
      sw ? [sx, sw, mean, rstd] : [sx, mean, rstd]);
  } else free(mean, rstd);
  return y;
}
