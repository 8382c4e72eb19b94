/**
 * safetensors read/write (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length n, n bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}},
 * then the data buffer that the offsets index.
 *
 * Reading trusts nothing in the file: the header length must fit the file (and a 100 MiB cap keeps a
 * hostile length from becoming a huge allocation), the JSON must parse to an object, every dtype must
 * be known, shapes must be non-negative safe integers whose byte size equals the offset range, ranges
 * must lie inside the data buffer, must not overlap, and must cover it without holes (as the
 * reference implementation requires). Every failure is a SafetensorsError naming the file and entry.
 *
 * Typed arrays are views into the file's bytes when the alignment allows (zero-copy), copies otherwise.
 * Writing pads the header with spaces to an 8-byte boundary so every tensor's data is aligned, and
 * files are written atomically (temporary file in the same directory, fsync, rename).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { show } from '../args.js';
import { ArgumentError, VitrimError } from '../errors.js';

export type StDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U16' | 'U32' | 'U64';

const DTYPE_SIZE: Record<StDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
};

/** Largest header we accept; real headers are a few hundred KiB at most. */
const MAX_HEADER = 100 * 1024 * 1024;

export class SafetensorsError extends VitrimError {
  constructor(message: string) {
    super(message, 'ERR_VITRIM_IO');
    this.name = 'SafetensorsError';
  }
}

export interface StEntry {
  dtype: StDType;
  shape: number[];
  /** byte range inside the data buffer */
  begin: number;
  end: number;
}

export type StArray = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array
  | Uint8Array | Uint32Array | BigUint64Array;

export interface SafetensorsFile {
  metadata: Record<string, string>;
  entries: Map<string, StEntry>;
  /** The raw data of one tensor as a typed array of its dtype (F16/BF16 as Uint16Array bits). */
  get(name: string): StArray;
  /** Float32 values of a floating or integer tensor (converting F64/F16/BF16/ints). */
  getFloat32(name: string): Float32Array;
}

/** Parses a safetensors byte buffer. `source` names it in error messages. */
export function parseSafetensors(bytes: Uint8Array, source = 'buffer'): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError(`parseSafetensors: bytes must be a Uint8Array (or Buffer), got ${show(bytes)}`);
  if (typeof source !== 'string') throw new ArgumentError(`parseSafetensors: source must be a string (the name used in messages), got ${show(source)}`);
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  if (bytes.byteLength < 8) fail(`not a safetensors file: ${bytes.byteLength} bytes is shorter than the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(bytes.byteLength - 8)) fail(`header length ${n64} runs past the end of the file (${bytes.byteLength} bytes): truncated or corrupt`);
  const n = Number(n64);
  if (n > MAX_HEADER) fail(`header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  if (n < 2) fail(`header length ${n} is too small to hold a JSON object`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header must be a JSON object');
  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, StEntry>();
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(`entry '${name}' must be an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_SIZE)) fail(`entry '${name}' has unknown dtype ${JSON.stringify(e.dtype)}`);
    const dtype = e.dtype as StDType;
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      fail(`entry '${name}' has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`entry '${name}' has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (begin > end || end > dataLen) fail(`entry '${name}' data_offsets [${begin}, ${end}] lie outside the ${dataLen}-byte data buffer`);
    let numel = 1;
    for (const d of shape) numel *= d;
    if (!Number.isSafeInteger(numel * DTYPE_SIZE[dtype]) || numel * DTYPE_SIZE[dtype] !== end - begin) {
      fail(`entry '${name}': shape [${shape}] of ${dtype} needs ${numel * DTYPE_SIZE[dtype]} bytes but data_offsets span ${end - begin}`);
    }
    entries.set(name, { dtype, shape, begin, end });
  }
  const sorted = [...entries.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let cursor = 0;
  for (const [name, e] of sorted) {
    if (e.begin < cursor) fail(`entry '${name}' overlaps the previous tensor's bytes`);
    if (e.begin > cursor) fail(`the data buffer has a hole before entry '${name}' (bytes ${cursor}..${e.begin})`);
    cursor = e.end;
  }
  if (cursor !== dataLen) fail(`the data buffer has ${dataLen - cursor} trailing bytes no tensor refers to`);

  const view = (name: string): StArray => {
    const e = entries.get(name);
    if (!e) throw new SafetensorsError(`${source}: no tensor named '${name}'`);
    const size = DTYPE_SIZE[e.dtype];
    const count = (e.end - e.begin) / size;
    const absolute = bytes.byteOffset + dataStart + e.begin;
    // Zero-copy when aligned; otherwise copy into a fresh (aligned) buffer.
    const buf = absolute % size === 0 ? bytes.buffer : bytes.slice(dataStart + e.begin, dataStart + e.end).buffer;
    const at = absolute % size === 0 ? absolute : 0;
    switch (e.dtype) {
      case 'F64': return new Float64Array(buf, at, count);
      case 'F32': return new Float32Array(buf, at, count);
      case 'F16': case 'BF16': case 'U16': return new Uint16Array(buf, at, count);
      case 'I64': return new BigInt64Array(buf, at, count);
      case 'U64': return new BigUint64Array(buf, at, count);
      case 'I32': return new Int32Array(buf, at, count);
      case 'U32': return new Uint32Array(buf, at, count);
      case 'I16': return new Int16Array(buf, at, count);
      case 'I8': return new Int8Array(buf, at, count);
      default: return new Uint8Array(buf, at, count);
    }
  };

  return {
    metadata,
    entries,
    get: view,
    getFloat32(name: string): Float32Array {
      const e = entries.get(name);
      const a = view(name);
      if (e!.dtype === 'F32') return a as Float32Array;
      const out = new Float32Array(a.length);
      if (e!.dtype === 'BF16') {
        const u32 = new Uint32Array(out.buffer);
        const h = a as Uint16Array;
        for (let i = 0; i < h.length; i++) u32[i] = h[i] << 16;
      } else if (e!.dtype === 'F16') {
        const h = a as Uint16Array;
        for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]);
      } else {
        for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
      }
      return out;
    },
  };
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Reads and validates a safetensors file. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  if (typeof path !== 'string' || path === '') throw new ArgumentError(`readSafetensors: path must be a non-empty string, got ${show(path)}`);
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(path);
  } catch (e) {
    throw new SafetensorsError(`${path}: cannot read (${(e as Error).message})`);
  }
  return parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
}

