/**
 * CUDA varlen attention (attentionVarlen on cuda) against the CPU op on fresh random packed
 * sequences: fp32 to 1e-5, bf16 to 1e-2 (the CPU on inputs rounded through the dtype). Lengths
 * 0 … 260 in one batch (empty sequences, single tokens, partial 16-row blocks, one and two tiles),
 * head dims 64 / 32 (tensor-core kernels in bf16) and 24 (SIMT), gates with dropped heads (whose
 * channels must be exactly 0), a realistic batch of 256 sequences, equality with the dense kernel,
 * and bad input (cu_seqlens checked on the host after a copy: ERR_VITRIM_ARGUMENT / SHAPE as on
 * the CPU; cu_seqlens on the cpu with qkv on cuda: ERR_VITRIM_DEVICE).
 */
import { expect, it } from 'vitest';
import { native, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, randint, randn, randu, RUN_SEED } from '../helpers.js';
import { cudaAs, describeCuda, emulated, expectRel, FLOAT_DTYPES, roundTo, TOL, toCuda, values } from './helpers.js';

type FDType = 'float32' | 'bfloat16';

function cuOf(lens: number[]): Int32Array {
  const cu = new Int32Array(lens.length + 1);
  for (let s = 0; s < lens.length; s++) cu[s + 1] = cu[s] + lens[s];
  return cu;
}

function runVarlen(lens: number[], H: number, D: number, dtype: FDType, seed: number, withGate: boolean,
  gateDtype: FDType = 'float32'): void {
  const C = H * D;
  const cu = cuOf(lens);
  const R = cu[lens.length];
  const S = lens.length;
  const qkv = randn([R, 3 * C], seed);
  let gate: Float32Array | null = null;
  if (withGate) {
    gate = randu([S, H], seed + 1, 0.2, 1.5);
    for (let s = 0; s < S; s += 3) gate[s * H + (s % H)] = 0; // dropped heads
  }
  const scale = D ** -0.5;
  const what = `${dtype} lens [${lens.length > 12 ? `${lens.length} sequences` : lens}] H${H} D${D} gate=${withGate} (seed ${RUN_SEED})`;
  const want = native.attentionVarlen(roundTo(nt(qkv, [R, 3 * C]), dtype), nt(cu, [S + 1]), H, scale,
    gate ? roundTo(nt(gate, [S, H]), gateDtype) : null);
  const got = native.attentionVarlen(cudaAs(nt(qkv, [R, 3 * C]), dtype), toCuda(nt(cu, [S + 1])), H, scale,
    gate ? cudaAs(nt(gate, [S, H]), gateDtype) : null);
  expect(got.device).toBe('cuda');
  expect(got.dtype).toBe(dtype);
  expect(got.shape).toEqual([R, C]);
  expectRel(got, want, TOL[dtype], what);
  if (gate) {
    const o = values(got);
    for (let s = 0; s < S; s++)
      for (let h = 0; h < H; h++)
        if (gate[s * H + h] === 0)
          for (let r = cu[s]; r < cu[s + 1]; r++)
            for (let d = 0; d < D; d++)
              if (o[r * C + h * D + d] !== 0) throw new Error(`${what}: dropped head ${h} of sequence ${s} is not 0`);
  }
}

describeCuda('cuda varlen attention vs cpu', () => {
  let seed = 5000;
  const mixed = [5, 0, 1, 17, 197, 68, 138, 260, 3, 0];
  for (const dtype of FLOAT_DTYPES)
    for (const D of [64, 32, 24]) {
      it(`${dtype} D=${D}: mixed lengths, with and without gates`, () => {
        runVarlen(mixed, 3, D, dtype, (seed += 10), true);
        runVarlen(mixed, 2, D, dtype, (seed += 10), false);
        runVarlen([197], 6, D, dtype, (seed += 10), true);
        runVarlen([1], 2, D, dtype, (seed += 10), false);
      });
    }

  // Emulated (CPU fibers), 32 sequences keep the grid's mix of lengths at an eighth of the time.
  const nSeq = emulated ? 32 : 256;
  for (const dtype of FLOAT_DTYPES)
    it(`${dtype}: ${nSeq} sequences of 1 … 197 tokens, H = 6, D = 64 (a realistic grid)`, () => {
      const lens = Array.from(randint([nSeq], 77, 197), (x) => x + 1);
      runVarlen(lens, 6, 64, dtype, (seed += 10), true);
    });

  it('bf16 head gate with bf16 qkv; sequences with every length 0 (R = 0)', () => {
    runVarlen([40, 197, 9], 4, 64, 'bfloat16', (seed += 10), true, 'bfloat16');
    const out = native.attentionVarlen(toCuda(nt(new Float32Array(0), [0, 48])), toCuda(nt(new Int32Array([0, 0, 0]), [3])),
      2, 0.25, null);
    expect(out.shape).toEqual([0, 16]);
  });

  it('equals the dense kernel on one full sequence per sample', () => {
    for (const dtype of FLOAT_DTYPES) {
      const [B, N, H, D] = [3, 197, 3, 64];
      const C = H * D;
      const qkv = randn([B, N, 3 * C], 9);
      const dense = native.attentionForward(cudaAs(nt(qkv, [B, N, 3 * C]), dtype), H, 0.3, null, null, 0)[0];
      const cu = Int32Array.from([0, N, 2 * N, 3 * N]);
      const v = native.attentionVarlen(cudaAs(nt(qkv, [B * N, 3 * C]), dtype), toCuda(nt(cu, [4])), H, 0.3, null);
      expectRel(v, dense, 1e-6, `${dtype} varlen vs dense`);
    }
  });
});

