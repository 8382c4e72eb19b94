/** Parameter initialisation from the Philox stream (reproducible from a seed). */
import { native } from '../native.js';
import { Parameter } from './module.js';

/**
 * Truncated normal N(0, std²) cut at ±2 (timm's trunc_normal_ with a=-2, b=2 in absolute units for
 * std = 0.02 this never truncates in practice): resampled by taking successive Philox offsets.
 */
export function truncNormal(shape: readonly number[], std: number, seed: number): Parameter {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let filled = 0;
  for (let round = 0; filled < n && round < 64; round++) {
    const h = native.random([n], 'normal', seed, round);
    const d = h.read() as Float32Array;
    h.free();
    for (let i = 0; i < n && filled < n; i++) {
      const v = d[i] * std;
      if (v >= -2 && v <= 2) out[filled++] = v;
    }
  }
  return new Parameter(native.fromArray(out, [...shape], 'float32'));
}
