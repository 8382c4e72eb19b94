/**
 * Image transforms on planar float32 images [C, H, W] (values in [0, 1] before normalisation), and the
 * per-sample pipeline that datasets apply in getBatch.
 *
 * - resizeBilinear: PyTorch's F.interpolate(x, size=(outH, outW), mode='bilinear',
 *   align_corners=False, antialias=False) (torchvision's Resize with antialias=False). Source
 *   coordinate of output pixel d: s = (d + 0.5) · in/out − 0.5, clamped below at 0; neighbours
 *   floor(s) and min(floor(s) + 1, in − 1), weights from the fractional part. Weights are computed in
 *   float64 (PyTorch computes them in float32 for float32 input, so results agree to ~1e-7 relative,
 *   not bit for bit). Downscaling does no antialiasing, exactly like antialias=False.
 * - pad, repeatChannels (1 → 3), normalize (per-channel mean/std), hflip, randomCrop (torchvision
 *   RandomCrop(size, padding, fill) semantics: pad each side, then crop at a uniform offset).
 * - Pipeline: resize-or-pad → random crop → random horizontal flip → channel repeat → normalise; masks
 *   follow every geometric step (bilinear + threshold 0.5 for resize, zero fill for pad and crop) so
 *   they stay aligned with the image. Augmentation randomness comes from Rng(seed, STREAM.augment,
 *   epoch, index): a training run with the same seeds is reproducible whatever the batch order.
 */
import { optsOf, show } from '../args.js';
import { ArgumentError, ShapeError } from '../errors.js';
import { checkKey, Rng, STREAM } from './rng.js';

export type Shape3 = [number, number, number];

/** timm's IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD (DeiT and most timm models). */
export const IMAGENET_DEFAULT_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_DEFAULT_STD = [0.229, 0.224, 0.225] as const;
/** timm's IMAGENET_INCEPTION_MEAN / STD, (0.5, 0.5) per channel (the original ViT checkpoints). */
export const IMAGENET_INCEPTION_MEAN = [0.5, 0.5, 0.5] as const;
export const IMAGENET_INCEPTION_STD = [0.5, 0.5, 0.5] as const;
/** The simple (0.5, 0.5) normalisation for any channel count: maps [0, 1] to [-1, 1]. */
export const HALF_MEAN = 0.5;
export const HALF_STD = 0.5;

/** 'imagenet' (timm default, 3 channels), 'half' ((x − 0.5)/0.5), 'none', or explicit per-channel values. */
export type NormalizeSpec = 'imagenet' | 'half' | 'none' | { mean: readonly number[]; std: readonly number[] };

function checkShape(src: ArrayLike<number>, shape: Shape3, op: string): void {
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new ShapeError(`${op}: shape must be [C, H, W] of positive integers, got ${show(shape)}`);
  }
  if (!Array.isArray(src) && !(ArrayBuffer.isView(src) && !(src instanceof DataView))) {
    throw new ArgumentError(`${op}: data must be an array or a typed array, got ${show(src)}`);
  }
  const n = shape[0] * shape[1] * shape[2];
  if (src.length !== n) throw new ShapeError(`${op}: data has ${src.length} elements, shape [${shape}] needs ${n}`);
}

function posInt(v: unknown, what: string, op: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ArgumentError(`${op}: ${what} must be an integer ≥ ${min}, got ${show(v)}`);
  }
  return v;
}

/** A zeroed output of n floats; past what one JavaScript array holds, a typed error (not a RangeError). */
function outArray(n: number, op: string): Float32Array {
  if (!(n <= 2 ** 31 - 1)) throw new ArgumentError(`${op}: the output would hold ${n} elements, more than an image array can (2^31 - 1)`);
  return new Float32Array(n);
}

