/**
 * Shapes: the built-in procedural dataset. One object of C classes (circle, square, triangle, cross,
 * ring, star, diamond, ellipse, H, arrow) at a random position, scale, rotation and colour on a
 * cluttered, low-contrast background, so that most patches carry no information about the class —
 * what token dropping is for. Nothing is stored: sample i of a split is a pure function of
 * (seed, split, i) through its own keyed PRNG stream (lib/data/rng.ts), so any length works and any
 * index can be generated alone.
 *
 * Scene, in image-relative units so it looks the same at 32, 64 or 224 px:
 *  - background: a dark base colour B ~ U[0.1, 0.45]³, a smooth bilinear colour texture (4×4 nodes,
 *    ±0.10), a faint grating (≤ 0.05, 3-10 cycles per image, random orientation), 2-5 soft blobs
 *    (±0.15 around B), 3-7 anti-aliased line segments of random length (±0.2 around B), and finally
 *    per-pixel uniform noise ±0.04 over everything (object included);
 *  - object: every class is scaled to the same area (a fraction U[0.08, 0.2] of the image), so size
 *    says nothing about the class; random rotation in [0, 2π) (the classes are chosen to stay distinct
 *    under rotation: the diamond is a 2:1 rhombus, not a rotated square; the ellipse is 2:1); position
 *    uniform such that the object lies inside the image; a light colour O ~ U[0.55, 1]³ conditioned
 *    on ‖O − B‖ ≥ 0.4, drawn independently of the class (so the expected colour of every class is the
 *    same: mean colour does not separate classes), with a faint linear shading (±0.1). The object is
 *    always lighter than the background: with both colours random, edge polarity flips from image to
 *    image and a ViT's linear patch embedding cannot find the outline (a 2-block ViT stayed at chance
 *    for 6 epochs; with a consistent polarity it reaches 60 % on 4 classes in the same time).
 *  - labels: sample i has class i mod C (exact balance in every prefix of C samples).
 *
 * Rasterisation: each class is a Lipschitz-1 signed distance bound f (negative inside) in object
 * units. At a pixel centre, |f| > half a pixel diagonal (in object units) proves the pixel wholly
 * inside or outside; otherwise coverage is estimated with 4×4 supersampling. The mask is 1 where the
 * coverage is ≥ 0.5. Images are planar RGB float32 [3, S, S] in [0, 1] before the pipeline
 * (normalisation, optional augmentation) of lib/data/transforms.ts.
 */
import { ArgumentError, IndexError } from '../errors.js';
import { checkIndices, epochOf, type Batch, type Dataset, type GetBatchOptions } from './dataset.js';
import { checkKey, Rng, STREAM } from './rng.js';
import { Pipeline, type AugmentOptions, type NormalizeSpec } from './transforms.js';

export const SHAPE_NAMES = ['circle', 'square', 'triangle', 'cross', 'ring', 'star', 'diamond', 'ellipse', 'H', 'arrow'] as const;

export type Sdf = (x: number, y: number) => number;

const S3 = Math.sqrt(3) / 2;
const RHOMBUS_NORM = 1 / Math.sqrt(1 * 1 + 0.5 * 0.5);
const ARROW_NORM = 1 / Math.hypot(0.55, 0.8);

/**
 * 5-point star, tips at radius 1 (one at +y), inner vertices at radius 0.45: Inigo Quilez's exact
 * signed distance (fold into one tenth of the plane by a mirror and two reflections, then the
 * distance to the one tip-to-inner-vertex edge).
 */
const K1X = Math.cos(Math.PI / 5); // 0.809…
const K1Y = -Math.sin(Math.PI / 5); // -0.587…
const STAR_INNER = 0.45;
const STAR_BAX = STAR_INNER * -K1Y;
const STAR_BAY = STAR_INNER * K1X - 1;
const STAR_BB = STAR_BAX * STAR_BAX + STAR_BAY * STAR_BAY;

