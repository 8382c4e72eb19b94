/**
 * The common dataset interface, batching, subsets and patch masks.
 *
 * A Dataset is random-access: getBatch(indices, { epoch }) returns images already transformed
 * ([B, C, H, W] float32, planar), int32 labels, and (when the dataset has them) per-pixel object
 * masks [B, H, W]. The epoch feeds the augmentation stream, so with fixed seeds a training run is
 * reproducible: batches() shuffles with Rng(seed, STREAM.shuffle, epoch) and passes the epoch on.
 */
import { show } from '../args.js';
import { ArgumentError, IndexError, ShapeError } from '../errors.js';
import { checkKey, Rng, shuffleInPlace, STREAM } from './rng.js';

export interface Batch {
  /** [B, C, H, W] float32, after the dataset's transforms. */
  images: Float32Array;
  labels: Int32Array;
  /** [B, H, W], 1 where the pixel belongs to the object (datasets that know it). */
  masks?: Uint8Array;
  /** The dataset indices of the batch's samples, in order. */
  indices: number[];
}

export interface GetBatchOptions {
  /** Training epoch: keys the augmentation stream (default 0). */
  epoch?: number;
}

export interface Dataset {
  readonly name: string;
  readonly length: number;
  readonly numClasses: number;
  readonly classNames: string[];
  /** [C, H, W] after transforms. */
  readonly imageShape: [number, number, number];
  getBatch(indices: number[], opts?: GetBatchOptions): Batch;
}

/**
 * `ds` as a Dataset, or an ArgumentError naming `what` (e.g. 'fit: train') and the shape a dataset
 * has. Checks the fields every consumer reads, not the data.
 */
export function checkDataset(ds: unknown, what: string): Dataset {
  const d = ds as Dataset | null;
  const ok = !!d && typeof d === 'object' && typeof d.getBatch === 'function' && Number.isSafeInteger(d.length) && d.length >= 0
    && Array.isArray(d.imageShape) && d.imageShape.length === 3 && d.imageShape.every((v) => Number.isInteger(v) && v > 0)
    && Number.isInteger(d.numClasses) && d.numClasses >= 1;
  if (!ok) {
    throw new ArgumentError(`${what} must be a Dataset ({ length, imageShape: [C, H, W], numClasses, getBatch(indices) }, as data.shapes, data.fashionMnist and data.subset make), got ${show(ds)}`);
  }
  return d;
}

/** Validates a getBatch index list against a dataset length (typed errors naming the dataset). */
export function checkIndices(indices: unknown, length: number, name: string): number[] {
  if (!Array.isArray(indices)) throw new ArgumentError(`${name}.getBatch: indices must be an array of integers`);
  if (indices.length === 0) throw new ArgumentError(`${name}.getBatch: needs at least one index`);
  for (const i of indices) {
    if (typeof i !== 'number' || !Number.isInteger(i)) throw new ArgumentError(`${name}.getBatch: index ${String(i)} is not an integer`);
    if (i < 0 || i >= length) throw new IndexError(`${name}.getBatch: index ${i} is out of range [0, ${length})`);
  }
  return indices as number[];
}

export function epochOf(opts: GetBatchOptions | undefined): number {
  return opts?.epoch === undefined ? 0 : checkKey(opts.epoch, 'epoch');
}

export interface BatchesOptions {
  batchSize: number;
  /** Visit the indices in a random order, a new one per epoch (default false). */
  shuffle?: boolean;
  /** Shuffle seed (default 0). */
  seed?: number;
  /** Epoch number: picks the permutation and keys the augmentation (default 0). */
  epoch?: number;
  /** Drop a last batch smaller than batchSize (default false). */
  dropLast?: boolean;
  /** Stop after this many batches. */
  limit?: number;
}

/**
 * One epoch of batches. Every index of the dataset appears exactly once (less the dropped tail with
 * dropLast, less everything after `limit` batches).
 */