/** Per-axis source indices and weights of PyTorch's bilinear align_corners=False mapping. */
function axisWeights(inN: number, outN: number): { i0: Int32Array; i1: Int32Array; w1: Float64Array } {
  const scale = inN / outN;
  const i0 = new Int32Array(outN);
  const i1 = new Int32Array(outN);
  const w1 = new Float64Array(outN);
  for (let d = 0; d < outN; d++) {
    let s = (d + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    const f = Math.floor(s);
    const lo = Math.min(f, inN - 1);
    i0[d] = lo;
    i1[d] = Math.min(lo + 1, inN - 1);
    w1[d] = s - lo;
  }
  return { i0, i1, w1 };
}

/** Bilinear resize of [C, H, W] to [C, outH, outW] (PyTorch align_corners=False, antialias=False). */
export function resizeBilinear(src: ArrayLike<number>, shape: Shape3, outH: number, outW: number): Float32Array {
  checkShape(src, shape, 'resizeBilinear');
  posInt(outH, 'outH', 'resizeBilinear');
  posInt(outW, 'outW', 'resizeBilinear');
  const [C, H, W] = shape;
  const out = outArray(C * outH * outW, 'resizeBilinear');
  const ry = axisWeights(H, outH);
  const rx = axisWeights(W, outW);
  for (let c = 0; c < C; c++) {
    const base = c * H * W;
    for (let y = 0; y < outH; y++) {
      const r0 = base + ry.i0[y] * W;
      const r1 = base + ry.i1[y] * W;
      const wy = ry.w1[y];
      const o = (c * outH + y) * outW;
      for (let x = 0; x < outW; x++) {
        const x0 = rx.i0[x];
        const x1 = rx.i1[x];
        const wx = rx.w1[x];
        const top = src[r0 + x0] * (1 - wx) + src[r0 + x1] * wx;
        const bot = src[r1 + x0] * (1 - wx) + src[r1 + x1] * wx;
        out[o + x] = top * (1 - wy) + bot * wy;
      }
    }
  }
  return out;
}

export interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

function toPadding(p: number | Padding, op: string): Padding {
  const q = typeof p === 'number' ? { top: p, bottom: p, left: p, right: p } : p;
  if (!q || typeof q !== 'object') throw new ArgumentError(`${op}: padding must be a number or {top, bottom, left, right}`);
  for (const k of ['top', 'bottom', 'left', 'right'] as const) posInt(q[k], `padding.${k}`, op, 0);
  return q;
}

/** Constant padding of [C, H, W]: returns [C, H + top + bottom, W + left + right]. */
export function pad(src: ArrayLike<number>, shape: Shape3, padding: number | Padding, value = 0): Float32Array {
  checkShape(src, shape, 'pad');
  const p = toPadding(padding, 'pad');
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ArgumentError(`pad: value must be finite, got ${value}`);
  const [C, H, W] = shape;
  const oh = H + p.top + p.bottom;
  const ow = W + p.left + p.right;
  const out = outArray(C * oh * ow, 'pad');
  if (value !== 0) out.fill(value);
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < H; y++) {
      const s = (c * H + y) * W;
      const d = (c * oh + y + p.top) * ow + p.left;
      for (let x = 0; x < W; x++) out[d + x] = src[s + x];
    }
  }
  return out;
}

/** Repeats a 1-channel image [1, H, W] to [channels, H, W] (grayscale → RGB). */
export function repeatChannels(src: ArrayLike<number>, shape: Shape3, channels = 3): Float32Array {
  checkShape(src, shape, 'repeatChannels');
  if (shape[0] !== 1) throw new ShapeError(`repeatChannels: input must have 1 channel, got ${shape[0]}`);
  posInt(channels, 'channels', 'repeatChannels');
  const n = shape[1] * shape[2];
  const out = outArray(channels * n, 'repeatChannels');
  for (let c = 0; c < channels; c++) for (let i = 0; i < n; i++) out[c * n + i] = src[i];
  return out;
}

