/**
 * CUDA elementwise family (binary with broadcasting, unary and its backward, affine, step, sum_to)
 * against the CPU ops on fresh random inputs. float32: the CUDA op on the data, ‖Δ‖/‖ref‖ ≤ 1e-5;
 * bfloat16: the CUDA op on bf16 data against the CPU float32 op on the same values rounded to bf16,
 * ≤ 1e-2. Shapes cover every kernel path (same shape, bias row, per-row scalar, scalars, outer
 * products, the general strided kernel, odd lengths that miss the 4-wide packs) and ViT sizes.
 * binary also takes float32 with bfloat16 (the promotion in the kernel): float32 out, bit-identical
 * to casting the bfloat16 operand first, on every broadcasting path and in both orders; through
 * ops and autograd, the forward and every gradient equal the explicit cast's bit for bit.
 */
import { expect, it } from 'vitest';
import { native, type BinaryOp, type NativeTensor, type UnaryOp } from '../../lib/native.js';
import { RUN_SEED, expectCloseSum, expectCode, nt, randint, randn, randu, rng } from '../helpers.js';
import * as ops from '../../lib/ops/index.js';
import { tensor, tidy } from '../../lib/tensor.js';
import { FLOAT_DTYPES, TOL, bits, cudaAs, describeCuda, expectRel, roundTo, toCuda, values } from './helpers.js';

const UNARY: UnaryOp[] = ['neg', 'abs', 'sqr', 'sqrt', 'exp', 'log', 'sigmoid', 'tanh', 'relu', 'gelu'];
const BINARY: BinaryOp[] = ['add', 'sub', 'mul', 'div'];

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A cpu float32 tensor of random data; for a divisor, values away from 0 with random signs. */
function rand(shape: number[], seed: number, divisor = false): NativeTensor {
  if (!divisor) return nt(randn(shape, seed), shape);
  const r = rng(seed);
  const v = randu(shape, seed + 1, 0.5, 2);
  for (let i = 0; i < v.length; i++) if (r() < 0.5) v[i] = -v[i];
  return nt(v, shape);
}

/** Inputs in each unary op's domain (positive for sqrt/log), spread over the interesting range. */
function unaryInput(op: UnaryOp, shape: number[], seed: number): NativeTensor {
  if (op === 'sqrt' || op === 'log') return nt(randu(shape, seed, 0.05, 6), shape);
  const v = randn(shape, seed, 2.5);
  if (v.length) v[0] = Math.abs(v[0]) + 0.1; // relu of a single element must not be all zeros
  return nt(v, shape);
}

/** CUDA result vs CPU reference: device, shape, dtype and ‖Δ‖/‖ref‖ ≤ TOL[dt]. */
function check(got: NativeTensor, want: NativeTensor, dt: 'float32' | 'bfloat16', what: string): void {
  expect(got.device, what).toBe('cuda');
  expect(got.dtype, what).toBe(dt);
  expect(got.shape, what).toEqual(want.shape);
  if (numel(want.shape) === 0) return;
  expectRel(got, want, TOL[dt], `${what} [${dt}, seed ${RUN_SEED}]`);
}

// [a shape, b shape, which path it exercises]
const BROADCAST: [number[], number[], string][] = [
  [[593], [593], 'same shape, odd length (scalar kernel)'],
  [[4, 148], [4, 148], 'same shape, packed'],
  [[8, 197, 384], [384], 'bias row [..,C] op [C] (packed)'],
  [[384], [8, 197, 384], 'row vector on the left'],
  [[8, 197, 384], [8, 197, 1], 'per-row scalar'],
  [[8, 197, 384], [1, 197, 384], 'repeat over the batch'],
  [[], [5, 7], 'scalar op tensor'],
  [[5, 7], [], 'tensor op scalar'],
  [[5, 7], [1], 'tensor op [1]'],
  [[17, 1], [1, 33], 'outer product'],
  [[3, 1, 5], [3, 4, 5], 'broadcast in the middle (3 strided dims)'],
  [[2, 1, 3, 1, 5], [4, 1, 6, 1], 'both sides broadcast (general kernel)'],
  [[2, 1, 2, 1, 2, 1, 3], [1, 2, 1, 2, 1, 2, 1], '7 alternating dims'],
  [[70_001, 3], [3], 'long rows of 3 (scalar kernel, > 65535 rows)'],
  [[1, 1, 1], [1], 'all size 1'],
  [[0, 3], [3], 'zero-size'],
  [[300_000, 8], [300_000, 1], 'per-row scalar, 2.4M elements'],
];