function star(x: number, y: number): number {
  x = Math.abs(x);
  let d = K1X * x + K1Y * y;
  if (d > 0) {
    x -= 2 * d * K1X;
    y -= 2 * d * K1Y;
  }
  d = -K1X * x + K1Y * y;
  if (d > 0) {
    x += 2 * d * K1X;
    y -= 2 * d * K1Y;
  }
  x = Math.abs(x);
  y -= 1;
  let h = (x * STAR_BAX + y * STAR_BAY) / STAR_BB;
  h = h < 0 ? 0 : h > 1 ? 1 : h;
  const ex = x - STAR_BAX * h;
  const ey = y - STAR_BAY * h;
  const dist = Math.sqrt(ex * ex + ey * ey);
  return y * STAR_BAX - x * STAR_BAY < 0 ? -dist : dist;
}

/**
 * Signed distance bounds (Lipschitz-1, negative inside) in object units; shapes fit in radius ~1.1.
 * One switch rather than an array of closures, so the rasteriser's call site stays monomorphic
 * and can be inlined.
 */
function sdf(label: number, x: number, y: number): number {
  switch (label) {
    case 0: // circle
      return Math.sqrt(x * x + y * y) - 1;
    case 1: // square
      return Math.max(Math.abs(x), Math.abs(y)) - 0.8;
    case 2: // equilateral triangle, circumradius 1, apex at +y
      return Math.max(-y, S3 * Math.abs(x) + 0.5 * y) - 0.5;
    case 3: {
      // cross: two 2 × 0.56 bars
      const ax = Math.abs(x);
      const ay = Math.abs(y);
      return Math.min(Math.max(ax - 1, ay - 0.28), Math.max(ax - 0.28, ay - 1));
    }
    case 4: // ring, outer radius 1, hole radius 0.5
      return Math.abs(Math.sqrt(x * x + y * y) - 0.75) - 0.25;
    case 5:
      return star(x, y);
    case 6: // rhombus, half-diagonals 1 and 0.5
      return (Math.abs(x) * 0.5 + Math.abs(y) - 0.5) * RHOMBUS_NORM;
    case 7: // ellipse 1 × 0.5 (scaled by the minor axis to stay Lipschitz-1)
      return 0.5 * (Math.sqrt(x * x + 4 * y * y) - 1);
    case 8: {
      // H: two 0.4 × 1.6 posts at x = ±0.55 and a 1.1 × 0.32 crossbar
      const ax = Math.abs(x);
      const ay = Math.abs(y);
      return Math.min(Math.max(Math.abs(ax - 0.55) - 0.2, ay - 0.8), Math.max(ax - 0.55, ay - 0.16));
    }
    default: {
      // arrow: shaft x ∈ [-0.95, 0.25], |y| ≤ 0.2; head (1, 0), (0.2, ±0.55)
      const shaft = Math.max(Math.abs(x + 0.35) - 0.6, Math.abs(y) - 0.2);
      const head = Math.max(0.2 - x, (0.55 * (x - 1) + 0.8 * Math.abs(y)) * ARROW_NORM);
      return Math.min(shaft, head);
    }
  }
}

/** The class shapes as functions (object units), for tests and tools. */
export const SDFS: readonly Sdf[] = SHAPE_NAMES.map((_, k) => (x: number, y: number) => sdf(k, x, y));

interface Geometry {
  /** Area in object units². */
  area: number;
  /** Radius of a disc about the origin that contains the shape. */
  radius: number;
}

let GEOMETRY: Geometry[] | null = null;

/** Areas and bounding radii, measured once on a 512² grid (so the area normalisation is exact to ~0.5%). */
function geometry(): Geometry[] {
  if (GEOMETRY) return GEOMETRY;
  const N = 512;
  const L = 1.25;
  const cell = (2 * L) / N;
  GEOMETRY = SHAPE_NAMES.map((_, label) => {
    let count = 0;
    let r2 = 0;
    for (let j = 0; j < N; j++) {
      const y = -L + (j + 0.5) * cell;
      for (let i = 0; i < N; i++) {
        const x = -L + (i + 0.5) * cell;
        if (sdf(label, x, y) < 0) {
          count++;
          const d = x * x + y * y;
          if (d > r2) r2 = d;
        }
      }
    }
    return { area: count * cell * cell, radius: Math.sqrt(r2) + cell };
  });
  return GEOMETRY;
}