export interface StTensorIn {
  dtype: StDType;
  shape: number[];
  data: ArrayBufferView;
}

/** Serialises tensors (sorted by name) and string metadata into safetensors bytes. */
export function serializeSafetensors(tensors: Record<string, StTensorIn> | Map<string, StTensorIn>,
  metadata: Record<string, string> = {}): Uint8Array {
  if (!(tensors instanceof Map) && (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors))) {
    throw new ArgumentError(`serializeSafetensors: tensors must be a Map or an object from names to { dtype, shape, data }, got ${show(tensors)}`);
  }
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new ArgumentError(`serializeSafetensors: metadata must be an object of strings, got ${show(metadata)}`);
  }
  const list = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`metadata value '${k}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new SafetensorsError("'__metadata__' is not a valid tensor name");
    if (typeof name !== 'string') throw new ArgumentError(`serializeSafetensors: tensor names must be strings, got ${show(name)}`);
    if (!t || typeof t !== 'object') throw new ArgumentError(`serializeSafetensors: tensor '${name}' must be { dtype, shape, data }, got ${show(t)}`);
    const size = Object.hasOwn(DTYPE_SIZE, t.dtype) ? DTYPE_SIZE[t.dtype] : undefined;
    if (!size) throw new SafetensorsError(`tensor '${name}': unknown dtype ${t.dtype}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new ArgumentError(`serializeSafetensors: tensor '${name}': shape must be an array of non-negative integers, got ${show(t.shape)}`);
    }
    if (!ArrayBuffer.isView(t.data)) throw new ArgumentError(`serializeSafetensors: tensor '${name}': data must be a typed array, got ${show(t.data)}`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel * size !== t.data.byteLength) {
      throw new SafetensorsError(`tensor '${name}': shape [${t.shape}] of ${t.dtype} needs ${numel * size} bytes, data has ${t.data.byteLength}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hbytes = enc.encode(json);
  const pad = (8 - ((8 + hbytes.byteLength) % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hbytes = enc.encode(json);
  }
  const out = new Uint8Array(8 + hbytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.byteLength), true);
  out.set(hbytes, 8);
  let at = 8 + hbytes.byteLength;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** Writes bytes to `path` atomically: a temporary file beside it, fsync, then rename over the target. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  if (typeof path !== 'string' || path === '') throw new ArgumentError(`writeFileAtomic: path must be a non-empty string, got ${show(path)}`);
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError(`writeFileAtomic: bytes must be a Uint8Array (or Buffer), got ${show(bytes)}`);
  await writeFilesAtomic([[path, bytes]]);
}

/**
 * Writes several files as one save: every file goes to a temporary beside its target first (written,
 * fsynced); only when all of them are written are they renamed over their targets, in order, so that
 * a failure while writing (a full disk, say) leaves every target as it was. A crash between two renames
 * can still leave targets from two saves: a reader that needs them together marks them with one id
 * (Trainer.save / resume).
 */
export async function writeFilesAtomic(files: readonly (readonly [string, Uint8Array])[]): Promise<void> {
  const staged: { path: string; tmp: string }[] = [];
  try {
    for (const [path, bytes] of files) {
      const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
      let fh: Awaited<ReturnType<typeof fsp.open>> | undefined;
      try {
        fh = await fsp.open(tmp, 'wx');
        staged.push({ path, tmp });
        await fh.writeFile(bytes);
        await fh.sync();
      } catch (e) {
        throw new SafetensorsError(`${path}: cannot write (${(e as Error).message})`);
      } finally {
        await fh?.close().catch(() => {});
      }
    }
    for (let i = 0; i < staged.length; i++) {
      const { path, tmp } = staged[i];
      try {
        await fsp.rename(tmp, path);
      } catch (e) {
        const done = staged.slice(0, i).map((f) => f.path);
        throw new SafetensorsError(`${path}: cannot write (${(e as Error).message})${done.length ? `; already replaced: ${done.join(', ')}` : ''}`);
      }
      staged[i].tmp = '';
    }
  } finally {
    for (const { tmp } of staged) if (tmp) await fsp.rm(tmp, { force: true }).catch(() => {});
  }
  // The renames are in the directories' entries: flushed too, so that after a crash the names point at
  // the new files (the old ones are intact either way). Best effort: some file systems refuse it.
  for (const dir of new Set(files.map(([path]) => dirname(path)))) {
    try {
      const dh = await fsp.open(dir, 'r');
      await dh.sync().finally(() => dh.close());
    } catch {
      /* EINVAL / EISDIR / EPERM on file systems without directory fsync */
    }
  }
}

export async function writeSafetensors(path: string, tensors: Record<string, StTensorIn> | Map<string, StTensorIn>,
  metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
