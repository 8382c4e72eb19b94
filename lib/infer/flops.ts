/**
 * Analytic compute accounting. Figures are multiply-accumulates (MACs) of the linear layers and the
 * attention products, the convention behind the "GFLOPs" the ViT papers quote (fvcore counts one
 * MAC as one FLOP): DeiT-S comes out at 4.6 G. LayerNorm, GELU, softmax and residual adds are
 * omitted, as fvcore omits them.
 *
 * Per block, for a sample that keeps n tokens (class token included) and h of H heads:
 *   attention sub-layer (when executed): qkv n·C·3C + QKᵀ and A·V 2·n²·(C/H)·h + proj n·C·C
 *   MLP sub-layer (when executed):      2·n·C·(mlpRatio·C)
 * The policy's own cost (its gate layers) is added by the policy.
 */
import { resolveConfig, type VitConfig } from '../nn/vit.js';

export function patchEmbedMacs(c: VitConfig): number {
  const L = (c.imgSize / c.patchSize) ** 2;
  return L * c.inChans * c.patchSize * c.patchSize * c.embedDim;
}

export function attnMacs(c: VitConfig, n: number, heads = c.numHeads): number {
  const C = c.embedDim;
  const d = C / c.numHeads;
  return n * C * 3 * C + 2 * n * n * d * heads + n * C * C;
}

export function mlpMacs(c: VitConfig, n: number): number {
  return 2 * n * c.embedDim * c.embedDim * c.mlpRatio;
}

export function headMacs(c: VitConfig): number {
  return c.embedDim * c.numClasses;
}

/**
 * MACs of one image through the dense model, by config (a partial one takes the ViT defaults, as
 * vit.create) or timm name: denseMacs('deit_small_patch16_224') = 4.6e9. ArgumentError for a bad config.
 */
export function denseMacs(config: Partial<VitConfig> | string): number {
  const c = resolveConfig(config);
  const n = (c.imgSize / c.patchSize) ** 2 + 1;
  return patchEmbedMacs(c) + c.depth * (attnMacs(c, n) + mlpMacs(c, n)) + headMacs(c);
}