const AREA_MIN = 0.08;
const AREA_MAX = 0.2;
const MIN_CONTRAST = 0.4;
const NOISE = 0.04;
const SUB = 4; // supersampling grid per axis on edge pixels

/** What was drawn for one sample (pixel units; angle in radians). */
export interface ShapeInfo {
  label: number;
  shape: string;
  cx: number;
  cy: number;
  /** Pixels per object unit. */
  scale: number;
  angle: number;
  /** Object base colour (RGB in [0, 1]) and background base colour. */
  colour: [number, number, number];
  background: [number, number, number];
  /** Object area in pixels (sum of coverage). */
  areaPx: number;
}

interface Scratch {
  grid: Float64Array;
  sx: Float64Array;
  cxs: Float64Array;
  ti0: Int32Array;
  tt: Float64Array;
  rowv: Float64Array;
  subX: Float64Array;
  subY: Float64Array;
}
const SCRATCH = new Map<number, Scratch>();

/** Per-size work arrays, reused across samples (rendering is synchronous, so sharing is safe). */
function scratchFor(S: number): Scratch {
  let s = SCRATCH.get(S);
  if (!s) {
    s = {
      grid: new Float64Array(3 * 16),
      sx: new Float64Array(S),
      cxs: new Float64Array(S),
      ti0: new Int32Array(S),
      tt: new Float64Array(S),
      rowv: new Float64Array(3 * 4),
      subX: new Float64Array(SUB * SUB),
      subY: new Float64Array(SUB * SUB),
    };
    SCRATCH.set(S, s);
  }
  return s;
}

