import { describe, expect, it } from 'vitest';
import { renderExplanation } from '../lib/explain/heatmap.js';
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
});