export function batches(ds: Dataset, opts: BatchesOptions): Generator<Batch> {
  checkDataset(ds, 'batches: ds');
  if (!opts || typeof opts !== 'object') throw new ArgumentError('batches: options { batchSize } are required');
  const { batchSize } = opts;
  if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1) {
    throw new ArgumentError(`batches: batchSize must be an integer ≥ 1, got ${String(batchSize)}`);
  }
  const limit = opts.limit ?? Infinity;
  if (limit !== Infinity && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0)) {
    throw new ArgumentError(`batches: limit must be an integer ≥ 0, got ${String(limit)}`);
  }
  const seed = checkKey(opts.seed ?? 0, 'batches: seed');
  const epoch = checkKey(opts.epoch ?? 0, 'batches: epoch');
  // the checks above run at the call, not at the first next()
  return batchesOf(ds, batchSize, limit, seed, epoch, !!opts.shuffle, !!opts.dropLast);
}

function* batchesOf(ds: Dataset, batchSize: number, limit: number, seed: number, epoch: number, shuffle: boolean, dropLast: boolean): Generator<Batch> {
  const order = Array.from({ length: ds.length }, (_, i) => i);
  if (shuffle) shuffleInPlace(order, new Rng(seed, STREAM.shuffle, epoch));
  let emitted = 0;
  for (let s = 0; s < order.length && emitted < limit; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    if (idx.length < batchSize && dropLast) break;
    emitted++;
    yield ds.getBatch(idx, { epoch });
  }
}

/** The first n samples of ds, or the samples at the given indices, as a dataset. */
export function subset(ds: Dataset, n: number | number[]): Dataset {
  checkDataset(ds, 'subset: ds');
  let map: number[] | null;
  let length: number;
  if (typeof n === 'number') {
    if (!Number.isInteger(n) || n < 0) throw new ArgumentError(`subset: n must be an integer ≥ 0, got ${n}`);
    if (n > ds.length) throw new IndexError(`subset: n = ${n} exceeds the dataset length ${ds.length}`);
    map = null;
    length = n;
  } else if (Array.isArray(n)) {
    map = checkIndices(n, ds.length, `subset of ${ds.name}`).slice();
    length = map.length;
  } else {
    throw new ArgumentError('subset: n must be a count or an array of indices');
  }
  const name = map ? `${ds.name}[${length} selected]` : `${ds.name}[:${length}]`;
  return {
    name,
    length,
    numClasses: ds.numClasses,
    classNames: ds.classNames,
    imageShape: ds.imageShape,
    getBatch(indices: number[], opts?: GetBatchOptions): Batch {
      checkIndices(indices, length, name);
      const inner = map ? indices.map((i) => map![i]) : indices;
      const b = ds.getBatch(inner, opts);
      return { ...b, indices: indices.slice() };
    },
  };
}

/**
 * Per-patch object fractions from per-pixel masks: masks [B, H, W] (or [H, W]) of 0/1 → Float32Array
 * [B, (H/p)·(W/p)] with the fraction of object pixels in each p×p patch, patches in row-major order
 * (the order of a ViT's patch tokens).
 */
export function patchFractions(masks: Uint8Array, shape: [number, number] | [number, number, number], patch: number): Float32Array {
  if (!(masks instanceof Uint8Array)) throw new ArgumentError('patchFractions: masks must be a Uint8Array');
  if (!Array.isArray(shape) || (shape.length !== 2 && shape.length !== 3) || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new ShapeError(`patchFractions: shape must be [H, W] or [B, H, W], got ${show(shape)}`);
  }
  const [B, H, W] = shape.length === 2 ? [1, shape[0], shape[1]] : shape;
  if (masks.length !== B * H * W) throw new ShapeError(`patchFractions: masks has ${masks.length} elements, shape [${shape}] needs ${B * H * W}`);
  if (!Number.isInteger(patch) || patch < 1) throw new ArgumentError(`patchFractions: patch must be an integer ≥ 1, got ${patch}`);
  if (H % patch || W % patch) throw new ShapeError(`patchFractions: patch ${patch} does not divide the image size ${H}×${W}`);
  const gh = H / patch;
  const gw = W / patch;
  const out = new Float32Array(B * gh * gw);
  const inv = 1 / (patch * patch);
  for (let b = 0; b < B; b++) {
    for (let y = 0; y < H; y++) {
      const row = (b * H + y) * W;
      const prow = (b * gh + Math.floor(y / patch)) * gw;
      for (let x = 0; x < W; x++) if (masks[row + x]) out[prow + Math.floor(x / patch)] += inv;
    }
  }
  return out;
}
