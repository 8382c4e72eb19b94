import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, readSafetensors, SafetensorsError, serializeSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { ArgumentError } from '../lib/errors.js';
import { readCheckpoint } from '../lib/io/checkpoint.js';
import { randn } from './helpers.js';

function header(obj: unknown, data: Uint8Array, lenOverride?: bigint): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(obj));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lenOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips tensors and metadata; re-serialising gives identical bytes', () => {
    const a = randn([3, 5], 1);
    const b = new Int32Array([1, -2, 3]);
    const bytes = serializeSafetensors({ 'x.weight': { dtype: 'F32', shape: [3, 5], data: a }, idx: { dtype: 'I32', shape: [3], data: b } }, { note: 'hi' });
    const f = parseSafetensors(bytes);
    expect(f.metadata).toEqual({ note: 'hi' });
    expect(Array.from(f.get('x.weight') as Float32Array)).toEqual(Array.from(a));
    expect(Array.from(f.get('idx') as Int32Array)).toEqual([1, -2, 3]);
    // the data section starts 8-byte aligned (header padded)
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const again = serializeSafetensors({ 'x.weight': { dtype: 'F32', shape: [3, 5], data: f.get('x.weight') }, idx: { dtype: 'I32', shape: [3], data: f.get('idx') } }, f.metadata);
    expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
  });

  it('reads the PyTorch fixture, converting int64 and float dtypes', async () => {
    const f = await readSafetensors(join(__dirname, 'fixtures/vit-tiny-ref.safetensors'));
    expect(f.entries.get('target')!.dtype).toBe('I64');
    expect(f.getFloat32('target').length).toBe(3);
    expect(f.entries.get('blocks.0.attn.qkv.weight')!.shape).toEqual([192, 64]);
  });

  const valid = () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    return { hdr: { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, data };
  };
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', () => new Uint8Array(5), /shorter than the 8-byte/],
    ['truncated data', () => { const { hdr, data } = valid(); return header(hdr, data).slice(0, -3); }, /outside|trailing|hole/],
    ['header length beyond the file', () => { const { hdr, data } = valid(); return header(hdr, data, 1n << 40n); }, /runs past the end/],
    ['bad JSON', () => header('x', new Uint8Array()).map((v, i) => (i === 8 ? 0x7b : v)), /not valid UTF-8 JSON/],
    ['header not an object', () => header([1, 2], new Uint8Array()), /must be a JSON object/],
    ['offsets out of range', () => { const { hdr, data } = valid(); hdr.b.data_offsets = [8, 24]; return header(hdr, data); }, /outside/],
    ['wrong dtype size', () => { const { hdr, data } = valid(); hdr.b.dtype = 'F64'; return header(hdr, data); }, /needs 16 bytes/],
    ['unknown dtype', () => { const { hdr, data } = valid(); hdr.b.dtype = 'Q7'; return header(hdr, data); }, /unknown dtype/],
    ['negative shape', () => { const { hdr, data } = valid(); hdr.b.shape = [-2]; return header(hdr, data); }, /invalid shape/],
    ['overlapping tensors', () => { const { hdr, data } = valid(); hdr.b.data_offsets = [4, 12]; return header(hdr, data.slice(0, 12)); }, /overlaps/],
    ['hole in the data', () => { const { hdr, data } = valid(); hdr.a.data_offsets = [0, 8]; hdr.b.data_offsets = [12, 20]; return header(hdr, new Uint8Array(20)); }, /hole/],
    ['non-string metadata', () => { const { hdr, data } = valid(); return header({ ...hdr, __metadata__: { k: 1 } }, data); }, /must be a string/],
    ['inverted offsets', () => { const { hdr, data } = valid(); hdr.b.data_offsets = [16, 8]; return header(hdr, data); }, /outside/],
  ];
  for (const [name, make, msg] of cases) {
    it(`rejects a corrupt file: ${name}`, () => {
      expect(() => parseSafetensors(make(), 'bad.safetensors')).toThrow(SafetensorsError);
      expect(() => parseSafetensors(make(), 'bad.safetensors')).toThrow(msg);
    });
  }

  it('a Hugging Face checkpoint whose query, key and value differ in shape is refused, naming them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-st-'));
    const at = (w: string) => `vit.encoder.layer.0.attention.attention.${w}.weight`;
    for (const [kShape, kData] of [[[8, 4], 32], [[16], 16], [[1, 2], 2]] as const) {
      const path = join(dir, `qkv-${kShape.join('x')}.safetensors`);
      await writeSafetensors(path, {
        [at('query')]: { dtype: 'F32', shape: [4, 4], data: randn([16], 1) },
        [at('key')]: { dtype: 'F32', shape: [...kShape], data: randn([kData], 2) },
        [at('value')]: { dtype: 'F32', shape: [4, 4], data: randn([16], 3) },
      });
      await expect(readCheckpoint(path)).rejects.toThrow(ArgumentError);
      await expect(readCheckpoint(path)).rejects.toThrow(/query, key and value must have one shape/);
    }
  });

  it('writes atomically and cleans up on failure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-st-'));
    const path = join(dir, 'w.safetensors');
    writeFileSync(path, 'old contents');
    await writeSafetensors(path, { a: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
    expect(Array.from(parseSafetensors(new Uint8Array(readFileSync(path))).get('a') as Float32Array)).toEqual([1, 2]);
    expect(readdirSync(dir)).toEqual(['w.safetensors']);
    await expect(writeSafetensors(join(dir, 'missing/x.safetensors'), {})).rejects.toThrow(SafetensorsError);
    await expect(readSafetensors(join(dir, 'nope.safetensors'))).rejects.toThrow(/cannot read/);
    expect(() => serializeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/needs 12 bytes/);
  });
});
