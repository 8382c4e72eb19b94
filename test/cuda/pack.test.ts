/**
 * CUDA gatherRows / indexAddRows (native/cuda/pack.cu) against the CPU ops on the same fresh random
 * inputs, float32 and bfloat16.
 *  - gatherRows is a row copy: exactly the CPU's result on the dtype-rounded input.
 *  - indexAddRows adds one fp32 sum per element and rounds once: exactly the CPU's float32 result
 *    rounded to the dtype, untouched rows included; a bfloat16 src into a float32 dst too.
 *  - rows are validated on the device before anything is written: out of range or repeated rows give
 *    ERR_VITRIM_INDEX, dst is left unchanged, and the next call works.
 */
import { expect, it } from 'vitest';
import { native, type DType } from '../../lib/native.js';
import { expectCode, nt, randn, rng } from '../helpers.js';
import { expectExact } from '../nd_ref.js';
import { cudaAs, describeCuda, FLOAT_DTYPES, roundTo, toCuda, values } from './helpers.js';

/** R distinct rows of [0, R0) in random order. */
function distinctRows(R0: number, R: number, seed: number): Int32Array {
  const r = rng(seed);
  const p = Int32Array.from({ length: R0 }, (_, i) => i);
  for (let i = R0 - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p.slice(0, R);
}

/** R rows of [0, R0), repeats allowed (gatherRows accepts them). */
function anyRows(R0: number, R: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: R }, () => Math.floor(r() * R0));
}

// R0, R, C: odd channel counts (unit copies), 16-byte rows, ViT packing (8 x 197 tokens, 384 ch),
// R > 65535.
const CASES: [number, number, number][] = [
  [1, 1, 1],
  [5, 3, 3],
  [17, 17, 8],
  [40, 23, 17],
  [197, 98, 384],
  [8 * 197, 1000, 384],
  [70001, 70000, 2],
  [6, 0, 4],
];

function gatherBoth(R0: number, R: number, C: number, dtype: DType, s: number, rows: Int32Array) {
  const x = roundTo(nt(randn([R0, C], s), [R0, C]), dtype);
  const ri = nt(rows, [R]);
  return { want: native.gatherRows(x, ri), got: native.gatherRows(cudaAs(x, dtype), toCuda(ri)) };
}

function indexAddBoth(R0: number, R: number, C: number, dtype: DType, s: number) {
  const x = roundTo(nt(randn([R0, C], s), [R0, C]), dtype);
  const src = roundTo(nt(randn([R, C], s + 1), [R, C]), dtype);
  const rows = nt(distinctRows(R0, R, s + 2), [R]);
  const dst = cudaAs(x, dtype);
  native.indexAddRows(dst, toCuda(rows), cudaAs(src, dtype));
  const want = native.copy(x);
  native.indexAddRows(want, rows, src);
  return { got: dst, want: roundTo(want, dtype) };
}

