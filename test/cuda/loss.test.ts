// Fused softmax cross-entropy on CUDA (native/cuda/loss.cu) vs the CPU op on fresh random inputs,
// float32 (1e-5) and bfloat16 logits (1e-2 for the bf16 gradient; loss and lse are float32 on both):
// label smoothing on and off, one class, ImageNet-size rows, more rows than a grid dimension holds,
// a confident row; out-of-range labels on the device (ERR_VITRIM_INDEX from the kernel's flag, and
// the next call works), a mismatched lse, and the other bad input. Skipped where no GPU is visible.
import { expect, it } from 'vitest';
import { native, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, randint, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, cudaAs, describeCuda, expectRel, roundTo, values } from './helpers.js';

const r = (shape: number[], seed: number, scale = 1) => nt(randn(shape, seed, scale), shape);
const labelsOf = (y: Int32Array) => nt(y, [y.length]);
const toCudaI = (t: NativeTensor) => native.toDevice(t, 'cuda');

// [R, K, smoothing]
const CASES: [number, number, number][] = [
  [1, 1, 0.1],
  [1, 7, 0.1],
  [3, 10, 0],
  [17, 3, 0.37],
  [64, 1000, 0.1],
  [256, 10, 0],
  [70000, 10, 0.1],
  [5, 3000, 0.05],
];

