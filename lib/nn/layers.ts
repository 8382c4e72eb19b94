/** Basic layers with timm's parameter names: Linear (weight [out, in], bias), LayerNorm (weight, bias). */
import { boolOpt, int, optsOf } from '../args.js';
import { ArgumentError } from '../errors.js';
import { layerNorm, linearFused, type LayerNormOptions } from '../ops/index.js';
import { full, type Tensor } from '../tensor.js';
import { Module, Parameter } from './module.js';
import { truncNormal } from './init.js';

export class Linear extends Module {
  weight: Parameter;
  bias: Parameter | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts?: { bias?: boolean; seed?: number } | null) {
    super();
    const o = optsOf(opts, 'Linear');
    int(inFeatures, 'inFeatures', 'Linear', 0, 2 ** 31 - 1);
    int(outFeatures, 'outFeatures', 'Linear', 0, 2 ** 31 - 1);
    // the weight is initialised from a JavaScript array, which holds at most 2^31 - 1 elements
    if (inFeatures * outFeatures > 2 ** 31 - 1) {
      throw new ArgumentError(`Linear: the weight [${outFeatures}, ${inFeatures}] would hold more than 2^31 - 1 elements`);
    }
    const bias = boolOpt(o.bias, true, 'bias', 'Linear');
    // timm's ViT init: trunc_normal(std=.02) weights, zero bias.
    this.weight = truncNormal([outFeatures, inFeatures], 0.02, int(o.seed ?? 0, 'seed', 'Linear', 0, Number.MAX_SAFE_INTEGER));
    this.bias = bias ? Parameter.from(full([outFeatures], 0)) : null;
  }
  /** y = x Wᵀ + b; without gradient recording through linearFused (its packed weights are cached). */
  forward(x: Tensor): Tensor {
    return linearFused(x, this.weight, this.bias);
  }
}

export class LayerNorm extends Module {
  weight: Parameter;
  bias: Parameter;
  constructor(readonly dim: number, readonly eps = 1e-6) {
    super();
    this.weight = Parameter.from(full([dim], 1));
    this.bias = Parameter.from(full([dim], 0));
  }
  /** opts.dtype: the output dtype (see ops.layerNorm). */
  forward(x: Tensor, opts: LayerNormOptions = {}): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps, opts);
  }
}
