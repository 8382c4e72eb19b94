import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, readSafetensors, SafetensorsError, serializeSafetensors, writeFilesAtomic, writeSafetensors } from '../lib/io/safetensors.js';
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

  // A half-precision bit pattern to float32, independently of the library's arithmetic decoder:
  // re-biases the exponent and shifts the mantissa into float32's bit layout (subnormal halves are
  // normalised first), then reads the bits back.
  const halfBitsRef = (h: number): number => {
    const sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let man = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f) bits = sign | 0x7f800000 | (man << 13);
    else if (exp === 0 && man === 0) bits = sign;
    else {
      if (exp === 0) {
        exp = 1;
        while (!(man & 0x400)) { man <<= 1; exp--; }
        man &= 0x3ff;
      }
      bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, bits >>> 0);
    return dv.getFloat32(0);
  };

  it('getFloat32 decodes every float16 bit pattern, bfloat16, float64 and integer tensors', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const bf = new Uint16Array(randn([257], 4).buffer.slice(0)).filter((_, i) => i % 2 === 1); // high halves of floats
    const f64 = new Float64Array([0.1, -2.5, 1e-40, 3e38]);
    const i64 = new BigInt64Array([-3n, 0n, 2n ** 40n]);
    const u8 = new Uint8Array([0, 7, 255]);
    const f = parseSafetensors(serializeSafetensors({
      h: { dtype: 'F16', shape: [65536], data: all },
      b: { dtype: 'BF16', shape: [bf.length], data: bf },
      d: { dtype: 'F64', shape: [4], data: f64 },
      q: { dtype: 'I64', shape: [3], data: i64 },
      u: { dtype: 'U8', shape: [3], data: u8 },
    }));
    const h = f.getFloat32('h');
    let nan = 0;
    for (let i = 0; i < 65536; i++) {
      const want = halfBitsRef(i);
      if (Number.isNaN(want)) { expect(h[i]).toBeNaN(); nan++; } else expect(Object.is(h[i], want)).toBe(true);
    }
    expect(nan).toBe(2 * 1023); // exponent 31 with a non-zero mantissa, either sign
    // IEEE 754 binary16 landmarks
    expect([0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00].map((b) => h[b])).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity]);
    expect(Object.is(h[0x8000], -0)).toBe(true);
    const b = f.getFloat32('b');
    const bits = new Uint32Array(b.buffer, b.byteOffset, b.length);
    for (let i = 0; i < bf.length; i++) expect(bits[i]).toBe(bf[i] * 65536);
    expect(Array.from(f.getFloat32('d'))).toEqual(Array.from(f64, Math.fround));
    expect(Array.from(f.getFloat32('q'))).toEqual([-3, 0, 2 ** 40]);
    expect(Array.from(f.getFloat32('u'))).toEqual([0, 7, 255]);
  });

  it('a checkpoint stored in float16 or bfloat16 loads as float32 of the same values', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-st-'));
    const src = await readCheckpoint(join(__dirname, 'fixtures/vit-tiny-ref.safetensors'));
    // float32 -> bfloat16 by truncation and -> float16 by searching the decoded table (both exact
    // encodings of some value near the original): what a half-precision export would hold.
    const table = Float32Array.from({ length: 0x7c00 }, (_, i) => halfBitsRef(i)); // non-negative finite halves, increasing
    const toHalf = (x: number): number => {
      let lo = 0, hi = table.length - 1;
      const a = Math.abs(x);
      while (lo < hi) { const m = (lo + hi + 1) >> 1; if (table[m] <= a) lo = m; else hi = m - 1; }
      const best = lo + 1 < table.length && table[lo + 1] - a < a - table[lo] ? lo + 1 : lo;
      return (x < 0 ? 0x8000 : 0) | best;
    };
    for (const dtype of ['F16', 'BF16'] as const) {
      const tensors: Record<string, { dtype: 'F16' | 'BF16'; shape: number[]; data: Uint16Array }> = {};
      const want = new Map<string, Float32Array>();
      for (const [name, e] of src.state) {
        const f32 = Float32Array.from(e.data);
        const u32 = new Uint32Array(f32.buffer);
        const h = dtype === 'BF16' ? Uint16Array.from(u32, (v) => v >>> 16) : Uint16Array.from(f32, toHalf);
        tensors[name] = { dtype, shape: e.shape, data: h };
        want.set(name, dtype === 'BF16' ? new Float32Array(Uint32Array.from(h, (v) => v * 65536).buffer) : Float32Array.from(h, halfBitsRef));
      }
      const path = join(dir, `${dtype}.safetensors`);
      await writeSafetensors(path, tensors);
      const got = await readCheckpoint(path);
      expect([...got.state.keys()].sort()).toEqual([...src.state.keys()].sort());
      for (const [name, e] of got.state) {
        expect(e.shape).toEqual(src.state.get(name)!.shape);
        const w = want.get(name)!;
        const o = src.state.get(name)!.data;
        // the decoded values exactly, and the original's to the format's precision (bfloat16
        // truncates: under 2^-7 relative; float16 rounds: 2^-11, plus its subnormal spacing)
        const eps = dtype === 'BF16' ? 2 ** -7 : 2 ** -11;
        let wrong = 0, far = 0;
        for (let i = 0; i < o.length; i++) {
          if (!Object.is(e.data[i], w[i])) wrong++;
          if (!(Math.abs(e.data[i] - o[i]) <= eps * Math.abs(o[i]) + 2 ** -25)) far++;
        }
        expect({ name, wrong, far }).toEqual({ name, wrong: 0, far: 0 });
      }
    }
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

  it('writes several files as one save: none is replaced unless all were written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-st-'));
    const [a, b] = [join(dir, 'a.bin'), join(dir, 'b.bin')];
    writeFileSync(a, 'old a');
    writeFileSync(b, 'old b');
    await writeFilesAtomic([[a, new Uint8Array([1, 2])], [b, new Uint8Array([3])]]);
    expect([...readFileSync(a)]).toEqual([1, 2]);
    expect([...readFileSync(b)]).toEqual([3]);
    // the second cannot be written (its directory is missing): the first target keeps its contents
    const err = await writeFilesAtomic([[a, new Uint8Array([9])], [join(dir, 'missing', 'c.bin'), new Uint8Array([9])]]).catch((e) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(String(err)).toMatch(/missing\/c\.bin: cannot write/);
    expect([...readFileSync(a)]).toEqual([1, 2]);
    expect(readdirSync(dir).sort()).toEqual(['a.bin', 'b.bin']); // no temporary left
    // a target that cannot be replaced (a directory) after another was: the error says which was
    mkdirSync(join(dir, 'd.bin'));
    const err2 = await writeFilesAtomic([[a, new Uint8Array([7])], [join(dir, 'd.bin'), new Uint8Array([7])]]).catch((e) => e);
    expect(String(err2)).toMatch(/d\.bin: cannot write .*; already replaced: .*a\.bin/);
    expect(readdirSync(dir).sort()).toEqual(['a.bin', 'b.bin', 'd.bin']);
  });
});
