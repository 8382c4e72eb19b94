/**
 * Fashion-MNIST from IDX files (Zalando's format, the same as MNIST's), gzipped or not, from a
 * directory: by default /usr/share/datasets/fashion-mnist, where Debian's `dataset-fashion-mnist`
 * package installs train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz
 * and t10k-labels-idx1-ubyte.gz. Splits: 'train' (60,000) and 'test' (10,000), 28×28 grayscale.
 *
 * Counts are taken from the files (60,000 and 10,000 for the real data; a consistent smaller set
 * in the same format also loads).
 *
 * IDX layout: 2 zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each
 * dimension as a big-endian uint32, then the data row-major. Everything is validated (magic, type,
 * rank, dimensions, data length vs header, image/label count agreement, label range) and a failure
 * is an IOError that names the file. Decoded files are cached per (path, size, mtime), so several
 * datasets over the same split share one copy of the bytes (47 MB for train).
 *
 * Pixels become x / 255 in [0, 1], then the pipeline of lib/data/transforms.ts (resize or pad to
 * `size`, optional augmentation, 1 → 3 channel repeat, normalisation — default 'half').
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { int, show } from '../args.js';
import { ArgumentError, IOError } from '../errors.js';
import { checkIndices, epochOf, type Batch, type Dataset, type GetBatchOptions } from './dataset.js';
import { Pipeline, type AugmentOptions, type NormalizeSpec } from './transforms.js';

export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

const INSTALL_HINT =
  "install Debian's dataset-fashion-mnist package (sudo apt-get install dataset-fashion-mnist), " +
  'or pass { dir } pointing at a folder with the four IDX files (train-images-idx3-ubyte[.gz], ' +
  'train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Decodes an IDX file of unsigned bytes (gzipped or not) with the expected rank; errors name `file`. */
export function parseIdx(bytes: Uint8Array, file: string, rank: number): IdxArray {
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError(`parseIdx: bytes must be a Uint8Array (or Buffer), got ${show(bytes)}`);
  if (typeof file !== 'string') throw new ArgumentError(`parseIdx: file must be a string (the name used in messages), got ${show(file)}`);
  int(rank, 'rank', 'parseIdx', 1, 9);
  let buf = bytes;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw new IOError(`${file}: corrupt gzip data (${(e as Error).message})`);
    }
  }
  if (buf.length < 4) throw new IOError(`${file}: too short for an IDX header (${buf.length} bytes)`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    const magic = ((buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3]) >>> 0;
    throw new IOError(`${file}: not an IDX file (magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x0000080${rank})`);
  }
  if (buf[2] !== 0x08) throw new IOError(`${file}: IDX element type 0x${buf[2].toString(16)} is not unsigned byte (0x08)`);
  if (buf[3] !== rank) throw new IOError(`${file}: IDX rank ${buf[3]}, expected ${rank} (magic 0x0000080${rank})`);
  const header = 4 + 4 * rank;
  if (buf.length < header) throw new IOError(`${file}: truncated IDX header (${buf.length} bytes, need ${header})`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < rank; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    if (d === 0) throw new IOError(`${file}: IDX dimension ${i} is 0`);
    dims.push(d);
    count *= d;
  }
  const have = buf.length - header;
  if (have < count) throw new IOError(`${file}: truncated: header [${dims.join(', ')}] needs ${count} data bytes, file has ${have}`);
  if (have > count) throw new IOError(`${file}: ${have - count} bytes of trailing data after [${dims.join(', ')}]`);
  return { dims, data: buf.subarray(header, header + count) };
}

interface SplitData {
  count: number;
  rows: number;
  cols: number;
  images: Uint8Array;
  labels: Uint8Array;
}

const CACHE = new Map<string, SplitData>();

function findFile(dir: string, base: string): string {
  for (const name of [`${base}.gz`, base]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  throw new IOError(`fashion-mnist: ${join(dir, base)}[.gz] not found; ${INSTALL_HINT}`);
}

function readFile(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new IOError(`${path}: cannot read (${(e as Error).message})`);
  }
}

