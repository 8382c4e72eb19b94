// The 64-bit index instantiations of the CUDA kernels (binary ops, reductions, permute, slice /
// concat, patchify / unpatchify), which a GPU otherwise runs only on tensors past 2^31 elements (or
// 2^30 for the patch kernels) and no other test reaches: VITRIM_CUDA_INDEX64=1 (read at each call,
// native/cuda/runtime.cu's index32) selects them on small tensors. The index width must change no
// bit of any result, so each call is compared bit for bit with the 32-bit run and with the CPU op
// (exactly for data movement, within the dtype's tolerance for arithmetic) on fresh random inputs.
// scripts/launch-check.mjs listed these kernels as never launched before this file.
import { expect, it } from 'vitest';
import { withEnv } from '../../bench/env.js';
import { native, type BinaryOp, type NativeTensor, type ReduceOp } from '../../lib/native.js';
import { expectCode, nt, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, bits, cudaAs, describeCuda, expectRel, roundTo, values } from './helpers.js';

const r = (shape: number[], seed: number, scale = 1) => nt(randn(shape, seed, scale), shape);
const wide = <R>(fn: () => R): R => withEnv('VITRIM_CUDA_INDEX64', '1', fn);

/** Runs `call` on cuda with 32-bit and with 64-bit indices: the same bits; returns the 64-bit result. */
function bothWidths(call: () => NativeTensor, what: string): NativeTensor {
  const narrow = call();
  const w = wide(call);
  expect(w.shape, what).toEqual(narrow.shape);
  expect(w.dtype, what).toBe(narrow.dtype);
  expect(Array.from(bits(w)), what).toEqual(Array.from(bits(narrow)));
  return w;
}