let NOISE_BITS = new Uint32Array(0);
function noiseBits(n: number): Uint32Array {
  if (NOISE_BITS.length < n) NOISE_BITS = new Uint32Array(n);
  return NOISE_BITS.subarray(0, n);
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/**
 * Renders the scene of one sample into img ([3, S, S], overwritten) and mask ([S, S], overwritten).
 */
export function renderShape(S: number, label: number, rng: Rng, img: Float32Array, mask: Uint8Array): ShapeInfo {
  const n = S * S;
  const geom = geometry()[label];
  const base: [number, number, number] = [rng.uniform(0.1, 0.45), rng.uniform(0.1, 0.45), rng.uniform(0.1, 0.45)];

  // Background: base + bilinear texture + grating.
  const GN = 4;
  const { grid, sx, cxs, ti0, tt, rowv, subX, subY } = scratchFor(S);
  for (let i = 0; i < grid.length; i++) grid[i] = rng.uniform(-0.1, 0.1);
  const gAmp = rng.uniform(0, 0.05);
  const gFreq = (2 * Math.PI * rng.uniform(3, 10)) / S;
  const gAng = rng.uniform(0, 2 * Math.PI);
  const gPhase = rng.uniform(0, 2 * Math.PI);
  const gW = [rng.uniform(0.5, 1), rng.uniform(0.5, 1), rng.uniform(0.5, 1)];
  const kx = gFreq * Math.cos(gAng);
  const ky = gFreq * Math.sin(gAng);
  for (let x = 0; x < S; x++) {
    sx[x] = Math.sin(kx * (x + 0.5));
    cxs[x] = Math.cos(kx * (x + 0.5));
    const u = ((x + 0.5) / S) * (GN - 1);
    const i0 = Math.min(Math.floor(u), GN - 2);
    ti0[x] = i0;
    tt[x] = u - i0;
  }
  for (let y = 0; y < S; y++) {
    const sy = Math.sin(ky * (y + 0.5) + gPhase);
    const cy = Math.cos(ky * (y + 0.5) + gPhase);
    const j0 = ti0[y];
    const ty = tt[y];
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < GN; i++) {
        rowv[c * GN + i] = grid[(c * GN + j0) * GN + i] * (1 - ty) + grid[(c * GN + j0 + 1) * GN + i] * ty;
      }
    }
    for (let c = 0; c < 3; c++) {
      const o = c * n + y * S;
      const bc = base[c];
      const w = gAmp * gW[c];
      const rv = c * GN;
      for (let x = 0; x < S; x++) {
        const t = tt[x];
        const i0 = rv + ti0[x];
        img[o + x] = bc + rowv[i0] * (1 - t) + rowv[i0 + 1] * t + w * (sx[x] * cy + cxs[x] * sy);
      }
    }
  }

  // Soft blobs.
  const nb = rng.intRange(2, 5);
  for (let b = 0; b < nb; b++) {
    const bx = rng.uniform(0, S);
    const by = rng.uniform(0, S);
    const rx = rng.uniform(0.06, 0.2) * S;
    const ry = rng.uniform(0.06, 0.2) * S;
    const col = [base[0] + rng.uniform(-0.15, 0.15), base[1] + rng.uniform(-0.15, 0.15), base[2] + rng.uniform(-0.15, 0.15)];
    const a = rng.uniform(0.3, 0.8);
    const x0 = Math.max(0, Math.floor(bx - rx));
    const x1 = Math.min(S - 1, Math.ceil(bx + rx));
    const y0 = Math.max(0, Math.floor(by - ry));
    const y1 = Math.min(S - 1, Math.ceil(by + ry));
    const irx = 1 / rx;
    const iry = 1 / ry;
    for (let y = y0; y <= y1; y++) {
      const dy = (y + 0.5 - by) * iry;
      for (let x = x0; x <= x1; x++) {
        const dx = (x + 0.5 - bx) * irx;
        const q = dx * dx + dy * dy;
        if (q >= 1) continue;
        const w = a * (1 - q) * (1 - q);
        const p = y * S + x;
        img[p] += w * (col[0] - img[p]);
        img[n + p] += w * (col[1] - img[n + p]);
        img[2 * n + p] += w * (col[2] - img[2 * n + p]);
      }
    }
  }

  // Anti-aliased line segments (box-filter coverage from the distance to the segment).
  const nl = rng.intRange(3, 7);
  for (let l = 0; l < nl; l++) {
    const ax = rng.uniform(-0.1, 1.1) * S;
    const ay = rng.uniform(-0.1, 1.1) * S;
    const ang = rng.uniform(0, 2 * Math.PI);
    const len = rng.uniform(0.15, 1.2) * S;
    const dx = len * Math.cos(ang);
    const dy = len * Math.sin(ang);
    const hw = (rng.uniform(0.25, 0.75) * S) / 32;
    const col = [base[0] + rng.uniform(-0.2, 0.2), base[1] + rng.uniform(-0.2, 0.2), base[2] + rng.uniform(-0.2, 0.2)];
    const a = rng.uniform(0.4, 0.9);
    const reach = hw + 0.5;
    const x0 = Math.max(0, Math.floor(Math.min(ax, ax + dx) - reach));
    const x1 = Math.min(S - 1, Math.ceil(Math.max(ax, ax + dx) + reach));
    const y0 = Math.max(0, Math.floor(Math.min(ay, ay + dy) - reach));
    const y1 = Math.min(S - 1, Math.ceil(Math.max(ay, ay + dy) + reach));
    const il2 = 1 / (len * len);
    const r2 = reach * reach;
    // Per row, only the x range within `reach` of the infinite line: |px·dy − py·dx| / len ≤ reach.
    const steep = Math.abs(dy) > 1e-3 * len;
    const rl = reach * len + Math.abs(dy);
    for (let y = y0; y <= y1; y++) {
      const py = y + 0.5 - ay;
      let xa = x0;
      let xb = x1;
      if (steep) {
        const u = ax - 0.5 + (py * dx) / dy;
        const v = rl / Math.abs(dy);
        xa = Math.max(x0, Math.floor(u - v));
        xb = Math.min(x1, Math.ceil(u + v));
      }
      for (let x = xa; x <= xb; x++) {
        const px = x + 0.5 - ax;
        let t = (px * dx + py * dy) * il2;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        const ex = px - t * dx;
        const ey = py - t * dy;
        const d2 = ex * ex + ey * ey;
        if (d2 >= r2) continue;
        const cov = Math.min(1, reach - Math.sqrt(d2));
        const w = a * cov;
        const p = y * S + x;
        img[p] += w * (col[0] - img[p]);
        img[n + p] += w * (col[1] - img[n + p]);
        img[2 * n + p] += w * (col[2] - img[2 * n + p]);
      }
    }
  }

  // The object.
  const s = Math.sqrt((rng.uniform(AREA_MIN, AREA_MAX) * n) / geom.area);
  const rpx = geom.radius * s;
  const span = Math.max(0, S - 2 * rpx - 1);
  const cx = S / 2 - span / 2 + rng.next() * span;
  const cy = S / 2 - span / 2 + rng.next() * span;
  const angle = rng.uniform(0, 2 * Math.PI);
  let colour: [number, number, number] = [0, 0, 0];
  for (let tries = 0; ; tries++) {
    colour = [rng.uniform(0.55, 1), rng.uniform(0.55, 1), rng.uniform(0.55, 1)];
    const d = Math.hypot(colour[0] - base[0], colour[1] - base[1], colour[2] - base[2]);
    // The fallback (never reached in practice: P(reject) < 0.5 per try) keeps the colour symmetric.
    if (d >= MIN_CONTRAST || tries >= 64) break;
  }
  const shade = rng.uniform(-0.1, 0.1);
  const shAng = rng.uniform(0, 2 * Math.PI);
  const shx = shade * Math.cos(shAng);
  const shy = shade * Math.sin(shAng);
  const cs = Math.cos(angle);
  const sn = Math.sin(angle);
  const inv = 1 / s;
  const edge = Math.SQRT1_2 * inv * 1.0001;
  // Local-unit offsets of the SUB×SUB sub-samples from the pixel centre.
  for (let j = 0; j < SUB; j++) {
    for (let i = 0; i < SUB; i++) {
      const ox = (i + 0.5) / SUB - 0.5;
      const oy = (j + 0.5) / SUB - 0.5;
      subX[j * SUB + i] = (cs * ox + sn * oy) * inv;
      subY[j * SUB + i] = (-sn * ox + cs * oy) * inv;
    }
  }
  mask.fill(0);
  let areaPx = 0;
  const x0 = Math.max(0, Math.floor(cx - rpx - 1));
  const x1 = Math.min(S - 1, Math.ceil(cx + rpx + 1));
  const y0 = Math.max(0, Math.floor(cy - rpx - 1));
  const y1 = Math.min(S - 1, Math.ceil(cy + rpx + 1));
  for (let y = y0; y <= y1; y++) {
    const Y = y + 0.5 - cy;
    for (let x = x0; x <= x1; x++) {
      const X = x + 0.5 - cx;
      const lx = (cs * X + sn * Y) * inv;
      const ly = (-sn * X + cs * Y) * inv;
      const d = sdf(label, lx, ly);
      if (d >= edge) continue;
      let cov = 1;
      if (d > -edge) {
        let k = 0;
        for (let q = 0; q < SUB * SUB; q++) if (sdf(label, lx + subX[q], ly + subY[q]) < 0) k++;
        if (k === 0) continue;
        cov = k / (SUB * SUB);
      }
      const p = y * S + x;
      if (cov >= 0.5) mask[p] = 1;
      areaPx += cov;
      const sh = shx * lx + shy * ly;
      img[p] += cov * (colour[0] + sh - img[p]);
      img[n + p] += cov * (colour[1] + sh - img[n + p]);
      img[2 * n + p] += cov * (colour[2] + sh - img[2 * n + p]);
    }
  }

  // Per-pixel noise: one 32-bit draw gives three 10-bit uniforms.
  const k10 = (2 * NOISE) / 1023;
  const bits = rng.fillU32(noiseBits(n));
  for (let p = 0; p < n; p++) {
    const u = bits[p];
    img[p] = clamp01(img[p] + (u & 1023) * k10 - NOISE);
    img[n + p] = clamp01(img[n + p] + ((u >>> 10) & 1023) * k10 - NOISE);
    img[2 * n + p] = clamp01(img[2 * n + p] + ((u >>> 20) & 1023) * k10 - NOISE);
  }
  return { label, shape: SHAPE_NAMES[label], cx, cy, scale: s, angle, colour, background: base, areaPx };
}

