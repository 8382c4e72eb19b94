/**
 * A small seeded PRNG for the data layer: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator,
 * 128-bit state, passes PractRand to large sizes) whose state is derived from a list of integer keys,
 * e.g. (seed, stream tag, epoch, index). Every sample and every augmentation draws from its own keyed
 * stream, so sample i is a pure function of its keys: index-addressable, order-independent, and
 * reproducible across runs (all arithmetic is 32-bit integer; floats come from exact divisions).
 *
 * Keying: each key (a non-negative safe integer, split into two 32-bit words) is absorbed into four
 * 32-bit lanes with different constants (murmur3-style round + fmix32 finaliser), so two key lists
 * share an initial state only if all four 32-bit lane hashes collide; then 12 outputs are discarded so
 * nearby keys decorrelate. sfc32's state update is a bijection, so distinct states stay distinct.
 */
import { ArgumentError } from '../errors.js';

const TWO32 = 4294967296;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function absorb(h: number, w: number, lane: number): number {
  let k = Math.imul(w ^ Math.imul(lane + 1, 0x9e3779b9), 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Checks that v can be a PRNG key (a non-negative safe integer). */
export function checkKey(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ArgumentError(`${what} must be a non-negative safe integer, got ${String(v)}`);
  }
  return v;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** A generator keyed by the given non-negative safe integers (validated). */
  constructor(...keys: number[]) {
    const seeds = [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344];
    const lanes = seeds.slice();
    for (let i = 0; i < keys.length; i++) {
      const v = checkKey(keys[i], 'rng key');
      const lo = v >>> 0;
      const hi = Math.floor(v / TWO32) >>> 0;
      for (let j = 0; j < 4; j++) lanes[j] = absorb(absorb(lanes[j], lo, j), hi, j);
    }
    this.a = fmix32(lanes[0] ^ keys.length);
    this.b = fmix32(lanes[1] ^ keys.length);
    this.c = fmix32(lanes[2] ^ keys.length);
    this.d = fmix32(lanes[3] ^ keys.length);
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** The next 32-bit unsigned integer. */
  u32(): number {
    const a = this.a | 0;
    const b = this.b | 0;
    const c = this.c | 0;
    const d = this.d | 0;
    const t = (((a + b) | 0) + d) | 0;
    this.d = (d + 1) | 0;
    this.a = b ^ (b >>> 9);
    this.b = (c + (c << 3)) | 0;
    this.c = ((((c << 21) | (c >>> 11)) | 0) + t) | 0;
    return t >>> 0;
  }

  /** Fills `out` with the next out.length 32-bit outputs (the same values as repeated u32()). */
  fillU32(out: Uint32Array): Uint32Array {
    if (!(out instanceof Uint32Array)) throw new ArgumentError(`Rng.fillU32: out must be a Uint32Array, got ${Object.prototype.toString.call(out)}`);
    let a = this.a | 0;
    let b = this.b | 0;
    let c = this.c | 0;
    let d = this.d | 0;
    for (let i = 0; i < out.length; i++) {
      const t = (((a + b) | 0) + d) | 0;
      d = (d + 1) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = ((((c << 21) | (c >>> 11)) | 0) + t) | 0;
      out[i] = t;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
    return out;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.u32() / TWO32;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n) (n ≤ 2^32; the modulo bias is below 2^-32 · n and irrelevant here). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [lo, hi] inclusive. */
  intRange(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.next() < p;
  }
}

/** Stream tags: fixed constants so that different uses of the same seed never share a stream. */
export const STREAM = {
  shapesTrain: 0x5a17,
  shapesTest: 0x7e57,
  augment: 0xa116,
  shuffle: 0x5f1e,
} as const;

/** An in-place Fisher-Yates shuffle of `a` driven by `rng`. */
export function shuffleInPlace<T>(a: T[], rng: Rng): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}