describeCuda('cuda binary', () => {
  for (const op of BINARY) {
    for (const dt of FLOAT_DTYPES) {
      it(`${op} ${dt}: every broadcasting path matches the CPU`, () => {
        BROADCAST.forEach(([sa, sb, what], k) => {
          // A one-element sum or difference can cancel exactly once rounded to bfloat16 (seed 4455:
          // add [1,1,1] [1]); then the reference is zero and the relative check says nothing: redraw.
          let a!: NativeTensor, b!: NativeTensor, want!: NativeTensor;
          for (let draw = 0; draw < 8; draw++) {
            a = rand(sa, 100 + k + 1000 * draw);
            b = rand(sb, 200 + k + 1000 * draw, op === 'div');
            want = native.binary(op, roundTo(a, dt), roundTo(b, dt));
            if (!(native.cast(want, 'float32').read() as Float32Array).every((v) => v === 0)) break;
          }
          check(native.binary(op, cudaAs(a, dt), cudaAs(b, dt)), want, dt, `${op} ${JSON.stringify(sa)} ${JSON.stringify(sb)} (${what})`);
        });
      });
    }
  }

  it('float32 results are bit-identical to the CPU (a single rounding either way)', () => {
    const a = rand([8, 197, 384], 301);
    const b = rand([384], 302, true);
    for (const op of BINARY) {
      const got = values(native.binary(op, toCuda(a), toCuda(b)));
      const want = native.binary(op, a, b).read() as Float32Array;
      let diff = 0;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) diff++;
      expect(diff, op).toBe(0);
    }
  });

  it('float32 with bfloat16 (either order) gives float32, bit-identical to casting the bfloat16 operand first', () => {
    for (const op of BINARY)
      BROADCAST.forEach(([sa, sb, what], k) => {
        const a = toCuda(rand(sa, 400 + k));
        const b = cudaAs(rand(sb, 500 + k, op === 'div'), 'bfloat16');
        const bf = native.cast(b, 'float32');
        for (const [x, y, xf, yf] of [[a, b, a, bf], [b, a, bf, a]] as const) {
          const got = native.binary(op, x, y);
          expect(got.dtype).toBe('float32');
          const want = native.binary(op, xf, yf);
          const g = values(got), w = values(want);
          let diff = 0;
          for (let i = 0; i < w.length; i++) if (!Object.is(g[i], w[i])) diff++;
          expect(diff, `${op} ${x === a ? 'f32 . bf16' : 'bf16 . f32'} ${JSON.stringify(sa)} ${JSON.stringify(sb)} (${what})`).toBe(0);
        }
      });
  });

  // ops.add & co. on cuda promote in the kernel also when recording a gradient: forward bits and
  // every gradient (the bf16 operand's reaches its float32 leaf through a cast) must equal those of
  // the explicit-cast composition, for each op, both orders and a broadcast operand.
  it('ops with float32 and bfloat16 under autograd: the bits of the explicit cast, forward and backward', () => {
    const cases: [number[], number[]][] = [[[4, 7, 6], [4, 7, 6]], [[4, 7, 6], [6]], [[5], [3, 5]]];
    for (const op of BINARY) {
      cases.forEach(([sa, sb], ci) => {
        for (const bf16First of [false, true]) {
          const seed = RUN_SEED + 300 + 10 * ci;
          const run = (explicit: boolean) => tidy(() => {
            const a = tensor(randn(sa, seed), sa, { device: 'cuda', requiresGrad: true });
            const bData = op === 'div' ? rand(sb, seed + 1, true).read() as Float32Array : randn(sb, seed + 1);
            const b = tensor(bData, sb, { device: 'cuda', requiresGrad: true });
            const bl = ops.cast(b, 'bfloat16');
            const bu = explicit ? ops.cast(bl, 'float32') : bl;
            const y = bf16First ? ops[op](bu, a) : ops[op](a, bu);
            expect(y.dtype).toBe('float32');
            const r = tensor(randn(y.shape as number[], seed + 2), y.shape as number[], { device: 'cuda' });
            ops.sum(ops.mul(y, r)).backward();
            return [y, a.grad!, b.grad!].map((t) => Array.from(bits(t.handle)));
          });
          const what = `${op} ${bf16First ? 'bf16 first' : 'f32 first'} [${sa}] [${sb}]`;
          expect(run(false), what).toEqual(run(true));
        }
      });
    }
  });

  it('bad input: incompatible shapes, int32, mixed devices, too many strided dims; then works', () => {
    const a = toCuda(rand([3, 4], 311));
    expectCode(() => native.binary('add', a, toCuda(rand([5], 312))), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.binary('add', a, toCuda(nt(randint([3, 4], 313, 9), [3, 4]))), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.binary('mul', a, toCuda(nt(randint([4], 314, 9), [4]))), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.binary('add', a, rand([4], 315)), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.binary('add', rand([4], 315), a), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.binary('pow' as BinaryOp, a, a), 'ERR_VITRIM_ARGUMENT');
    // 13 alternating broadcast dims: the CPU handles it, the CUDA kernel's struct holds 12.
    const sa = Array.from({ length: 13 }, (_, i) => (i % 2 ? 2 : 1));
    const sb = Array.from({ length: 13 }, (_, i) => (i % 2 ? 1 : 2));
    expectCode(() => native.binary('add', toCuda(rand(sa, 316)), toCuda(rand(sb, 317))), 'ERR_VITRIM_ARGUMENT');
    const b = rand([4], 318);
    check(native.binary('sub', a, toCuda(b)), native.binary('sub', rand([3, 4], 311), b), 'float32', 'after errors');
  });
});