describeCuda('cuda varlen attention bad input', () => {
  it('rejects bad cu_seqlens, shapes, dtypes and devices with typed errors and keeps working', () => {
    const q = toCuda(nt(randn([5, 24], 3), [5, 24]));
    const cu = (a: number[]) => toCuda(nt(new Int32Array(a), [a.length]));
    const call = (x: NativeTensor, c: NativeTensor, h: number, g: NativeTensor | null = null) =>
      native.attentionVarlen(x, c, h, 1, g);
    expectCode(() => call(q, cu([1, 5]), 2), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => call(q, cu([0, 3, 2, 5]), 2), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => call(q, cu([0, 4]), 2), 'ERR_VITRIM_SHAPE');
    expectCode(() => call(q, cu([0, 6]), 2), 'ERR_VITRIM_SHAPE');
    expectCode(() => call(q, toCuda(nt(new Int32Array(0), [0])), 2), 'ERR_VITRIM_SHAPE');
    expectCode(() => call(q, cu([0, 5]), 5), 'ERR_VITRIM_SHAPE');
    expectCode(() => call(q, cu([0, 5]), 2, toCuda(nt([1, 1, 1], [1, 3]))), 'ERR_VITRIM_SHAPE');
    expectCode(() => call(q, cu([0, 5]), 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => call(toCuda(nt(randn([5, 2, 12], 3), [5, 2, 12])), cu([0, 5]), 2), 'ERR_VITRIM_SHAPE');
    // head_dim 136 > 128: beyond the cuda kernels
    expectCode(() => call(toCuda(nt(randn([2, 3 * 136], 3), [2, 3 * 136])), cu([0, 2]), 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => call(q, toCuda(nt([0, 5], [2])), 2), 'ERR_VITRIM_DTYPE');
    expectCode(() => call(toCuda(native.full([5, 24], 1, 'int32')), cu([0, 5]), 2), 'ERR_VITRIM_DTYPE');
    expectCode(() => call(q, cu([0, 5]), 2, cudaAs(nt([1, 1], [1, 2]), 'bfloat16')), 'ERR_VITRIM_DTYPE');
    expectCode(() => call(q, nt(new Int32Array([0, 5]), [2]), 2), 'ERR_VITRIM_DEVICE');
    expectCode(() => call(q, cu([0, 5]), 2, nt([1, 1], [1, 2])), 'ERR_VITRIM_DEVICE');
    // still works
    const out = call(q, cu([0, 2, 5]), 2, toCuda(nt([1, 0, 0.5, 1], [2, 2])));
    expect(out.shape).toEqual([5, 8]);
    expect(Array.from(values(out)).every(Number.isFinite)).toBe(true);

    // An uploaded cu_seqlens is read from the values the upload kept (no copy back): the same result
    // as one computed on the device (read back), and a write() of bad values is still refused.
    const g = toCuda(nt([1, 0, 0.5, 1], [2, 2]));
    const up = cu([0, 2, 5]);
    const dev = native.cast(toCuda(nt(new Float32Array([0, 2, 5]), [3])), 'int32');  // nothing known
    expect(Array.from(values(call(q, up, 2, g)))).toEqual(Array.from(values(call(q, dev, 2, g))));
    up.write(new Int32Array([0, 3, 2]));
    expectCode(() => call(q, up, 2, g), 'ERR_VITRIM_ARGUMENT');
    up.write(new Int32Array([0, 1, 5]));
    expect(Array.from(values(call(q, up, 2, g)))).toEqual(Array.from(values(call(q, cu([0, 1, 5]), 2, g))));
    expect(Array.from(values(call(q, up, 2, g)))).not.toEqual(Array.from(values(call(q, dev, 2, g))));
  });
});
