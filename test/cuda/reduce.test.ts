/**
 * CUDA reduce (sum / mean / max over any axes, keepdim) against the CPU op on fresh random inputs.
 * Sum and mean: float32 ‖Δ‖/‖ref‖ ≤ 1e-5 (the CPU accumulates in double, CUDA in float32), bfloat16
 * against the CPU on the rounded input ≤ 1e-2. Max picks an element, so it must be EXACT in both
 * dtypes (and propagate NaN). The cases walk every kernel path of native/cuda/reduce.cu: thread per
 * output (innermost kept, or short reduced runs), warp per output, block per output, split
 * reductions with a second pass, several reduced groups, full reductions, and the edge cases.
 */
import { expect, it } from 'vitest';
import { native, type NativeTensor, type ReduceOp } from '../../lib/native.js';
import { RUN_SEED, expectCode, nt, randint, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, cudaAs, describeCuda, expectRel, roundTo, toCuda, values } from './helpers.js';

const OPS: ReduceOp[] = ['sum', 'mean', 'max'];

/** All subsets of the axes of a rank-r shape ([] = all axes). */
function subsets(r: number): number[][] {
  const out: number[][] = [];
  for (let m = 0; m < 1 << r; m++) out.push([...Array(r).keys()].filter((i) => m & (1 << i)));
  return out;
}

// [shape, axes, the path it exercises]
const CASES: [number[], number[], string][] = [
  ...subsets(3).map((ax): [number[], number[], string] => [[3, 5, 7], ax, 'small, every subset']),
  [[2, 1, 3, 1, 4], [1], 'only a size-1 axis (plain copy)'],
  [[2, 1, 3, 1, 4], [0, 2], 'size-1 dims dropped'],
  [[2, 1, 3, 1, 4], [-1, -3], 'negative axes'],
  [[2, 1, 3, 1, 4], [1, 3, 4], 'mixed size-1 and real'],
  [[16, 197, 384], [-1], 'last axis, warp per row'],
  [[16, 197, 384], [0, 1], 'leading axes: thread per column, split + second pass'],
  [[16, 197, 384], [1], 'middle axis: two kept groups, split'],
  [[16, 197, 384], [0, 2], 'two reduced groups, block per output, split'],
  [[1_000_003], [], 'full reduction, block + splits'],
  [[4, 100_003], [1], 'few long rows: block per row + splits'],
  [[100_003, 3], [0], 'innermost kept, 3 outputs, 1024 splits'],
  [[3, 100_003], [0], 'innermost kept, many outputs'],
  [[70_001, 5], [1], 'short rows: thread per output, > 65535 outputs'],
  [[5, 70_001, 2], [0, 2], 'short runs in two reduced groups'],
  [[300, 70], [1], 'warp per row, 70 long'],
  [[2, 3, 4, 5, 6, 7], [0, 2, 4], 'alternating, innermost kept'],
  [[2, 3, 4, 5, 6, 7], [1, 3, 5], 'alternating, innermost reduced'],
  [[64, 197, 384], [0, 1], 'ViT bias gradient'],
];

function shift(v: Float32Array, by: number): Float32Array {
  for (let i = 0; i < v.length; i++) v[i] += by;
  return v;
}

function exactSame(got: NativeTensor, want: NativeTensor, what: string): void {
  const g = values(got);
  const w = values(want);
  expect(g.length, what).toBe(w.length);
  for (let i = 0; i < w.length; i++) {
    if (!(g[i] === w[i] || (Number.isNaN(g[i]) && Number.isNaN(w[i])))) {
      throw new Error(`${what}: element ${i}: cuda ${g[i]} vs cpu ${w[i]} (seed ${RUN_SEED})`);
    }
  }
}