describeCuda('cuda unary', () => {
  for (const op of UNARY) {
    for (const dt of FLOAT_DTYPES) {
      it(`${op} ${dt} matches the CPU (odd sizes and a ViT activation)`, () => {
        for (const [k, shape] of [[1], [3], [197], [2, 197, 1536], [1, 70_001]].entries()) {
          const x = unaryInput(op, shape, 400 + k);
          check(native.unary(op, cudaAs(x, dt)), native.unary(op, roundTo(x, dt)), dt, `${op} ${JSON.stringify(shape)}`);
        }
      });
    }
  }

  it('edge values (NaN, ±inf, ±0, denormals, overflow, far tails) behave as on the CPU, per element', () => {
    const edge = [NaN, Infinity, -Infinity, 0, -0, -1, 1, 1e-40, -1e-40, 100, -100, 88.7, -88.7, 89, -104, 1e30, -1e30,
      13.5, -13.5, 20, -20, -7, 7, 0.5, -0.5];
    const x = nt(new Float32Array(edge), [edge.length]);
    for (const op of UNARY) {
      const got = values(native.unary(op, toCuda(x)));
      const want = native.unary(op, x).read() as Float32Array;
      for (let i = 0; i < edge.length; i++) {
        const g = got[i];
        const w = want[i];
        const ok = (Number.isNaN(g) && Number.isNaN(w)) || g === w || Math.abs(g - w) <= 1e-5 * Math.abs(w) + 1e-30;
        if (!ok) throw new Error(`${op}(${edge[i]}): cuda ${g}, cpu ${w}`);
      }
    }
  });

  it('int32 and an unknown op are rejected; a cpu tensor runs on the cpu', () => {
    expectCode(() => native.unary('exp', toCuda(nt(randint([4], 410, 5), [4]))), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.unary('cube' as UnaryOp, toCuda(rand([4], 411))), 'ERR_VITRIM_ARGUMENT');
    expect(native.unary('exp', rand([4], 412)).device).toBe('cpu');
  });
});

describeCuda('cuda unary_backward', () => {
  for (const op of UNARY) {
    for (const dt of FLOAT_DTYPES) {
      it(`${op} ${dt} matches the CPU gradient`, () => {
        for (const [k, shape] of [[3], [197], [8, 197, 384], [1, 70_001]].entries()) {
          const x = roundTo(unaryInput(op, shape, 500 + k), dt);
          const y = roundTo(native.unary(op, x), dt); // what autograd saved, in the op's dtype
          const gy = roundTo(rand(shape, 600 + k), dt);
          const want = native.unaryBackward(op, x, y, gy);
          const got = native.unaryBackward(op, cudaAs(x, dt), cudaAs(y, dt), cudaAs(gy, dt));
          check(got, want, dt, `${op}' ${JSON.stringify(shape)}`);
        }
      });
    }
  }

  it('bad input: shapes differ, dtypes differ, devices differ', () => {
    const x = toCuda(rand([3, 4], 610));
    expectCode(() => native.unaryBackward('tanh', x, x, toCuda(rand([4, 3], 611))), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unaryBackward('tanh', x, cudaAs(rand([3, 4], 612), 'bfloat16'), x), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.unaryBackward('tanh', x, x, rand([3, 4], 613)), 'ERR_VITRIM_DEVICE');
    const g = rand([3, 4], 614);
    const xc = rand([3, 4], 610);
    check(native.unaryBackward('relu', x, x, toCuda(g)), native.unaryBackward('relu', xc, xc, g), 'float32', 'after');
  });
});

