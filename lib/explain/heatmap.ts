/**
 * Explanations of AdaViT decisions as one PNG: a row per image with
 *   [input | block l: the input with dropped patches dimmed, for each gated block | mean keep score]
 * The score map is σ(z/τ) of the patch gates averaged over the gated blocks, shown over the patch
 * grid min-max scaled per image (dark purple = the image's least kept patch, yellow = its most kept:
 * the ranking is what matters; absolute scores are printed by the CLI's kept ratios).
 * Images are shown min-max scaled per image; grayscale inputs are repeated to RGB.
 */
import { encodePng } from '../data/png.js';
import { ArgumentError } from '../errors.js';
import type { BlockDecisions } from '../infer/adavit-infer.js';

export interface ExplainLayout {
  imgSize: number;
  patchSize: number;
  channels: number;
  /** Pixel zoom of every tile (default 4). */
  zoom?: number;
}

// A compact perceptual ramp (viridis at 5 stops) for the score map.
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  return [0, 1, 2].map((c) => RAMP[i][c] + f * (RAMP[i + 1][c] - RAMP[i][c])) as [number, number, number];
}

/** The most pixels an explanation may have: 2²⁸ (768 MiB of RGB before compression). */
export const MAX_EXPLANATION_PIXELS = 2 ** 28;
const PAD = 2;

/**
 * The size of the PNG renderExplanation makes for B images and `blocks` gated blocks; an
 * ArgumentError where the zoom is not a positive integer or the image would exceed
 * MAX_EXPLANATION_PIXELS (callers check this before running the model on B images).
 */
export function explanationSize(B: number, blocks: number, layout: ExplainLayout): { width: number; height: number } {
  const z = layout.zoom ?? 4;
  if (!Number.isInteger(z) || z < 1) throw new ArgumentError(`explanation zoom must be a positive integer, got ${z}`);
  if (!Number.isInteger(B) || B < 1) throw new ArgumentError(`an explanation needs a positive whole number of images, got ${B}`);
  const tile = layout.imgSize * z + PAD;
  const width = (2 + blocks) * tile + PAD, height = B * tile + PAD;
  if (width * height > MAX_EXPLANATION_PIXELS) {
    throw new ArgumentError(`an explanation of ${B} image(s) at zoom ${z} would be ${width}×${height} pixels, over the limit of ` +
      `${MAX_EXPLANATION_PIXELS} (2^28): use fewer images or a smaller zoom`);
  }
  return { width, height };
}

/** Renders B rows of explanations; returns PNG bytes and the image size. */
export function renderExplanation(images: Float32Array, B: number, decisions: BlockDecisions[], layout: ExplainLayout): { png: Buffer; width: number; height: number } {
  const { imgSize: S, patchSize: P, channels: C } = layout;
  const z = layout.zoom ?? 4;
  const G = S / P;
  const L = G * G;
  const tiles = 2 + decisions.length;
  const { width: W, height: H } = explanationSize(B, decisions.length, layout);
  const out = new Uint8Array(W * H * 3).fill(255);
  for (let b = 0; b < B; b++) {
    const img = images.subarray(b * C * S * S, (b + 1) * C * S * S);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of img) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const pix = (y: number, x: number, c: number) => (img[(C === 1 ? 0 : c) * S * S + y * S + x] - lo) / (hi - lo || 1);
    const meanScore = new Float32Array(L);
    for (const d of decisions) for (let j = 0; j < L; j++) meanScore[j] += d.scores[b * L + j] / Math.max(1, decisions.length);
    let sLo = Infinity;
    let sHi = -Infinity;
    for (const v of meanScore) {
      sLo = Math.min(sLo, v);
      sHi = Math.max(sHi, v);
    }
    for (let j = 0; j < L; j++) meanScore[j] = sHi > sLo ? (meanScore[j] - sLo) / (sHi - sLo) : 1;
    const oy = PAD + b * (S * z + PAD);
    for (let t = 0; t < tiles; t++) {
      const ox = PAD + t * (S * z + PAD);
      for (let y = 0; y < S * z; y++) {
        for (let x = 0; x < S * z; x++) {
          const sy = Math.floor(y / z);
          const sx = Math.floor(x / z);
          const patch = Math.floor(sy / P) * G + Math.floor(sx / P);
          let rgb: [number, number, number];
          if (t === tiles - 1) rgb = ramp(meanScore[patch]);
          else {
            rgb = [0, 1, 2].map((c) => 255 * pix(sy, sx, c)) as [number, number, number];
            if (t > 0 && !decisions[t - 1].patches[b * L + patch]) rgb = [rgb[0] * 0.25 + 40, rgb[1] * 0.25, rgb[2] * 0.25 + 40];
          }
          const o = ((oy + y) * W + ox + x) * 3;
          out[o] = rgb[0];
          out[o + 1] = rgb[1];
          out[o + 2] = rgb[2];
        }
      }
    }
  }
  return { png: encodePng(out, W, H, 3), width: W, height: H };
}
