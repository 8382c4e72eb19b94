// LayerNorm on CUDA (native/cuda/layernorm.cu) vs the CPU op on fresh random inputs, float32 (1e-5)
// and bfloat16 (1e-2): the warp-per-row path with 16-byte access (ViT widths), its scalar fallback
// (rows whose byte length is not a multiple of 16), the block-per-row path (L > 1024), more rows
// than a grid dimension holds, with and without affine parameters; an output dtype other than x's
// (bit-identical to the same-dtype output cast); backward gx, gw, gb (and that the column sums are
// deterministic); empty inputs; bad input. Skipped where no GPU is visible.
import { expect, it } from 'vitest';
import { native, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, numel, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, bits, cudaAs, describeCuda, expectRel, roundTo, values } from './helpers.js';

const r = (shape: number[], seed: number, scale = 1, offset = 0) => {
  const d = randn(shape, seed, scale);
  if (offset) for (let i = 0; i < d.length; i++) d[i] += offset;
  return nt(d, shape);
};

type Affine = 'none' | 'weight' | 'both';

// [shape, affine, eps]: L = 384/192/768 take the vectorised warp path in both dtypes; 33, 17, 3, 1
// and 100 (bf16: 200 bytes) the scalar one; 101, 201, 301 and 999 the scalar one with 4, 8, 16 and
// 32 accesses a lane (every register-row size it instantiates: scripts/launch-check.mjs listed them
// as never launched); 1024 is the largest warp row; 1025, 1500 and 4099 go block-per-row; 70000 and
// 66000 rows pass 65535.
const CASES: [number[], Affine, number][] = [
  [[1, 1], 'both', 1e-6],
  [[3, 17], 'both', 1e-5],
  [[8, 197, 384], 'both', 1e-6],
  [[4, 197, 192], 'weight', 1e-6],
  [[2, 197, 768], 'none', 1e-6],
  [[5, 7, 33], 'both', 1e-6],
  [[9, 100], 'both', 1e-6],
  [[5, 101], 'both', 1e-6],
  [[4, 201], 'weight', 1e-6],
  [[3, 301], 'both', 1e-6],
  [[2, 999], 'none', 1e-6],
  [[70000, 8], 'both', 1e-6],
  [[66000, 3], 'weight', 1e-5],
  [[3, 1024], 'both', 1e-6],
  [[3, 1025], 'both', 1e-6],
  [[2, 3, 1500], 'none', 1e-6],
  [[2, 4099], 'both', 1e-5],
];

function inputs(shape: number[], affine: Affine, seed: number, dtype: 'float32' | 'bfloat16') {
  const L = shape[shape.length - 1];
  // An offset of 3 makes a one-pass E[x²] − E[x]² variance lose digits; the two-pass one does not.
  const x = roundTo(r(shape, seed, 2, 3), dtype);
  const w = affine !== 'none' ? roundTo(r([L], seed + 1, 1, 1), dtype) : null;
  const b = affine === 'both' ? roundTo(r([L], seed + 2), dtype) : null;
  const gy = roundTo(r(shape, seed + 3), dtype);
  return { x, w, b, gy, L };
}

const cu = (t: NativeTensor | null, dtype: 'float32' | 'bfloat16') => (t ? cudaAs(t, dtype) : null);

