/**
 * Test-only reader for the float32 safetensors fixtures (happy path only; the library's reader with
 * full validation lives in lib/io/safetensors.ts). Format: u64 little-endian header length n, n bytes
 * of JSON {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {...}}, then the data.
 */
import { readFileSync } from 'node:fs';

export interface FixtureTensor {
  shape: number[];
  data: Float32Array;
}

export interface Fixture {
  metadata: Record<string, string>;
  tensors: Record<string, FixtureTensor>;
}

export function readFixture(path: string): Fixture {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const base = 8 + n;
  const tensors: Record<string, FixtureTensor> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (e.dtype !== 'F32') throw new Error(`fixture-reader: ${name} is ${e.dtype}, only F32 is supported`);
    const [b, end] = e.data_offsets;
    // Copy into a fresh (aligned) ArrayBuffer; the fixture is little-endian like every target here.
    const bytes = buf.subarray(base + b, base + end);
    const data = new Float32Array(bytes.length / 4);
    new Uint8Array(data.buffer).set(bytes);
    tensors[name] = { shape: e.shape, data };
  }
  return { metadata: (header.__metadata__ ?? {}) as Record<string, string>, tensors };
}