export interface ShapesOptions {
  split?: 'train' | 'test';
  /** Image height = width in pixels (default 32; at least 16). */
  size?: number;
  seed?: number;
  /** Number of samples (default 50,000 for train, 10,000 for test). */
  length?: number;
  /** 2..10 (default 10): the first numClasses of SHAPE_NAMES. */
  numClasses?: number;
  /** Default 'half'. */
  normalize?: NormalizeSpec;
  /** Training augmentation (random crop with padding, horizontal flip); default off. */
  augment?: AugmentOptions | false;
  /** Return per-pixel object masks with each batch (default true). */
  masks?: boolean;
}

export class ShapesDataset implements Dataset {
  readonly name: string;
  readonly length: number;
  readonly numClasses: number;
  readonly classNames: string[];
  readonly imageShape: [number, number, number];
  readonly size: number;
  readonly seed: number;
  readonly split: 'train' | 'test';
  private readonly stream: number;
  private readonly withMasks: boolean;
  private readonly pipeline: Pipeline;
  private readonly scratch: Float32Array;
  private readonly scratchMask: Uint8Array;

  constructor(opts: ShapesOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw new ArgumentError('shapes: options must be an object');
    const split = opts.split ?? 'train';
    if (split !== 'train' && split !== 'test') throw new ArgumentError(`shapes: split must be 'train' or 'test', got ${String(split)}`);
    const size = opts.size ?? 32;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 16 || size > 4096) {
      throw new ArgumentError(`shapes: size must be an integer in [16, 4096], got ${String(size)}`);
    }
    const C = opts.numClasses ?? 10;
    if (typeof C !== 'number' || !Number.isInteger(C) || C < 2 || C > SHAPE_NAMES.length) {
      throw new ArgumentError(`shapes: numClasses must be an integer in [2, ${SHAPE_NAMES.length}], got ${String(C)}`);
    }
    const length = opts.length ?? (split === 'train' ? 50_000 : 10_000);
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 1) {
      throw new ArgumentError(`shapes: length must be a positive integer, got ${String(length)}`);
    }
    this.seed = checkKey(opts.seed ?? 0, 'shapes: seed');
    this.split = split;
    this.size = size;
    this.length = length;
    this.numClasses = C;
    this.classNames = SHAPE_NAMES.slice(0, C) as string[];
    this.stream = split === 'train' ? STREAM.shapesTrain : STREAM.shapesTest;
    this.withMasks = opts.masks ?? true;
    this.pipeline = new Pipeline([3, size, size], { normalize: opts.normalize, augment: opts.augment });
    this.imageShape = this.pipeline.outShape;
    this.name = `shapes-${split}`;
    this.scratch = new Float32Array(3 * size * size);
    this.scratchMask = new Uint8Array(size * size);
  }

  private rngFor(i: number): Rng {
    return new Rng(this.seed, this.stream, i);
  }

  /** Sample i before the pipeline: image [3, S, S] in [0, 1], mask [S, S], and what was drawn. */
  sample(i: number): { image: Float32Array; mask: Uint8Array; label: number; info: ShapeInfo } {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new IndexError(`${this.name}.sample: index ${i} is out of range [0, ${this.length})`);
    const image = new Float32Array(3 * this.size * this.size);
    const mask = new Uint8Array(this.size * this.size);
    const info = renderShape(this.size, i % this.numClasses, this.rngFor(i), image, mask);
    return { image, mask, label: info.label, info };
  }

  getBatch(indices: number[], opts?: GetBatchOptions): Batch {
    checkIndices(indices, this.length, this.name);
    const epoch = epochOf(opts);
    const B = indices.length;
    const [OC, S] = this.imageShape;
    const stride = OC * S * S;
    const images = new Float32Array(B * stride);
    const labels = new Int32Array(B);
    const masks = this.withMasks ? new Uint8Array(B * S * S) : null;
    for (let b = 0; b < B; b++) {
      const i = indices[b];
      labels[b] = i % this.numClasses;
      renderShape(this.size, labels[b], this.rngFor(i), this.scratch, this.scratchMask);
      this.pipeline.apply(this.scratch, this.scratchMask, epoch, i, images, b * stride, masks, b * S * S);
    }
    const out: Batch = { images, labels, indices: indices.slice() };
    if (masks) out.masks = masks;
    return out;
  }
}

/** The procedural shapes dataset (see the file header). */
export function shapes(opts: ShapesOptions = {}): ShapesDataset {
  return new ShapesDataset(opts);
}
