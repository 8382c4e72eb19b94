import { describe, expect, it } from 'vitest';
import { MAX_EXPLANATION_PIXELS, explanationSize, renderExplanation } from '../lib/explain/heatmap.js';
import type { BlockDecisions } from '../lib/infer/adavit-infer.js';
import { randn } from './helpers.js';

describe('explain heatmaps', () => {
  it('renders one row per image and one tile per gated block, and depends on the decisions', () => {
    const B = 2;
    const images = randn([B, 3, 16, 16], 1);
    const dec = (keep: number): BlockDecisions => ({
      block: 1, patches: new Uint8Array(B * 16).map((_, i) => (i % 3 < keep ? 1 : 0)),
      scores: new Float32Array(B * 16).map((_, i) => (i % 5) / 5), heads: new Uint8Array(B * 2).fill(1), sublayers: new Uint8Array(B * 2).fill(1),
    });
    const a = renderExplanation(images, B, [dec(1), dec(2)], { imgSize: 16, patchSize: 4, channels: 3, zoom: 2 });
    expect(a.width).toBe(2 + 4 * (32 + 2));
    expect(a.height).toBe(2 + B * (32 + 2));
    expect([...a.png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const b = renderExplanation(images, B, [dec(3), dec(2)], { imgSize: 16, patchSize: 4, channels: 3, zoom: 2 });
    expect(Buffer.compare(a.png, b.png)).not.toBe(0);
  });

  it('refuses a zoom that is not a positive integer and an image over the pixel limit, before allocating it', () => {
    const layout = { imgSize: 32, patchSize: 8, channels: 3 };
    expect(explanationSize(8, 2, layout)).toEqual({ width: 2 + 4 * (128 + 2), height: 2 + 8 * (128 + 2) });
    for (const zoom of [0, -1, 2.5, NaN]) expect(() => explanationSize(1, 2, { ...layout, zoom })).toThrow(/zoom must be a positive integer/);
    for (const B of [0, 1.5]) expect(() => explanationSize(B, 2, layout)).toThrow(/positive whole number of images/);
    // the largest count that fits at zoom 4, and one more
    const tile = 32 * 4 + 2, width = 4 * tile + 2;
    const most = Math.floor((MAX_EXPLANATION_PIXELS / width - 2) / tile);
    expect(explanationSize(most, 2, layout).height).toBe(most * tile + 2);
    expect(() => explanationSize(most + 1, 2, layout)).toThrow(/over the limit/);
    expect(() => explanationSize(1e9, 2, layout)).toThrow(/1000000000 image\(s\) at zoom 4/);
    expect(() => explanationSize(1, 2, { ...layout, zoom: 1e9 })).toThrow(/over the limit/);
    const images = randn([1, 3, 32, 32], 2);
    const dec: BlockDecisions = { block: 0, patches: new Uint8Array(16), scores: new Float32Array(16), heads: new Uint8Array(2), sublayers: new Uint8Array(2) };
    expect(() => renderExplanation(images, 1, [dec], { ...layout, zoom: 1e5 })).toThrow(/over the limit/);
  });
});
