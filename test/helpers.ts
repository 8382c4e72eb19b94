/**
 * Test helpers: seeded random data, relative errors in float64, central finite differences, and
 * error-code assertions. Inputs are fresh per run (seeded from the clock unless VITRIM_TEST_SEED is
 * set) so a kernel cannot pass by matching one fixed input; the seed is printed on failure.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { native, type NativeTensor } from '../lib/native.js';

export const RUN_SEED = Number(process.env.VITRIM_TEST_SEED ?? (Date.now() % 1_000_000));

/** mulberry32: a tiny seeded PRNG for test data (not the library's Philox). */
export function rng(seed: number): () => number {
  let a = (seed + RUN_SEED * 7919) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Standard-normal float32 data (Box-Muller), scaled. */
export function randn(shape: number[], seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(numel(shape));
  for (let i = 0; i < out.length; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

export function randu(shape: number[], seed: number, lo = 0, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

export function randint(shape: number[], seed: number, hi: number): Int32Array {
  const r = rng(seed);
  const out = new Int32Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * hi);
  return out;
}

/** A native float32 (or int32) tensor from data. */
export function nt(data: Float32Array | Int32Array | number[], shape: number[]): NativeTensor {
  if (Array.isArray(data)) data = new Float32Array(data);
  return native.fromArray(data, shape, data instanceof Int32Array ? 'int32' : 'float32');
}

/** ‖a − b‖ / ‖b‖ computed in float64 (‖a‖ when b is all zeros). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

export function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what = ''): void {
  const e = relErr(a, b);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(3)} > ${tol} (seed ${RUN_SEED})`);
}

/**
 * expectClose for a sum that can cancel (α·A·B + β·C, x·Wᵀ + b): ‖a − b‖ ≤ tol·‖b‖ + 4u·‖mag‖,
 * where mag is the same sum over absolute values (|α||A||B| + |β||C|) and u = 2⁻²⁴. Where the
 * terms cancel, an fp32 result is only accurate to a few roundings of mag, which the plain
 * ‖a − b‖/‖b‖ turns into an arbitrary relative error (a 1×1×1 GEMM with β = 1 came out 2.8e-5 at
 * one seed). Without cancellation ‖mag‖ is within a small multiple of ‖b‖ (about 0.6·√K for random
 * inputs) and the added term stays well below tol·‖b‖.
 */
export function expectCloseSum(a: ArrayLike<number>, b: ArrayLike<number>, mag: ArrayLike<number>, tol: number, what = ''): void {
  expect(a.length).toBe(b.length);
  expect(mag.length).toBe(b.length);
  let num = 0, den = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] * b[i];
    m += mag[i] * mag[i];
  }
  const err = Math.sqrt(num), bound = tol * Math.sqrt(den) + 4 * 2 ** -24 * Math.sqrt(m);
  if (!(err <= bound)) {
    throw new Error(`${what}: error ${err.toExponential(3)} > ${tol}·‖ref‖ + 4u·‖|terms|‖ = ${bound.toExponential(3)} ` +
      `(relative ${(err / Math.sqrt(den)).toExponential(3)}, seed ${RUN_SEED})`);
  }
}

/**
 * Central finite differences of a scalar function f at x (float64 perturbations of a float32 input):
 * returns df/dx[i] for the `indices` given (all when omitted).
 */
export function finiteDiff(
  f: (x: Float32Array) => number,
  x: Float32Array,
  h = 1e-2,
  indices?: number[],
): Float64Array {
  const idx = indices ?? Array.from({ length: x.length }, (_, i) => i);
  const out = new Float64Array(idx.length);
  idx.forEach((i, k) => {
    const xi = x[i];
    const p = Float32Array.from(x);
    p[i] = xi + h;
    const fp = f(p);
    p[i] = xi - h;
    const fm = f(p);
    out[k] = (fp - fm) / (2 * h);
  });
  return out;
}

/** Σ y·w in float64: turns a tensor output into a scalar loss for gradient checks. */
export function dot(y: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * w[i];
  return s;
}

/**
 * Σ|y_i·w_i|: the scale a rounding error of dot(y, w) is measured against. A bound relative to
 * |dot(y, w)| fails whenever random terms happen to cancel (seen in CI: an adjoint check whose
 * 215k terms summed to 0.49, where the float32 rounding of scatter's sums left an error of 1.9e-5).
 */
export function absDot(y: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += Math.abs(y[i] * w[i]);
  return s;
}

/** Asserts fn throws an Error carrying `code` (e.g. 'ERR_VITRIM_SHAPE'); returns the message. */
export function expectCode(fn: () => unknown, code: string): string {
  try {
    fn();
  } catch (e) {
    const err = e as Error & { code?: string };
    expect(err.code, `expected ${code}, got ${err.code}: ${err.message}`).toBe(code);
    expect(err.message.length).toBeGreaterThan(5);
    return err.message;
  }
  throw new Error(`expected an error with code ${code}, but nothing was thrown`);
}

/**
 * How long a child process a test spawns (an example, the CLI) may run: 5 minutes, or
 * VITRIM_TEST_CHILD_TIMEOUT_MS (scripts/test-cuda-emu.sh sets 30 minutes: under AddressSanitizer or
 * the race check the emulated examples take several times longer).
 */
export const CHILD_TIMEOUT_MS = Number(process.env.VITRIM_TEST_CHILD_TIMEOUT_MS) || 300_000;

/** Runs examples/<file> as a user would (node + tsx, a child process): exit code, stdout, stderr. */
export function runExample(file: string, ...args: string[]): { code: number | null; out: string; err: string } {
  const root = join(__dirname, '..');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'examples', file), ...args], {
    cwd: root, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