describeCuda('cuda reduce', () => {
  for (const op of OPS) {
    for (const dt of FLOAT_DTYPES) {
      it(`${op} ${dt}: every path and axis combination matches the CPU (keepdim both ways)`, () => {
        CASES.forEach(([shape, axes, path], k) => {
          const x = nt(shift(randn(shape, 900 + k), 0.25), shape);
          const xr = roundTo(x, dt);
          const xc = cudaAs(x, dt);
          for (const keep of [false, true]) {
            const what = `${op} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)} keepdim ${keep} (${path}) [${dt}]`;
            const want = native.reduce(op, xr, axes, keep);
            const got = native.reduce(op, xc, axes, keep);
            expect(got.device, what).toBe('cuda');
            expect(got.dtype, what).toBe(dt);
            expect(got.shape, what).toEqual(want.shape);
            if (op === 'max') exactSame(got, want, what);
            else expectRel(got, want, TOL[dt], `${what} seed ${RUN_SEED}`);
          }
        });
      });
    }
  }

  it('max propagates NaN like the CPU; -inf inputs are kept', () => {
    const shape = [37, 300];
    const v = randn(shape, 950);
    v[5 * 300 + 7] = NaN; // row 5 (last-axis max) and column 7 (first-axis max)
    v[300 * 36 + 299] = NaN;
    for (let j = 0; j < 300; j++) v[20 * 300 + j] = -Infinity; // row 20 is all -inf
    const x = nt(v, shape);
    for (const axes of [[1], [0], []]) {
      for (const dt of FLOAT_DTYPES) {
        exactSame(native.reduce('max', cudaAs(x, dt), axes, false), native.reduce('max', roundTo(x, dt), axes, false),
          `max NaN axes ${JSON.stringify(axes)} ${dt}`);
      }
    }
  });

  it('is deterministic: the same input gives the same bytes (split and block paths)', () => {
    for (const [shape, axes] of [[[64, 197, 384], [0, 1]], [[1_000_003], []], [[4, 100_003], [1]]] as const) {
      const x = toCuda(nt(randn([...shape], 960), [...shape]));
      for (const op of OPS) {
        const a = native.toDevice(native.reduce(op, x, [...axes], false), 'cpu').read();
        const b = native.toDevice(native.reduce(op, x, [...axes], false), 'cpu').read();
        expect(Array.from(b), `${op} ${shape}`).toEqual(Array.from(a));
      }
    }
  });

  it('edge cases: rank 0, empty reductions (sum 0, mean NaN, max error), zero outputs', () => {
    for (const dt of FLOAT_DTYPES) {
      const s = nt(randn([1], 970), []);
      for (const op of OPS) exactSame(native.reduce(op, cudaAs(s, dt), [], false), native.reduce(op, roundTo(s, dt), [], false), `rank0 ${op}`);
      const e = cudaAs(nt(new Float32Array(0), [3, 0]), dt);
      const sum = native.reduce('sum', e, [1], true);
      expect(sum.shape).toEqual([3, 1]);
      expect(Array.from(values(sum))).toEqual([0, 0, 0]);
      const mean = native.reduce('mean', e, [1], false);
      expect(mean.shape).toEqual([3]);
      expect(Array.from(values(mean)).every(Number.isNaN)).toBe(true);
      expectCode(() => native.reduce('max', e, [1], false), 'ERR_VITRIM_SHAPE');
      const z = native.reduce('sum', e, [0], false); // zero outputs
      expect(z.shape).toEqual([0]);
    }
  });

  it('bad input: axis out of range, repeated axis, int32, unknown op; then it still works', () => {
    const x = toCuda(nt(randn([3, 4], 980), [3, 4]));
    expectCode(() => native.reduce('sum', x, [2], false), 'ERR_VITRIM_INDEX');
    expectCode(() => native.reduce('sum', x, [-3], false), 'ERR_VITRIM_INDEX');
    expectCode(() => native.reduce('sum', x, [1, -1], false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.reduce('sum', toCuda(nt(randint([3, 4], 981, 5), [3, 4])), [0], false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.reduce('prod' as ReduceOp, x, [0], false), 'ERR_VITRIM_ARGUMENT');
    // 13 reduced groups alternating with 12 kept ones: beyond the CUDA kernel's 12 per role (the CPU
    // has no such limit). Filled on the device: 2^25 bf16 values.
    const shape = Array.from({ length: 25 }, () => 2);
    const axes = shape.map((_, i) => i).filter((i) => i % 2 === 0);
    const big = native.full(shape, 1.5, 'bfloat16', 'cuda');
    expectCode(() => native.reduce('sum', big, axes, false), 'ERR_VITRIM_ARGUMENT');
    big.free();
    const xc = nt(randn([3, 4], 980), [3, 4]);
    expectRel(native.reduce('mean', x, [0], false), native.reduce('mean', xc, [0], false), TOL.float32, 'after errors');
  });

  it('sumSquares: 40 tensors (two launches), float32 and bfloat16 mixed, equals the CPU; deterministic', () => {
    const sizes = Array.from({ length: 40 }, (_, i) => [1, 3, 8191, 8192, 8193, 20000, 0, 5][i % 8] + (i >= 38 ? 100000 : 0));
    const cpu = sizes.map((n, i) => roundTo(nt(randn([n], 1700 + i, 0.5), [n]), i % 3 ? 'float32' : 'bfloat16'));
    const cuda = cpu.map((x, i) => cudaAs(x, i % 3 ? 'float32' : 'bfloat16'));
    const want = native.sumSquares(cpu);
    const got = native.sumSquares(cuda);
    expect(got.device).toBe('cuda');
    expect(got.shape).toEqual([1]);
    expectRel(got, want, 1e-6, 'sum of squares'); // double accumulation on both devices
    expect(native.sumSquares(cuda).read()).toEqual(got.read());
    expect(native.sumSquares([cuda[6]]).read()[0]).toBe(0); // an empty tensor
    expectCode(() => native.sumSquares([cuda[0], cpu[1]]), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.sumSquares([native.toDevice(native.fromArray(Int32Array.of(1), [1], 'int32'), 'cuda')]), 'ERR_VITRIM_DTYPE');
  });
});