describeCuda('cuda layernorm', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`forward ${dtype}: every path, with and without affine`, () => {
      CASES.forEach(([shape, affine, eps], i) => {
        const { x, w, b } = inputs(shape, affine, 100 + 10 * i, dtype);
        const what = `${JSON.stringify(shape)} ${affine} ${dtype}`;
        const [y, mean, rstd] = native.layernormForward(x, w, b, eps);
        const [cy, cmean, crstd] = native.layernormForward(cudaAs(x, dtype), cu(w, dtype), cu(b, dtype), eps);
        expect(cy.device).toBe('cuda');
        expect(cy.dtype).toBe(dtype);
        expect(cy.shape).toEqual(shape);
        expect(cmean.dtype).toBe('float32');
        expect(crstd.dtype).toBe('float32');
        expect(cmean.shape).toEqual([numel(shape) / shape[shape.length - 1]]);
        expectRel(cy, y, TOL[dtype], `${what} y`);
        // The statistics are fp32 from the same (rounded) inputs in both dtypes.
        expectRel(cmean, mean, 1e-5, `${what} mean`);
        expectRel(crstd, rstd, 1e-5, `${what} rstd`);
      });
    });

    it(`backward ${dtype}: gx, gw, gb on every path`, () => {
      CASES.forEach(([shape, affine, eps], i) => {
        const { x, w, b, gy } = inputs(shape, affine, 300 + 10 * i, dtype);
        const what = `${JSON.stringify(shape)} ${affine} ${dtype}`;
        const [, mean, rstd] = native.layernormForward(x, w, b, eps);
        const [gx, gw, gb] = native.layernormBackward(gy, x, w, mean, rstd);
        const [, cmean, crstd] = native.layernormForward(cudaAs(x, dtype), cu(w, dtype), cu(b, dtype), eps);
        const [cgx, cgw, cgb] = native.layernormBackward(cudaAs(gy, dtype), cudaAs(x, dtype), cu(w, dtype), cmean, crstd);
        expect(cgx.dtype).toBe(dtype);
        if (shape[shape.length - 1] === 1) {
          // One element per row: xhat = 0 and gx = rstd (g - mean(g)) = 0 exactly on both devices (and gw = 0).
          expect(Array.from(values(gx)).every((v) => v === 0)).toBe(true);
          expect(Array.from(values(cgx)).every((v) => v === 0)).toBe(true);
        } else {
          expectRel(cgx, gx, TOL[dtype], `${what} gx`);
        }
        if (w) {
          expect(cgw!.dtype).toBe(dtype);
          expect(cgw!.shape).toEqual([shape[shape.length - 1]]);
          if (shape[shape.length - 1] === 1) expect(Array.from(values(cgw!))).toEqual(Array.from(values(gw!)));  // xhat = 0
          else expectRel(cgw!, gw!, TOL[dtype], `${what} gw`);
          expectRel(cgb!, gb!, TOL[dtype], `${what} gb`);
        } else {
          expect(cgw).toBeNull();
          expect(cgb).toBeNull();
        }
      });
    });
  }

  // Rows whose spread is small against their mean (x = 1.5 + 1e-3·N(0, 1)): xhat = (x − mean)·rstd
  // with rstd up to 1/√eps, so half an ulp of the float32 mean moves xhat by 1e-5 and more. Both
  // devices form xhat from the double row mean; gw's column sums used the saved float32 mean and came
  // out 1.3e-5 off the CPU on a [3, 2] case (the CUDA fuzzer, seed 202). Every path: scalar rows of
  // 2 and 3, the vectorised warp row (384), block-per-row (1500).
  it('rows of small spread against their mean: gx, gw, gb as on the cpu (float32)', () => {
    for (const [shape, eps] of [[[3, 2], 1e-5], [[7, 3], 1e-5], [[64, 384], 1e-6], [[4, 1500], 1e-6]] as const) {
      const what = JSON.stringify(shape);
      const L = shape[1];
      const x = r([...shape], 700 + L, 1e-3, 1.5);
      const w = r([L], 701 + L, 1, 1);
      const gy = r([...shape], 702 + L);
      const [, mean, rstd] = native.layernormForward(x, w, null, eps);
      const [gx, gw, gb] = native.layernormBackward(gy, x, w, mean, rstd);
      const [, cmean, crstd] = native.layernormForward(cudaAs(x, 'float32'), cudaAs(w, 'float32'), null, eps);
      const [cgx, cgw, cgb] = native.layernormBackward(cudaAs(gy, 'float32'), cudaAs(x, 'float32'), cudaAs(w, 'float32'), cmean, crstd);
      expectRel(cgx, gx, 1e-5, `${what} gx`);
      expectRel(cgw!, gw!, 1e-5, `${what} gw`);
      expectRel(cgb!, gb!, 1e-5, `${what} gb`);
    }
  });

  it('the ViT-S training shape (256·197, 384) in bfloat16, and gw/gb are bit-for-bit reproducible', () => {
    const shape = [256 * 197, 384];
    const { x, w, b, gy } = inputs(shape, 'both', 500, 'bfloat16');
    const [xc, wc, bc, gc] = [x, w!, b!, gy].map((t) => cudaAs(t, 'bfloat16'));
    const [y, mean, rstd] = native.layernormForward(x, w, b, 1e-6);
    const [cy, cmean, crstd] = native.layernormForward(xc, wc, bc, 1e-6);
    expectRel(cy, y, TOL.bfloat16, 'y');
    const [gx, gw, gb] = native.layernormBackward(gy, x, w, mean, rstd);
    const [cgx, cgw, cgb] = native.layernormBackward(gc, xc, wc, cmean, crstd);
    expectRel(cgx, gx, TOL.bfloat16, 'gx');
    expectRel(cgw!, gw!, TOL.bfloat16, 'gw');
    expectRel(cgb!, gb!, TOL.bfloat16, 'gb');
    const [, cgw2, cgb2] = native.layernormBackward(gc, xc, wc, cmean, crstd);
    expect(Array.from(cgw2!.read())).toEqual(Array.from(cgw!.read()));
    expect(Array.from(cgb2!.read())).toEqual(Array.from(cgb!.read()));
  });

  // The output dtype differing from x's (autocast: float32 x -> bf16 y for the GEMM after it). y is
  // the float result rounded once, so it must be bit-identical to the same-dtype output cast, on
  // every path: 16-byte loads with 8-byte bf16 stores (f32 -> bf16), 16-byte loads with two 16-byte
  // float stores (bf16 -> f32), scalar, block-per-row; and the statistics equal the same-dtype call's.
  for (const [from, to] of [['float32', 'bfloat16'], ['bfloat16', 'float32']] as const) {
    it(`forward ${from} x -> ${to} y: the bits of the ${from} output cast, on every path`, () => {
      CASES.forEach(([shape, affine, eps], i) => {
        const { x, w, b } = inputs(shape, affine, 700 + 10 * i, from);
        const what = `${JSON.stringify(shape)} ${affine} ${from}->${to}`;
        const args = [cudaAs(x, from), cu(w, from), cu(b, from)] as const;
        const [y, mean, rstd] = native.layernormForward(...args, eps);
        const [my, mmean, mrstd] = native.layernormForward(...args, eps, to);
        expect(my.dtype).toBe(to);
        expect(my.shape).toEqual(shape);
        expect(Array.from(bits(mmean))).toEqual(Array.from(bits(mean)));
        expect(Array.from(bits(mrstd))).toEqual(Array.from(bits(rstd)));
        if (to === 'bfloat16') {
          expect(Array.from(bits(my)), what).toEqual(Array.from(bits(native.cast(y, 'bfloat16'))));
        } else {
          // bf16 x -> float32 y keeps the float result that the bf16 output rounds
          expect(Array.from(bits(native.cast(my, 'bfloat16'))), what).toEqual(Array.from(bits(y)));
          const [cpuY] = native.layernormForward(x, w, b, eps);  // the CPU's float32 result from the same inputs
          expectRel(my, cpuY, TOL.float32, what);
        }
        // the same option on the CPU: its float32 result rounded (CPU computes in float32 only)
        if (from === 'float32') {
          const [cy] = native.layernormForward(x, w, b, eps, to);
          expect(cy.dtype).toBe(to);
          expectRel(my, cy, TOL.bfloat16, `${what} vs cpu`);
        }
      });
    });
  }

  it('no rows: empty outputs and zero gw, gb', () => {
    const x = native.toDevice(native.full([0, 5], 0, 'float32'), 'cuda');
    const w = cudaAs(r([5], 1), 'float32');
    const [y, mean, rstd] = native.layernormForward(x, w, null, 1e-6);
    expect(y.shape).toEqual([0, 5]);
    expect(mean.shape).toEqual([0]);
    expect(rstd.shape).toEqual([0]);
    const [gx, gw, gb] = native.layernormBackward(x, x, w, mean, rstd);
    expect(gx.shape).toEqual([0, 5]);
    expect(Array.from(values(gw!))).toEqual([0, 0, 0, 0, 0]);
    expect(Array.from(values(gb!))).toEqual([0, 0, 0, 0, 0]);
  });

  it('rejects bad input with typed errors, then works', () => {
    const x = r([4, 8], 7), w = r([8], 8), b = r([8], 9);
    const [xc, wc, bc] = [x, w, b].map((t) => cudaAs(t, 'float32'));
    const idx = native.toDevice(native.fromArray(new Int32Array(32), [4, 8], 'int32'), 'cuda');
    expectCode(() => native.layernormForward(idx, null, null, 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(xc, cudaAs(w, 'bfloat16'), null, 1e-6), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(xc, cudaAs(r([7], 10), 'float32'), null, 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(xc, wc, cudaAs(r([9], 11), 'float32'), 1e-6), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(xc, null, bc, 1e-6), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(xc, wc, bc, -1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.layernormForward(xc, w, null, 1e-6), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.layernormForward(native.toDevice(native.full([3, 0], 0, 'float32'), 'cuda'), null, null, 1e-6),
      'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormForward(xc, wc, bc, 1e-6, 'int32'), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormForward(xc, wc, bc, 1e-6, 'float16' as never), 'ERR_VITRIM_DTYPE');
    const [, mean, rstd] = native.layernormForward(xc, wc, bc, 1e-6);
    const gyc = cudaAs(r([4, 8], 12), 'float32');
    expectCode(() => native.layernormBackward(cudaAs(r([4, 8], 12), 'bfloat16'), xc, wc, mean, rstd), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormBackward(cudaAs(r([4, 7], 13), 'float32'), xc, wc, mean, rstd), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormBackward(gyc, xc, wc, cudaAs(r([3], 14), 'float32'), rstd), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.layernormBackward(gyc, xc, wc, cudaAs(r([4], 15), 'bfloat16'), rstd), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.layernormBackward(gyc, xc, wc, mean, native.toDevice(rstd, 'cpu')), 'ERR_VITRIM_DEVICE');
    const [y] = native.layernormForward(x, w, b, 1e-6);
    expectRel(native.layernormForward(xc, wc, bc, 1e-6)[0], y, TOL.float32, 'after errors');
  });
});