describeCuda('cuda gatherRows', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: equals the CPU exactly (distinct and repeated rows)`, () => {
      CASES.forEach(([R0, R, C], s) => {
        for (const rows of [distinctRows(R0, R, s + 50), anyRows(R0, R, s + 60)]) {
          const { want, got } = gatherBoth(R0, R, C, dtype, s, rows);
          expect(got.device).toBe('cuda');
          expect(got.dtype).toBe(dtype);
          expect(got.shape).toEqual([R, C]);
          expectExact(values(got), values(want), `gatherRows ${dtype} ${R0},${R},${C}`);
        }
      });
    });
  }

  it('out-of-range device rows: ERR_VITRIM_INDEX naming the first bad entry, then a normal call works', () => {
    for (const dtype of FLOAT_DTYPES) {
      const x = cudaAs(nt(randn([4, 6], 1), [4, 6]), dtype);
      expect(expectCode(() => native.gatherRows(x, toCuda(nt(new Int32Array([0, 4, 7]), [3]))), 'ERR_VITRIM_INDEX'))
        .toContain('rows[1] = 4');
      expect(expectCode(() => native.gatherRows(x, toCuda(nt(new Int32Array([2, 3, -1]), [3]))), 'ERR_VITRIM_INDEX'))
        .toContain('rows[2] = -1');
      const { want, got } = gatherBoth(9, 5, 8, dtype, 2, distinctRows(9, 5, 3));
      expectExact(values(got), values(want), `gatherRows after an index error (${dtype})`);
    }
  });

  it('bad input gives typed errors', () => {
    const x = toCuda(nt(randn([4, 6], 1), [4, 6]));
    const rowsCpu = nt(new Int32Array([0, 2]), [2]);
    expectCode(() => native.gatherRows(x, rowsCpu), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.gatherRows(x, toCuda(nt([0, 1], [2]))), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gatherRows(toCuda(nt(new Int32Array(4), [2, 2])), toCuda(rowsCpu)), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gatherRows(x, toCuda(nt(new Int32Array([0, 1]), [1, 2]))), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gatherRows(toCuda(nt(randn([2, 2, 2], 1), [2, 2, 2])), toCuda(rowsCpu)), 'ERR_VITRIM_SHAPE');
    expect(native.gatherRows(x, toCuda(rowsCpu)).shape).toEqual([2, 6]);
  });
});

describeCuda('cuda indexAddRows', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`${dtype}: equals the CPU (rounded once to ${dtype}) exactly, untouched rows unchanged`, () => {
      CASES.forEach(([R0, R, C], s) => {
        const { want, got } = indexAddBoth(R0, R, C, dtype, s);
        expect(got.dtype).toBe(dtype);
        expectExact(values(got), values(want), `indexAddRows ${dtype} ${R0},${R},${C}`);
      });
    });
  }

  it('repeated or out-of-range rows: ERR_VITRIM_INDEX and dst unchanged, then a normal call works', () => {
    for (const dtype of FLOAT_DTYPES) {
      const x = cudaAs(nt(randn([6, 5], 1), [6, 5]), dtype);
      const before = values(x);
      const src = cudaAs(nt(randn([3, 5], 2), [3, 5]), dtype);
      const msg = expectCode(() => native.indexAddRows(x, toCuda(nt(new Int32Array([4, 1, 4]), [3])), src),
        'ERR_VITRIM_INDEX');
      expect(msg).toContain('row 4 appears twice');
      expectExact(values(x), before, `dst after a duplicate (${dtype})`);
      expect(expectCode(() => native.indexAddRows(x, toCuda(nt(new Int32Array([0, 6, 2]), [3])), src),
        'ERR_VITRIM_INDEX')).toContain('rows[1] = 6');
      expectCode(() => native.indexAddRows(x, toCuda(nt(new Int32Array([0, 2, -1]), [3])), src), 'ERR_VITRIM_INDEX');
      // range is reported before duplicates (the CPU's order)
      expect(expectCode(() => native.indexAddRows(x, toCuda(nt(new Int32Array([3, 3, 9]), [3])), src),
        'ERR_VITRIM_INDEX')).toContain('rows[2] = 9');
      expectExact(values(x), before, `dst after out-of-range rows (${dtype})`);
      const { want, got } = indexAddBoth(50, 20, 8, dtype, 7);
      expectExact(values(got), values(want), `indexAddRows after index errors (${dtype})`);
    }
  });

  // Rows uploaded strictly increasing and in range skip the device check (and its sync): the result
  // must be the checked path's; knowledge that no longer holds (a write() of duplicates, a range past
  // this dst) must bring the check back; rows computed on the device (nothing known) are checked.
  it('uploaded increasing rows skip the check; a write(), another dst or device-made rows bring it back', () => {
    for (const dtype of FLOAT_DTYPES) {
      const src = cudaAs(nt(randn([3, 5], 12), [3, 5]), dtype);
      const x0 = nt(randn([6, 5], 11), [6, 5]);
      const acc = native.copy(roundTo(x0, dtype));  // the CPU's float32 sums of the same values
      native.indexAddRows(acc, nt(new Int32Array([0, 2, 5]), [3]), nt(values(src), [3, 5]));
      const want = roundTo(acc, dtype);
      const run = (rows: ReturnType<typeof toCuda>) => {
        const x = cudaAs(x0, dtype);
        native.indexAddRows(x, rows, src);
        return values(x);
      };
      const up = toCuda(nt(new Int32Array([0, 2, 5]), [3]));
      expectExact(run(up), values(want), `uploaded increasing rows (${dtype})`);
      const dev = native.cast(toCuda(nt(new Float32Array([0, 2, 5]), [3])), 'int32');  // no known range
      expectExact(run(dev), values(want), `device-made rows (${dtype})`);
      const x = cudaAs(x0, dtype);
      const before = values(x);
      up.write(new Int32Array([0, 3, 3]));
      expect(expectCode(() => native.indexAddRows(x, up, src), 'ERR_VITRIM_INDEX')).toContain('row 3 appears twice');
      const past = toCuda(nt(new Int32Array([0, 2, 6]), [3]));  // increasing, but row 6 of a 6-row dst
      expect(expectCode(() => native.indexAddRows(x, past, src), 'ERR_VITRIM_INDEX')).toContain('rows[2] = 6');
      // int32 tensors whose bounds are known but not their order: full() and topk's indices
      const same = native.full([3], 1, 'int32', 'cuda');
      expect(expectCode(() => native.indexAddRows(x, same, src), 'ERR_VITRIM_INDEX')).toContain('row 1 appears twice');
      const scores = toCuda(nt(new Float32Array([0, 9, 1, 2, 3, 0, 9, 1, 2, 3]), [2, 5]));
      const [, top] = native.topk(scores, 1, true);  // [[1], [1]]: two elements, bounds [0, 4]
      expect(expectCode(() => native.indexAddRows(x, top.reshape([2]), cudaAs(nt(randn([2, 5], 13), [2, 5]), dtype)),
        'ERR_VITRIM_INDEX')).toContain('row 1 appears twice');
      expectExact(values(x), before, `dst after the refused calls (${dtype})`);
    }
  });

  // bfloat16 src into a float32 dst (packed bf16 inference adds a bf16 Linear output into the float32
  // stream): the CPU's float32 add of the same (bf16-rounded) values, bit for bit, on the vectorised
  // (C % 4 == 0) and the scalar path; the other mix is refused.
  it('bfloat16 src into float32 dst: the float32 add of the cast, exactly', () => {
    for (const [R0, R, C] of [[17, 9, 8], [40, 23, 17], [197, 98, 384]]) {
      const x = nt(randn([R0, C], 70 + C), [R0, C]);
      const src = roundTo(nt(randn([R, C], 71 + C), [R, C]), 'bfloat16');
      const rows = nt(distinctRows(R0, R, 72 + C), [R]);
      const got = toCuda(x);
      native.indexAddRows(got, toCuda(rows), cudaAs(src, 'bfloat16'));
      expect(got.dtype).toBe('float32');
      const want = native.copy(x);
      native.indexAddRows(want, rows, src);
      expectExact(values(got), values(want), `bf16 into f32 ${R0},${R},${C}`);
    }
    const xb = cudaAs(nt(randn([4, 8], 73), [4, 8]), 'bfloat16');
    expectCode(() => native.indexAddRows(xb, toCuda(nt(new Int32Array([1]), [1])), toCuda(nt(randn([1, 8], 74), [1, 8]))),
      'ERR_VITRIM_DTYPE');
  });

  it('bad input gives typed errors', () => {
    const x = toCuda(nt(randn([6, 5], 1), [6, 5]));
    const rows = toCuda(nt(new Int32Array([1, 2]), [2]));
    const src = toCuda(nt(randn([2, 5], 2), [2, 5]));
    expectCode(() => native.indexAddRows(x, nt(new Int32Array([1, 2]), [2]), src), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.indexAddRows(x, rows, nt(randn([2, 5], 2), [2, 5])), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.indexAddRows(cudaAs(nt(randn([6, 5], 1), [6, 5]), 'bfloat16'), rows, src), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.indexAddRows(x, rows, toCuda(nt(randn([2, 4], 2), [2, 4]))), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.indexAddRows(x, rows, toCuda(nt(randn([3, 5], 2), [3, 5]))), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.indexAddRows(x, toCuda(nt([1, 2], [2])), src), 'ERR_VITRIM_DTYPE');
    native.indexAddRows(x, rows, src); // still works
  });
});