describeCuda('cuda affine and step', () => {
  for (const dt of FLOAT_DTYPES) {
    it(`affine ${dt} matches the CPU for random alpha/beta`, () => {
      const r = rng(700);
      for (const [k, shape] of [[1], [3], [197], [8, 197, 384], [70_001]].entries()) {
        const alpha = (r() - 0.5) * 8;
        const beta = (r() - 0.5) * 4;
        const x = rand(shape, 701 + k);
        check(native.affine(cudaAs(x, dt), alpha, beta), native.affine(roundTo(x, dt), alpha, beta), dt,
          `affine ${alpha} ${beta} ${JSON.stringify(shape)}`);
      }
    });

    it(`step ${dt} gives exactly the CPU mask (ties, a non-float threshold), in the input dtype`, () => {
      const r = rng(710);
      for (const [k, shape] of [[1], [3], [197], [8, 197, 384], [70_001]].entries()) {
        const th = (r() - 0.5) * 2;
        const xv = randn(shape, 711 + k);
        xv[0] = Math.fround(th); // a near-tie: decided in double on both devices
        const x = roundTo(nt(xv, shape), dt);
        const got = native.step(cudaAs(x, dt), th);
        expect(got.dtype).toBe(dt);
        const g = values(got);
        const w = native.step(x, th).read() as Float32Array;
        let ones = 0;
        for (let i = 0; i < w.length; i++) {
          if (g[i] !== w[i]) throw new Error(`step ${dt} ${shape}: element ${i} (x=${values(x)[i]}, th=${th})`);
          ones += w[i];
        }
        if (w.length > 100) expect(ones).toBeGreaterThan(0);
      }
      const t = nt(new Float32Array([0.5, Math.fround(0.1), 0.25]), [3]);
      expect(Array.from(values(native.step(cudaAs(t, dt), 0.5)))).toEqual([0, 0, 0]);
      expect(Array.from(values(native.step(toCuda(t), 0.1)))).toEqual([1, 1, 1]); // fround(0.1) > 0.1
    });
  }

  it('NaN alpha/beta/threshold and int32 are rejected', () => {
    const x = toCuda(rand([4], 720));
    expectCode(() => native.affine(x, NaN, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.affine(x, 1, NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.step(x, NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.affine(toCuda(nt(randint([4], 721, 3), [4])), 1, 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.step(toCuda(nt(randint([4], 722, 3), [4])), 1), 'ERR_VITRIM_DTYPE');
  });
});

// [x shape, target shape]
const SUM_TO: [number[], number[]][] = [
  [[8, 197, 384], [384]],
  [[8, 197, 384], [1, 384]],
  [[8, 197, 384], [197, 1]],
  [[8, 197, 384], [8, 1, 384]],
  [[8, 197, 384], []],
  [[8, 197, 384], [1, 1, 1]],
  [[64 * 197, 384], [384]], // a ViT bias gradient
  [[100_003, 3], [3]],
  [[3, 100_003], [3, 1]],
  [[5, 70_001, 2], [70_001, 1]],
  [[3, 5, 7], [3, 5, 7]], // nothing to reduce: a copy
  [[1, 5, 1], [5, 1]],
  [[4, 5, 1], [5, 1]],
];

describeCuda('cuda sum_to', () => {
  for (const dt of FLOAT_DTYPES) {
    it(`${dt}: sums down to every target like the CPU`, () => {
      SUM_TO.forEach(([xs, ts], k) => {
        const x = nt(randn(xs, 800 + k, 1), xs);
        const got = native.sumTo(cudaAs(x, dt), ts);
        const want = native.sumTo(roundTo(x, dt), ts);
        const what = `sumTo ${JSON.stringify(xs)} -> ${JSON.stringify(ts)}`;
        if (dt === 'bfloat16') {
          check(got, want, dt, what);
          return;
        }
        // A sum of random signs cancels: the result is about √n·σ while each summation order's
        // rounding is about u·Σ|x| (605k values to a scalar came out 2.8e-5 relative at one seed).
        // float32 is held to 1e-5 relative plus 16 roundings of the sums of |x|.
        expect(got.device).toBe('cuda');
        expect(got.shape).toEqual(want.shape);
        expectCloseSum(values(got), values(want), values(native.sumTo(native.unary('abs', roundTo(x, dt)), ts)).map((v) => 4 * v),
          TOL.float32, `${what} [float32, seed ${RUN_SEED}]`);
      });
    });
  }

  it('is deterministic (same bytes twice) and returns fresh storage when nothing is reduced', () => {
    const x = toCuda(rand([64 * 197, 384], 820));
    for (const dt of FLOAT_DTYPES) {
      const xd = dt === 'float32' ? x : native.cast(x, dt);
      const a = native.toDevice(native.sumTo(xd, [384]), 'cpu').read();
      const b = native.toDevice(native.sumTo(xd, [384]), 'cpu').read();
      expect(a.length).toBe(384);
      expect(Array.from(b)).toEqual(Array.from(a));
    }
    const y = toCuda(rand([3, 5], 821));
    const c = native.sumTo(y, [3, 5]);
    expect(c.sameStorage(y)).toBe(false);
  });

  it('bad targets are ERR_VITRIM_SHAPE, like the CPU', () => {
    const x = toCuda(rand([3, 4], 830));
    expectCode(() => native.sumTo(x, [5]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(x, [2, 3, 4]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(x, [-1]), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.sumTo(toCuda(nt(randint([3, 4], 831, 3), [3, 4])), [4]), 'ERR_VITRIM_DTYPE');
  });
});
