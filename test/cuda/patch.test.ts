// patchify / unpatchify on CUDA (native/cuda/patch.cu) vs the CPU op on fresh random inputs, float32
// and bfloat16: both are pure index shuffles, so the results must be bit-identical to the CPU's
// (compared exactly); ViT shapes, odd channel counts and patch sizes, p = 1, the round trip, empty
// batches and bad input. Skipped where no GPU is visible.
import { expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { expectCode, nt, numel, randn } from '../helpers.js';
import { FLOAT_DTYPES, cudaAs, describeCuda, expectRel, roundTo } from './helpers.js';

const r = (shape: number[], seed: number) => nt(randn(shape, seed), shape);

// [image shape, p]
const CASES: [number[], number][] = [
  [[1, 1, 1, 1], 1],
  [[2, 3, 32, 32], 16],
  [[8, 3, 224, 224], 16],
  [[3, 5, 12, 20], 4],
  [[2, 3, 12, 18], 3],
  [[1, 7, 9, 6], 3],
  [[2, 2, 5, 7], 1],
];

describeCuda('cuda patchify', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`patchify, unpatchify and the round trip ${dtype} are exact`, () => {
      CASES.forEach(([shape, p], i) => {
        const [B, C, H, W] = shape;
        const what = `${JSON.stringify(shape)} p=${p} ${dtype}`;
        const x = roundTo(r(shape, 1200 + 10 * i), dtype);
        const xc = cudaAs(x, dtype);
        const y = native.patchify(x, p);
        const yc = native.patchify(xc, p);
        expect(yc.device).toBe('cuda');
        expect(yc.dtype).toBe(dtype);
        expect(yc.shape).toEqual([B, (H / p) * (W / p), C * p * p]);
        expectRel(yc, y, 0, `${what} patchify`);
        const g = roundTo(r(y.shape, 1201 + 10 * i), dtype);
        const gx = native.unpatchify(g, shape, p);
        const gxc = native.unpatchify(cudaAs(g, dtype), shape, p);
        expect(gxc.dtype).toBe(dtype);
        expect(gxc.shape).toEqual(shape);
        expectRel(gxc, gx, 0, `${what} unpatchify`);
        expect(Array.from(native.unpatchify(yc, shape, p).read())).toEqual(Array.from(xc.read()));
      });
    });
  }

  it('an empty batch gives empty results', () => {
    const x = native.toDevice(native.full([0, 3, 32, 32], 0, 'float32'), 'cuda');
    const y = native.patchify(x, 16);
    expect(y.shape).toEqual([0, 4, 768]);
    expect(native.unpatchify(y, [0, 3, 32, 32], 16).shape).toEqual([0, 3, 32, 32]);
    expect(numel(y.shape)).toBe(0);
  });

  it('rejects bad input with typed errors, then works', () => {
    const x = r([2, 3, 8, 8], 1300), xc = cudaAs(x, 'float32');
    expectCode(() => native.patchify(cudaAs(r([3, 8, 8], 1301), 'float32'), 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.patchify(xc, 3), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.patchify(xc, 0), 'ERR_VITRIM_ARGUMENT');
    const xi = native.toDevice(native.fromArray(new Int32Array(2 * 3 * 64), [2, 3, 8, 8], 'int32'), 'cuda');
    expectCode(() => native.patchify(xi, 4), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.unpatchify(cudaAs(r([2, 4, 47], 1302), 'float32'), [2, 3, 8, 8], 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(cudaAs(r([2, 4, 48], 1303), 'float32'), [2, 3, 8], 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(cudaAs(r([2, 4, 48], 1304), 'float32'), [2, 3, 8, 8], 0), 'ERR_VITRIM_ARGUMENT');
    expectRel(native.patchify(xc, 4), native.patchify(x, 4), 0, 'after errors');
  });
});