describeCuda('cuda cross-entropy', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`forward and backward ${dtype}, label smoothing on and off`, () => {
      CASES.forEach(([R, K, s], i) => {
        const what = `R=${R} K=${K} s=${s} ${dtype}`;
        const x = roundTo(r([R, K], 900 + 10 * i, 3), dtype);
        const y = labelsOf(randint([R], 901 + 10 * i, K));
        const [loss, lse] = native.crossEntropyForward(x, y, s);
        const xc = cudaAs(x, dtype), yc = toCudaI(y);
        const [closs, clse] = native.crossEntropyForward(xc, yc, s);
        expect(closs.shape).toEqual([]);
        expect(closs.dtype).toBe('float32');
        expect(clse.shape).toEqual([R]);
        expect(clse.dtype).toBe('float32');
        if (K === 1) expect(values(closs)[0]).toBe(0); // one class: lse = x_y, the loss is exactly 0
        else expectRel(closs, loss, 1e-5, `${what} loss`);
        expectRel(clse, lse, 1e-5, `${what} lse`);
        for (const gloss of [1, 2.5]) {
          const g = native.crossEntropyBackward(x, y, s, lse, gloss);
          const cg = native.crossEntropyBackward(xc, yc, s, clse, gloss);
          expect(cg.dtype).toBe(dtype);
          expect(cg.shape).toEqual([R, K]);
          if (K === 1) {
            // One class: p = 1 = the target, so the gradient is 0 on both devices.
            expect(Array.from(values(cg)).every((v) => v === 0)).toBe(true);
          } else {
            expectRel(cg, g, TOL[dtype], `${what} grad gloss=${gloss}`);
          }
          // gloss as a device scalar (the autograd's way: no host read) gives the same bits
          const cgt = native.crossEntropyBackward(xc, yc, s, clse, native.full([], gloss, 'float32', 'cuda'));
          expect(cgt.read(), `${what} device gloss`).toEqual(cg.read());
        }
        // The scalar loss is a fixed-order reduction: the same bits every time.
        expect(native.crossEntropyForward(xc, yc, s)[0].read()[0]).toBe(closs.read()[0]);
      });
    });
  }

  it('a confident row keeps its small gradient accurate (no 1 - p cancellation)', () => {
    const K = 10, R = 4;
    const x = randn([R, K], 950);
    const y = new Int32Array([0, 3, 9, 5]);
    for (let rr = 0; rr < R; rr++) x[rr * K + y[rr]] += 20; // p_y ≈ 1 - 1e-8
    const xt = nt(x, [R, K]), yt = labelsOf(y);
    const [, lse] = native.crossEntropyForward(xt, yt, 0);
    const [, clse] = native.crossEntropyForward(cudaAs(xt, 'float32'), toCudaI(yt), 0);
    const g = native.crossEntropyBackward(xt, yt, 0, lse, 1);
    const cg = native.crossEntropyBackward(cudaAs(xt, 'float32'), toCudaI(yt), 0, clse, 1);
    expectRel(cg, g, 1e-5, 'confident rows');
  });

  it('masked (-inf) logits without smoothing give a finite loss and zero gradient there', () => {
    const R = 4, K = 6;
    const x = randn([R, K], 955, 2);
    const y = new Int32Array([0, 2, 5, 1]);
    for (let rr = 0; rr < R; rr++) x[rr * K + ((y[rr] + 1 + rr) % K)] = -Infinity;
    for (const dtype of FLOAT_DTYPES) {
      const xt = roundTo(nt(x, [R, K]), dtype), yt = labelsOf(y);
      const [loss, lse] = native.crossEntropyForward(xt, yt, 0);
      const [closs, clse] = native.crossEntropyForward(cudaAs(xt, dtype), toCudaI(yt), 0);
      expect(Number.isFinite(values(closs)[0])).toBe(true);
      expectRel(closs, loss, 1e-5, `masked loss ${dtype}`);
      const g = native.crossEntropyBackward(xt, yt, 0, lse, 1);
      const cg = native.crossEntropyBackward(cudaAs(xt, dtype), toCudaI(yt), 0, clse, 1);
      expectRel(cg, g, TOL[dtype], `masked grad ${dtype}`);
    }
  });

  it('out-of-range labels raise ERR_VITRIM_INDEX from the device, and the next call works', () => {
    const R = 70000, K = 10;
    const x = r([R, K], 960, 2);
    const xc = cudaAs(x, 'float32');
    const good = randint([R], 961, K);
    const [loss, lse] = native.crossEntropyForward(x, labelsOf(good), 0.1);
    const [, clse] = native.crossEntropyForward(xc, toCudaI(labelsOf(good)), 0.1);
    for (const [row, bad] of [[5, -1], [2, K], [R - 1, 1 << 30]] as [number, number][]) {
      const y = Int32Array.from(good);
      y[row] = bad;
      if (row === 5) y[R - 2] = K + 3; // a later bad row too: the message names the first
      const yc = toCudaI(labelsOf(y));
      const msg = expectCode(() => native.crossEntropyForward(xc, yc, 0.1), 'ERR_VITRIM_INDEX');
      expect(msg).toContain(`labels[${row}] = ${bad}`);
      expectCode(() => native.crossEntropyBackward(xc, yc, 0.1, clse, 1), 'ERR_VITRIM_INDEX');
      // The flag was cleared: a normal call right after succeeds and is right.
      const [closs] = native.crossEntropyForward(xc, toCudaI(labelsOf(good)), 0.1);
      expectRel(closs, loss, 1e-5, `loss after a bad label at ${row}`);
    }
    const g = native.crossEntropyBackward(x, labelsOf(good), 0.1, lse, 1);
    expectRel(native.crossEntropyBackward(xc, toCudaI(labelsOf(good)), 0.1, clse, 1), g, 1e-5, 'grad after errors');
  });

  it('rejects an lse that does not belong to the logits (ERR_VITRIM_ARGUMENT), then works', () => {
    const x = r([6, 5], 970, 2), other = r([6, 5], 971, 2);
    const y = toCudaI(labelsOf(randint([6], 972, 5)));
    const xc = cudaAs(x, 'float32');
    const [, wrong] = native.crossEntropyForward(cudaAs(other, 'float32'), y, 0);
    expectCode(() => native.crossEntropyBackward(xc, y, 0, wrong, 1), 'ERR_VITRIM_ARGUMENT');
    const [, lse] = native.crossEntropyForward(xc, y, 0);
    const cg = native.crossEntropyBackward(xc, y, 0, lse, 1);
    const yh = native.toDevice(y, 'cpu');
    expectRel(cg, native.crossEntropyBackward(x, yh, 0, native.crossEntropyForward(x, yh, 0)[1], 1), 1e-5, 'after');
  });

  it('rejects bad input with typed errors, then works', () => {
    const x = r([4, 6], 980), xc = cudaAs(x, 'float32');
    const yh = labelsOf(randint([4], 981, 6)), y = toCudaI(yh);
    const [, lse] = native.crossEntropyForward(xc, y, 0);
    expectCode(() => native.crossEntropyForward(xc, yh, 0), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.crossEntropyForward(xc, cudaAs(r([4], 982), 'float32'), 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyForward(y, y, 0), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyForward(xc, toCudaI(labelsOf(new Int32Array(3))), 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(cudaAs(r([2, 2, 6], 983), 'float32'), y, 0), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyForward(xc, y, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyForward(xc, y, -0.1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyBackward(xc, y, 0, lse, NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.crossEntropyBackward(xc, y, 0, cudaAs(r([3], 984), 'float32'), 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyBackward(xc, y, 0, cudaAs(r([4], 985), 'bfloat16'), 1), 'ERR_VITRIM_DTYPE');
    // a device gloss: float32, one element, on the logits' device
    expectCode(() => native.crossEntropyBackward(xc, y, 0, lse, nt(Float32Array.of(1), [])), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.crossEntropyBackward(xc, y, 0, lse, native.full([2], 1, 'float32', 'cuda')), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.crossEntropyBackward(xc, y, 0, lse, native.full([1], 1, 'bfloat16', 'cuda')), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.crossEntropyBackward(xc, y, 0, native.toDevice(lse, 'cpu'), 1), 'ERR_VITRIM_DEVICE');
    expectRel(native.crossEntropyForward(xc, y, 0)[0], native.crossEntropyForward(x, yh, 0)[0], 1e-5, 'after errors');
  });
});