describeCuda('cuda 64-bit index kernels (VITRIM_CUDA_INDEX64=1)', () => {
  it('binary ops: packed rows, scalar rows and n-d broadcasting, one dtype or float32 with bf16', () => {
    // [a shape, b shape]: same shape (packs); a bias over rows of 7 (scalar, L % 4 != 0); a per-row
    // scalar; an n-d broadcast both ways (the general kernel)
    const cases: [number[], number[]][] = [[[5, 12], [5, 12]], [[3, 7], [7]], [[6, 8], [6, 1]], [[2, 3, 4, 5], [2, 1, 4, 1]]];
    let seed = 10;
    for (const [sa, sb] of cases) {
      for (const op of ['add', 'sub', 'mul', 'div'] as BinaryOp[]) {
        for (const [da, db] of [['float32', 'float32'], ['bfloat16', 'bfloat16'], ['float32', 'bfloat16'], ['bfloat16', 'float32']] as const) {
          const a = roundTo(r(sa, seed++), da), b = roundTo(r(sb, seed++, 0.5), db);
          // keep the divisor away from 0: relative error of a quotient by ~0 says nothing
          const bb = op === 'div' ? roundTo(native.affine(native.unary('abs', b), 1, 0.5), db) : b;
          const what = `${op} ${JSON.stringify(sa)} ${da} with ${JSON.stringify(sb)} ${db}`;
          const got = bothWidths(() => native.binary(op, cudaAs(a, da), cudaAs(bb, db)), what);
          const want = native.binary(op, a, bb);
          expect(got.dtype).toBe(da === 'bfloat16' && db === 'bfloat16' ? 'bfloat16' : 'float32');
          expectRel(got, got.dtype === 'bfloat16' ? roundTo(want, 'bfloat16') : want,
            got.dtype === 'bfloat16' ? TOL.bfloat16 : TOL.float32, what);
        }
      }
    }
  });

  it('sum / mean / max over inner, outer, middle and all axes (each reduction kernel)', () => {
    const cases: [number[], number[]][] = [
      [[4, 1000], [1]], [[1000, 4], [0]], [[6, 33, 10], [1]], [[6, 33, 10], [0, 2]], [[3, 20000], [1]], [[7, 9], [0, 1]],
    ];
    let seed = 100;
    for (const dtype of FLOAT_DTYPES) {
      for (const [shape, axes] of cases) {
        for (const op of ['sum', 'mean', 'max'] as ReduceOp[]) {
          const x = roundTo(r(shape, seed++), dtype);
          const what = `${op} ${JSON.stringify(shape)} axes ${axes} ${dtype}`;
          const got = bothWidths(() => native.reduce(op, cudaAs(x, dtype), axes, false), what);
          const want = native.reduce(op, x, axes, false);
          // sums of random-sign values cancel: judge them against the sum of magnitudes
          const scale = values(op === 'max' ? want : native.reduce(op, native.unary('abs', x), axes, false));
          const g = values(got), w = values(want);
          let num = 0, den = 0;
          for (let i = 0; i < w.length; i++) {
            num += (g[i] - w[i]) ** 2;
            den += scale[i] ** 2;
          }
          expect(Math.sqrt(num / den), what).toBeLessThanOrEqual(TOL[dtype]);
        }
      }
    }
  });

  it('permute with 2-, 4-, 8- and 16-byte words; slice, its backward and concat', () => {
    let seed = 200;
    for (const dtype of ['float32', 'bfloat16', 'int32'] as const) {
      const make = (shape: number[]) => (dtype === 'int32'
        ? native.cast(native.affine(r(shape, seed++), 1000, 0), 'int32')
        : roundTo(r(shape, seed++), dtype));
      // perm [1, 0, 2] keeps runs of the last dim (8 elements: 32 or 16 bytes) whole; [2, 1, 0] does not
      for (const [shape, perm] of [[[3, 5, 8], [1, 0, 2]], [[3, 5, 2], [1, 0, 2]], [[2, 3, 4, 5], [3, 1, 0, 2]], [[4, 6, 3], [2, 1, 0]]] as [number[], number[]][]) {
        const x = make(shape);
        const what = `permute ${JSON.stringify(shape)} ${perm} ${dtype}`;
        const got = bothWidths(() => native.permute(cudaAs(x, dtype), perm), what);
        expect(Array.from(values(got)), what).toEqual(Array.from(values(native.permute(x, perm))));
      }
      // rows of 6 or 8 elements: copies in words of 2 to 16 bytes
      for (const shape of [[4, 10, 6], [4, 10, 8]]) {
        for (const [axis, start, end] of [[1, 2, 7], [2, 1, 5], [2, 0, 2], [0, 1, 3]] as const) {
          const x = make(shape);
          const what = `slice ${JSON.stringify(shape)} axis ${axis} [${start}, ${end}) ${dtype}`;
          const got = bothWidths(() => native.slice(cudaAs(x, dtype), axis, start, end), what);
          const want = native.slice(x, axis, start, end);
          expect(Array.from(values(got)), what).toEqual(Array.from(values(want)));
          if (dtype !== 'int32') {
            const gb = bothWidths(() => native.sliceBackward(cudaAs(want, dtype), shape, axis, start), `${what} backward`);
            expect(Array.from(values(gb)), what).toEqual(Array.from(values(native.sliceBackward(want, shape, axis, start))));
          }
        }
      }
      const parts = [make([4, 3, 6]), make([4, 5, 6])];
      const cat = bothWidths(() => native.concat(parts.map((p) => cudaAs(p, dtype)), 1), `concat ${dtype}`);
      expect(Array.from(values(cat))).toEqual(Array.from(values(native.concat(parts, 1))));
    }
  });

  it('patchify / unpatchify', () => {
    let seed = 300;
    for (const dtype of FLOAT_DTYPES) {
      const img = roundTo(r([2, 3, 12, 8], seed++), dtype);
      const p = bothWidths(() => native.patchify(cudaAs(img, dtype), 4), `patchify ${dtype}`);
      expect(Array.from(values(p))).toEqual(Array.from(values(native.patchify(img, 4))));
      const g = roundTo(r(p.shape, seed++), dtype);
      const u = bothWidths(() => native.unpatchify(cudaAs(g, dtype), [2, 3, 12, 8], 4), `unpatchify ${dtype}`);
      expect(Array.from(values(u))).toEqual(Array.from(values(native.unpatchify(g, [2, 3, 12, 8], 4))));
    }
  });

  // Every call site reads the switch (a misspelt value is refused there), so none of the 64-bit runs
  // above was the 32-bit kernel again; and the device keeps working.
  it('a misspelt VITRIM_CUDA_INDEX64 is an ArgumentError at every call site', () => {
    const x = cudaAs(r([3, 4], 400), 'float32');
    const img = cudaAs(r([1, 3, 8, 8], 401), 'float32');
    const calls: [string, () => unknown][] = [
      ['binary', () => native.binary('add', x, x)],
      ['reduce', () => native.reduce('sum', x, [1], false)],
      ['permute', () => native.permute(x, [1, 0])],
      ['slice', () => native.slice(x, 1, 1, 3)],
      ['sliceBackward', () => native.sliceBackward(native.slice(x, 1, 1, 3), [3, 4], 1, 1)],
      ['concat', () => native.concat([x, x], 1)],
      ['patchify', () => native.patchify(img, 4)],
      ['unpatchify', () => native.unpatchify(native.patchify(img, 4), [1, 3, 8, 8], 4)],
    ];
    for (const [name, call] of calls) {
      call(); // valid without the switch (sliceBackward / unpatchify build their input first)
      const msg = withEnv('VITRIM_CUDA_INDEX64', 'yes', () => expectCode(call, 'ERR_VITRIM_ARGUMENT'));
      expect(msg, name).toContain('VITRIM_CUDA_INDEX64');
    }
    expectRel(native.binary('add', x, x), native.binary('add', r([3, 4], 400), r([3, 4], 400)), TOL.float32, 'after');
  });
});
