import { describe, expect, it } from 'vitest';
import { denseMacs } from '../lib/infer/flops.js';
import { vit } from '../lib/index.js';

describe('FLOPs accounting', () => {
  it('reproduces the published dense figures (fvcore convention: MACs)', () => {
    // DeiT papers: DeiT-Ti 1.3, DeiT-S 4.6, DeiT-B 17.6 GFLOPs
    expect(denseMacs(vit.configs.deit_tiny_patch16_224) / 1e9).toBeCloseTo(1.26, 1);
    expect(denseMacs(vit.configs.deit_small_patch16_224) / 1e9).toBeCloseTo(4.6, 1);
    expect(denseMacs(vit.configs.deit_base_patch16_224) / 1e9).toBeCloseTo(17.6, 1);
  });
});