/** Loads (or takes from the cache) one split's images and labels, fully validated. */
export function loadFashionMnist(dir: string, split: 'train' | 'test'): SplitData {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new IOError(`fashion-mnist: directory ${abs} not found; ${INSTALL_HINT}`);
  if (!statSync(abs).isDirectory()) throw new IOError(`fashion-mnist: ${abs} is not a directory (dir names the folder of the IDX files); ${INSTALL_HINT}`);
  const prefix = split === 'train' ? 'train' : 't10k';
  const imgPath = findFile(abs, `${prefix}-images-idx3-ubyte`);
  const lblPath = findFile(abs, `${prefix}-labels-idx1-ubyte`);
  const key = [imgPath, lblPath].map((p) => `${p}:${statSync(p).size}:${statSync(p).mtimeMs}`).join('|');
  const hit = CACHE.get(key);
  if (hit) return hit;
  const img = parseIdx(readFile(imgPath), imgPath, 3);
  const lbl = parseIdx(readFile(lblPath), lblPath, 1);
  const [count, rows, cols] = img.dims;
  if (lbl.dims[0] !== count) {
    throw new IOError(`fashion-mnist: ${imgPath} has ${count} images but ${lblPath} has ${lbl.dims[0]} labels`);
  }
  if (rows !== 28 || cols !== 28) throw new IOError(`fashion-mnist: ${imgPath} has ${rows}×${cols} images, expected 28×28`);
  for (let i = 0; i < count; i++) {
    if (lbl.data[i] > 9) throw new IOError(`fashion-mnist: ${lblPath}: label ${lbl.data[i]} at index ${i} is outside 0..9`);
  }
  const out: SplitData = { count, rows, cols, images: img.data, labels: lbl.data };
  CACHE.set(key, out);
  return out;
}

export interface FashionMnistOptions {
  split?: 'train' | 'test';
  /** Folder with the IDX files (default /usr/share/datasets/fashion-mnist). */
  dir?: string;
  /** Output height = width (default 28, no resize). */
  size?: number;
  /** 'resize' (bilinear, default) or 'pad' (centre on a zero canvas; size ≥ 28). */
  fit?: 'resize' | 'pad';
  /** 1 (default) or 3 (the gray channel repeated, for RGB models). */
  channels?: 1 | 3;
  /** Default 'half'. */
  normalize?: NormalizeSpec;
  /** Training augmentation (random crop with padding, horizontal flip); default off. */
  augment?: AugmentOptions | false;
}

export class FashionMnistDataset implements Dataset {
  readonly name: string;
  readonly length: number;
  readonly numClasses = 10;
  readonly classNames = FASHION_MNIST_CLASSES.slice();
  readonly imageShape: [number, number, number];
  readonly split: 'train' | 'test';
  private readonly data: SplitData;
  private readonly pipeline: Pipeline;
  private readonly scratch: Float32Array;

  constructor(opts: FashionMnistOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw new ArgumentError('fashionMnist: options must be an object');
    const split = opts.split ?? 'train';
    if (split !== 'train' && split !== 'test') throw new ArgumentError(`fashionMnist: split must be 'train' or 'test', got ${String(split)}`);
    const dir = opts.dir ?? DEFAULT_FASHION_MNIST_DIR;
    if (typeof dir !== 'string' || dir.length === 0) throw new ArgumentError('fashionMnist: dir must be a non-empty string');
    const channels = opts.channels ?? 1;
    if (channels !== 1 && channels !== 3) throw new ArgumentError(`fashionMnist: channels must be 1 or 3, got ${String(channels)}`);
    // Options are checked (by the pipeline) before the files are read.
    this.pipeline = new Pipeline([1, 28, 28], {
      size: opts.size,
      fit: opts.fit,
      channels,
      normalize: opts.normalize,
      augment: opts.augment,
    });
    this.data = loadFashionMnist(dir, split);
    this.split = split;
    this.length = this.data.count;
    this.imageShape = this.pipeline.outShape;
    this.name = `fashion-mnist-${split}`;
    this.scratch = new Float32Array(28 * 28);
  }

  getBatch(indices: number[], opts?: GetBatchOptions): Batch {
    checkIndices(indices, this.length, this.name);
    const epoch = epochOf(opts);
    const B = indices.length;
    const [C, S] = this.imageShape;
    const stride = C * S * S;
    const images = new Float32Array(B * stride);
    const labels = new Int32Array(B);
    const n = 28 * 28;
    const inv = 1 / 255;
    for (let b = 0; b < B; b++) {
      const i = indices[b];
      labels[b] = this.data.labels[i];
      const src = this.data.images.subarray(i * n, (i + 1) * n);
      for (let k = 0; k < n; k++) this.scratch[k] = src[k] * inv;
      this.pipeline.apply(this.scratch, null, epoch, i, images, b * stride, null, 0);
    }
    return { images, labels, indices: indices.slice() };
  }
}

/** Fashion-MNIST (see the file header). */
export function fashionMnist(opts: FashionMnistOptions = {}): FashionMnistDataset {
  return new FashionMnistDataset(opts);
}