/** Resolves a NormalizeSpec to per-channel mean and std arrays for C channels (null for 'none'). */
export function resolveNormalize(spec: NormalizeSpec, C: number): { mean: number[]; std: number[] } | null {
  if (spec === 'none') return null;
  if (spec === 'half') return { mean: Array(C).fill(HALF_MEAN), std: Array(C).fill(HALF_STD) };
  if (spec === 'imagenet') {
    if (C !== 3) throw new ArgumentError(`normalize: 'imagenet' needs 3 channels, the images have ${C} (use channels: 3 or 'half')`);
    return { mean: [...IMAGENET_DEFAULT_MEAN], std: [...IMAGENET_DEFAULT_STD] };
  }
  if (!spec || typeof spec !== 'object' || !Array.isArray(spec.mean) || !Array.isArray(spec.std)) {
    throw new ArgumentError(`normalize must be 'imagenet', 'half', 'none' or { mean: number[], std: number[] }, got ${show(spec)}`);
  }
  const expand = (v: readonly number[], what: string): number[] => {
    if (v.length !== C && v.length !== 1) throw new ArgumentError(`normalize: ${what} has ${v.length} values, need 1 or ${C}`);
    for (const x of v) if (typeof x !== 'number' || !Number.isFinite(x)) throw new ArgumentError(`normalize: ${what} values must be finite numbers`);
    return v.length === 1 ? Array(C).fill(v[0]) : [...v];
  };
  const mean = expand(spec.mean, 'mean');
  const std = expand(spec.std, 'std');
  if (std.some((s) => !(s > 0))) throw new ArgumentError(`normalize: std values must be > 0, got [${std}]`);
  return { mean, std };
}

/** (x − mean[c]) / std[c] per channel; writes into `out` (may be `src`) or a new array. */
export function normalize(
  src: ArrayLike<number>,
  shape: Shape3,
  mean: readonly number[],
  std: readonly number[],
  out?: Float32Array,
): Float32Array {
  checkShape(src, shape, 'normalize');
  const [C, H, W] = shape;
  const r = resolveNormalize({ mean, std }, C)!;
  const n = H * W;
  const dst = out ?? new Float32Array(C * n);
  if (dst.length !== C * n) throw new ShapeError(`normalize: out has ${dst.length} elements, need ${C * n}`);
  for (let c = 0; c < C; c++) {
    const m = r.mean[c];
    const inv = 1 / r.std[c];
    for (let i = c * n, e = (c + 1) * n; i < e; i++) dst[i] = (src[i] - m) * inv;
  }
  return dst;
}

/** Mirrors [C, H, W] left-right. */
export function hflip(src: ArrayLike<number>, shape: Shape3): Float32Array {
  checkShape(src, shape, 'hflip');
  const [C, H, W] = shape;
  const out = new Float32Array(C * H * W);
  for (let r = 0; r < C * H; r++) for (let x = 0; x < W; x++) out[r * W + x] = src[r * W + W - 1 - x];
  return out;
}

/**
 * torchvision RandomCrop(size, padding, fill): pads `padding` on every side with `fill`, then crops
 * size×size at offsets drawn uniformly from [0, H + 2·padding − size] (and likewise for x).
 * Returns the crop and its top-left corner in the padded image.
 */
export function randomCrop(
  src: ArrayLike<number>,
  shape: Shape3,
  opts: { size?: number; padding?: number; fill?: number },
  rng: Rng,
): { image: Float32Array; top: number; left: number } {
  checkShape(src, shape, 'randomCrop');
  const [C, H, W] = shape;
  const padding = posInt(opts.padding ?? 0, 'padding', 'randomCrop', 0);
  const size = posInt(opts.size ?? H, 'size', 'randomCrop');
  if (H !== W) throw new ShapeError(`randomCrop: needs a square image, got [${shape}]`);
  if (size > H + 2 * padding) throw new ArgumentError(`randomCrop: crop ${size} is larger than the padded image ${H + 2 * padding}`);
  const top = rng.int(H + 2 * padding - size + 1);
  const left = rng.int(W + 2 * padding - size + 1);
  const image = new Float32Array(C * size * size);
  cropInto(src, C, H, W, top - padding, left - padding, size, size, false, opts.fill ?? 0, image);
  return { image, top, left };
}

