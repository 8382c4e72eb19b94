// Softmax / log-softmax over the last axis on CUDA (native/cuda/softmax.cu) vs the CPU op on fresh
// random inputs, float32 (1e-5) and bfloat16 (1e-2): the warp-per-row path with 16-byte access,
// its scalar fallback (L = 197: attention rows), the block-per-row path (L > 1024), more rows than a
// grid dimension holds; backward from the forward output; empty rows; bad input. Skipped where no
// GPU is visible.
import { expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { expectCode, nt, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, cudaAs, describeCuda, expectRel, roundTo, values } from './helpers.js';

const r = (shape: number[], seed: number, scale = 1) => nt(randn(shape, seed, scale), shape);

// 197 (attention scores, 8 x 6 heads), 17, 2 and 70000 x 10: scalar; 384, 16, 1024: vectorised;
// 1025 and 5000: block per row. 50, 127, 301 and 999 (scalar) and 256 (float32: vectorised, 2
// accesses a lane) complete the register-row sizes the warp kernels instantiate
// (scripts/launch-check.mjs listed them as never launched).
const SHAPES: number[][] = [
  [1, 2],
  [3, 17],
  [5, 50],
  [4, 127],
  [3, 256],
  [3, 301],
  [2, 999],
  [8, 6, 197, 197],
  [4, 384],
  [70000, 10],
  [66000, 16],
  [3, 1024],
  [3, 1025],
  [2, 5000],
];

describeCuda('cuda softmax', () => {
  for (const dtype of FLOAT_DTYPES) {
    for (const log of [false, true]) {
      it(`${log ? 'log-softmax' : 'softmax'} ${dtype}: forward and backward on every path`, () => {
        SHAPES.forEach((shape, i) => {
          const what = `${JSON.stringify(shape)} log=${log} ${dtype}`;
          const x = roundTo(r(shape, 700 + 10 * i + (log ? 5 : 0), 3), dtype);
          const y = native.softmaxForward(x, log);
          const cy = native.softmaxForward(cudaAs(x, dtype), log);
          expect(cy.device).toBe('cuda');
          expect(cy.dtype).toBe(dtype);
          expect(cy.shape).toEqual(shape);
          expectRel(cy, y, TOL[dtype], `${what} y`);
          // Backward from one (rounded) y for both devices, so that only the backward is compared.
          const yr = roundTo(y, dtype);
          const gy = roundTo(r(shape, 701 + 10 * i + (log ? 5 : 0)), dtype);
          const gx = native.softmaxBackward(yr, gy, log);
          const cgx = native.softmaxBackward(cudaAs(yr, dtype), cudaAs(gy, dtype), log);
          expect(cgx.dtype).toBe(dtype);
          expectRel(cgx, gx, TOL[dtype], `${what} gx`);
        });
      });
    }
  }

  it('rows of length 1: y = 1 (log: 0) and a zero gradient', () => {
    for (const dtype of FLOAT_DTYPES) {
      const x = cudaAs(r([5, 1], 11, 3), dtype), gy = cudaAs(r([5, 1], 12), dtype);
      expect(Array.from(values(native.softmaxForward(x, false)))).toEqual([1, 1, 1, 1, 1]);
      const ly = native.softmaxForward(x, true);
      expect(Array.from(values(ly)).every((v) => v === 0)).toBe(true);
      expect(Array.from(values(native.softmaxBackward(native.softmaxForward(x, false), gy, false))).every((v) => v === 0))
        .toBe(true);
      expect(Array.from(values(native.softmaxBackward(ly, gy, true))).every((v) => v === 0)).toBe(true);
    }
  });

  it('rows of length 0 give an empty result', () => {
    const x = native.toDevice(native.full([3, 0], 0, 'float32'), 'cuda');
    expect(native.softmaxForward(x, false).shape).toEqual([3, 0]);
    expect(native.softmaxBackward(x, x, true).shape).toEqual([3, 0]);
  });

  it('rejects bad input with typed errors, then works', () => {
    const x = r([4, 8], 9);
    const xc = cudaAs(x, 'float32');
    const idx = native.toDevice(native.fromArray(new Int32Array(32), [4, 8], 'int32'), 'cuda');
    expectCode(() => native.softmaxForward(idx, false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.softmaxForward(cudaAs(r([1], 13), 'float32').reshape([]), false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.softmaxBackward(xc, cudaAs(x, 'bfloat16'), false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.softmaxBackward(xc, cudaAs(r([4, 7], 10), 'float32'), false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.softmaxBackward(xc, x, false), 'ERR_VITRIM_DEVICE');
    expectRel(native.softmaxForward(xc, true), native.softmaxForward(x, true), TOL.float32, 'after errors');
  });
});
