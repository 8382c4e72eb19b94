/**
 * LayerNorm over the last axis (fused forward/backward). timm's ViT uses eps = 1e-6. Under
 * autocast('bfloat16') it runs in float32 (bfloat16 inputs are cast up).
 *
 * `opts.dtype` sets the output dtype (the input's by default). 'bfloat16' is what a bf16 GEMM after
 * the norm would cast the float32 result to anyway: the kernel rounds its float32 result once, so
 * the bits are those of layerNorm(...) cast to bfloat16, without the cast's extra pass and launch
 * (the ViT blocks ask for it under autocast). The backward casts the incoming bfloat16 gradient up,
 * as the cast's backward would.
 */
import { highIn, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, num, optHandle, optsOf, out } from './_util.js';

export interface LayerNormOptions {
  /** Output dtype: 'float32' or 'bfloat16' (default: the input's dtype, after autocast). */
  dtype?: 'float32' | 'bfloat16';
}

export function layerNorm(x0: Tensor, weight0?: Tensor | null, bias0?: Tensor | null, eps = 1e-6,
  opts: LayerNormOptions | null = {}): Tensor {
  handleOf(x0, 'x', 'layerNorm');
  optHandle(weight0, 'weight', 'layerNorm');
  optHandle(bias0, 'bias', 'layerNorm');
  num(eps, 'eps', 'layerNorm', (v) => v >= 0, '≥ 0');
  const dtype = optsOf(opts, 'layerNorm').dtype;
  if (dtype !== undefined && dtype !== 'float32' && dtype !== 'bfloat16') {
    throw new ArgumentError(`layerNorm: opts.dtype must be 'float32' or 'bfloat16', got ${String(dtype)}`);
  }
  const temps: Tensor[] = [];
  const x = highIn(x0, temps);
  const weight = highIn(weight0, temps);
  const bias = highIn(bias0, temps);
  try {
    const hx = x.handle;
    const hw = weight ? weight.handle : null;
    const hb = bias ? bias.handle : null;
    const to = dtype !== undefined && dtype !== hx.dtype ? dtype : null;
    const [hy, mean, rstd] = call('layerNorm', () => native.layernormForward(hx, hw, hb, eps, to));
    const y = out(hy);
    if (needsGrad(x, weight, bias)) {
      const sx = save(hx);
      const sw = hw ? save(hw) : null;
      record(y, 'layerNorm', [x, weight ?? null, bias ?? null], (g) => {
        if (g.dtype === sx.dtype) return native.layernormBackward(g, sx, sw, mean, rstd);
        const gu = native.cast(g, sx.dtype);
        try {
          return native.layernormBackward(gu, sx, sw, mean, rstd);
        } finally {
          gu.free();
        }
      }, sw ? [sx, sw, mean, rstd] : [sx, mean, rstd]);
    } else free(mean, rstd);
    return y;
  } finally {
    release(temps);
  }
}