/**
 * Copies the window whose top-left is (oy, ox) in source coordinates (may lie outside: `fill`) into
 * dst [C, oh, ow], mirrored left-right when `flip`. Shared by randomCrop and the pipeline.
 */
function cropInto(
  src: ArrayLike<number>,
  C: number,
  H: number,
  W: number,
  oy: number,
  ox: number,
  oh: number,
  ow: number,
  flip: boolean,
  fill: number,
  dst: Float32Array | Uint8Array,
  dstOff = 0,
): void {
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < oh; y++) {
      const sy = y + oy;
      const d = dstOff + (c * oh + y) * ow;
      if (sy < 0 || sy >= H) {
        for (let x = 0; x < ow; x++) dst[d + x] = fill;
        continue;
      }
      const s = (c * H + sy) * W;
      for (let x = 0; x < ow; x++) {
        const sx = (flip ? ow - 1 - x : x) + ox;
        dst[d + x] = sx < 0 || sx >= W ? fill : src[s + sx];
      }
    }
  }
}

export interface AugmentOptions {
  /** Random horizontal flip with probability 0.5 (default true). */
  hflip?: boolean;
  /** Random-crop padding in pixels (torchvision RandomCrop(size, padding)); 0 = no crop (default). */
  cropPadding?: number;
  /** Augmentation seed (default 0); the stream is keyed by (seed, epoch, index). */
  seed?: number;
}

export interface PipelineOptions {
  /** Output height = width; default the input size. */
  size?: number;
  /** How the input reaches `size`: bilinear 'resize' (default) or centred zero 'pad' (size ≥ input). */
  fit?: 'resize' | 'pad';
  /** Output channels: the input's, or 3 from a 1-channel input (repeat). */
  channels?: number;
  /** Default 'half'. */
  normalize?: NormalizeSpec;
  /** Training augmentation; off when absent or false. */
  augment?: AugmentOptions | false;
}

/** The per-sample transform chain of a dataset; see the file header for the order. */
export class Pipeline {
  readonly inShape: Shape3;
  readonly outShape: Shape3;
  private readonly fit: 'resize' | 'pad';
  private readonly norm: { mean: number[]; std: number[] } | null;
  private readonly aug: { hflip: boolean; padding: number; seed: number } | null;

  constructor(inShape: Shape3, options?: PipelineOptions | null) {
    const op = 'dataset transforms';
    const opts = optsOf(options, op);
    if (!Array.isArray(inShape) || inShape.length !== 3) throw new ShapeError(`${op}: inShape must be [C, H, W], got ${show(inShape)}`);
    const [C, H, W] = inShape;
    if (H !== W) throw new ShapeError(`${op}: square inputs only, got [${inShape}]`);
    this.inShape = inShape;
    const size = posInt(opts.size ?? H, 'size', op);
    const fit = opts.fit ?? 'resize';
    if (fit !== 'resize' && fit !== 'pad') throw new ArgumentError(`${op}: fit must be 'resize' or 'pad', got ${String(fit)}`);
    if (fit === 'pad' && size < H) throw new ArgumentError(`${op}: fit 'pad' needs size ≥ ${H}, got ${size}`);
    this.fit = fit;
    const channels = opts.channels ?? C;
    if (channels !== C && !(C === 1 && channels === 3)) {
      throw new ArgumentError(`${op}: channels must be ${C}${C === 1 ? ' or 3' : ''}, got ${String(channels)}`);
    }
    this.outShape = [channels, size, size];
    this.norm = resolveNormalize(opts.normalize ?? 'half', channels);
    const a = opts.augment;
    if (a === undefined || a === false) this.aug = null;
    else {
      if (typeof a !== 'object' || a === null) throw new ArgumentError(`${op}: augment must be an object or false`);
      const padding = posInt(a.cropPadding ?? 0, 'augment.cropPadding', op, 0);
      this.aug = { hflip: a.hflip ?? true, padding, seed: checkKey(a.seed ?? 0, 'augment.seed') };
    }
  }

  /**
   * Transforms one sample (src [C, H, W] in [0, 1], optional mask [H, W] of 0/1) into dst at dstOff
   * (outShape) and dstMask at maskOff ([size, size]).
   */
  apply(
    src: Float32Array,
    mask: Uint8Array | null,
    epoch: number,
    index: number,
    dst: Float32Array,
    dstOff: number,
    dstMask: Uint8Array | null,
    maskOff: number,
  ): void {
    const [C, H] = this.inShape;
    const [OC, S] = this.outShape;
    const op = 'Pipeline.apply';
    if (!(src instanceof Float32Array) || src.length !== C * H * H) throw new ArgumentError(`${op}: src must be a Float32Array of ${C}×${H}×${H} values, got ${show(src)}`);
    if (!(dst instanceof Float32Array)) throw new ArgumentError(`${op}: dst must be a Float32Array, got ${show(dst)}`);
    if (!Number.isInteger(dstOff) || dstOff < 0 || dstOff + OC * S * S > dst.length) throw new ArgumentError(`${op}: dstOff ${show(dstOff)} leaves no room for ${OC * S * S} values in dst (${dst.length})`);
    if (mask !== null && mask !== undefined && (!(mask instanceof Uint8Array) || mask.length !== H * H)) throw new ArgumentError(`${op}: mask must be null or a Uint8Array of ${H}×${H}, got ${show(mask)}`);
    if (dstMask !== null && dstMask !== undefined && (!(dstMask instanceof Uint8Array) || !Number.isInteger(maskOff) || maskOff < 0 || maskOff + S * S > dstMask.length)) {
      throw new ArgumentError(`${op}: dstMask must be null or a Uint8Array with room for ${S}×${S} values at maskOff ${show(maskOff)}`);
    }
    let img: Float32Array = src;
    // Masks go through float only when a geometric step needs it.
    let m: Float32Array | null = mask && dstMask && (S !== H || this.aug) ? Float32Array.from(mask) : null;
    let cur = H;
    if (S !== H) {
      if (this.fit === 'resize') {
        img = resizeBilinear(img, [C, cur, cur], S, S);
        if (m) m = resizeBilinear(m, [1, cur, cur], S, S).map((v) => (v >= 0.5 ? 1 : 0));
      } else {
        const t = (S - H) >> 1;
        const p = { top: t, bottom: S - H - t, left: t, right: S - H - t };
        img = pad(img, [C, cur, cur], p);
        if (m) m = pad(m, [1, cur, cur], p);
      }
      cur = S;
    }
    let oy = 0;
    let ox = 0;
    let flip = false;
    if (this.aug) {
      const rng = new Rng(this.aug.seed, STREAM.augment, epoch, index);
      const P = this.aug.padding;
      if (P > 0) {
        oy = rng.int(2 * P + 1) - P;
        ox = rng.int(2 * P + 1) - P;
      }
      if (this.aug.hflip) flip = rng.next() < 0.5;
    }
    const n = S * S;
    if (oy !== 0 || ox !== 0 || flip) {
      const t = new Float32Array(C * n);
      cropInto(img, C, S, S, oy, ox, S, S, flip, 0, t);
      img = t;
      if (m) {
        const tm = new Float32Array(n);
        cropInto(m, 1, S, S, oy, ox, S, S, flip, 0, tm);
        m = tm;
      }
    }
    for (let c = 0; c < OC; c++) {
      const sc = C === OC ? c : 0;
      const mean = this.norm ? this.norm.mean[c] : 0;
      const inv = this.norm ? 1 / this.norm.std[c] : 1;
      const so = sc * n;
      const d = dstOff + c * n;
      for (let i = 0; i < n; i++) dst[d + i] = (img[so + i] - mean) * inv;
    }
    if (dstMask) {
      if (m) for (let i = 0; i < n; i++) dstMask[maskOff + i] = m[i];
      else if (mask) dstMask.set(mask, maskOff);
    }
  }
}
