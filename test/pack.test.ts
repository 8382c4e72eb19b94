import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { expectClose, expectCode, nt, randn, randu } from './helpers.js';

/** float64 reference: per sequence and head, softmax(scale q kᵀ) v · gate */
function refVarlen(qkv: Float32Array, cu: number[], H: number, C: number, scale: number, gate?: Float32Array): Float64Array {
  const R = cu[cu.length - 1];
  const D = C / H;
  const out = new Float64Array(R * C);
  for (let s = 0; s + 1 < cu.length; s++) {
    const [a, b] = [cu[s], cu[s + 1]];
    for (let h = 0; h < H; h++) {
      const g = gate ? gate[s * H + h] : 1;
      for (let i = a; i < b; i++) {
        const sc: number[] = [];
        for (let j = a; j < b; j++) {
          let d = 0;
          for (let e = 0; e < D; e++) d += qkv[i * 3 * C + h * D + e] * qkv[j * 3 * C + C + h * D + e];
          sc.push(d * scale);
        }
        const mx = Math.max(...sc);
        const ex = sc.map((v) => Math.exp(v - mx));
        const z = ex.reduce((p, q) => p + q, 0);
        for (let e = 0; e < D; e++) {
          let acc = 0;
          for (let j = a; j < b; j++) acc += (ex[j - a] / z) * qkv[j * 3 * C + 2 * C + h * D + e];
          out[i * C + h * D + e] = g * acc;
        }
      }
    }
  }
  return out;
}

describe('packed rows and varlen attention', () => {
  it('gatherRows / indexAddRows move exactly the listed rows', () => {
    const x = randn([10, 7], 1);
    const rows = new Int32Array([3, 0, 9, 4]);
    const g = native.gatherRows(nt(x, [10, 7]), nt(rows, [4])).read();
    for (let i = 0; i < 4; i++) for (let c = 0; c < 7; c++) expect(g[i * 7 + c]).toBe(x[rows[i] * 7 + c]);
    const dst = nt(x, [10, 7]);
    const src = randn([4, 7], 2);
    native.indexAddRows(dst, nt(rows, [4]), nt(src, [4, 7]));
    const d = dst.read();
    const want = Float32Array.from(x);
    rows.forEach((r, i) => { for (let c = 0; c < 7; c++) want[r * 7 + c] += src[i * 7 + c]; });
    expect(Array.from(d)).toEqual(Array.from(want));
  });

  it('varlen attention matches the float64 reference, with gates and skipped heads', () => {
    for (const [lens, H, C] of [[[5, 1, 17, 9], 4, 32], [[197], 3, 48], [[0, 3], 2, 8]] as [number[], number, number][]) {
      const cu = [0];
      for (const n of lens) cu.push(cu[cu.length - 1] + n);
      const R = cu[cu.length - 1];
      const qkv = randn([R, 3 * C], R + H);
      const gate = randu([lens.length, H], 3, 0.2, 1.5);
      gate[0] = 0; // first sequence: head 0 skipped
      const scale = (C / H) ** -0.5;
      const out = native.attentionVarlen(nt(qkv, [R, 3 * C]), nt(Int32Array.from(cu), [cu.length]), H, scale, nt(gate, [lens.length, H])).read();
      expectClose(out, refVarlen(qkv, cu, H, C, scale, gate), 1e-5, `varlen ${lens}`);
      const plain = native.attentionVarlen(nt(qkv, [R, 3 * C]), nt(Int32Array.from(cu), [cu.length]), H, scale, null).read();
      expectClose(plain, refVarlen(qkv, cu, H, C, scale), 1e-5, `varlen no gate ${lens}`);
      if (lens[0] > 0) for (let i = 0; i < lens[0]; i++) for (let e = 0; e < C / H; e++) expect(out[i * C + e]).toBe(0);
    }
  });

  it('varlen equals the dense kernel on one full sequence per sample', () => {
    const [B, N, H, C] = [3, 11, 2, 16];
    const qkv = randn([B, N, 3 * C], 9);
    const dense = native.attentionForward(nt(qkv, [B, N, 3 * C]), H, 0.3, null, null, 0)[0].read();
    const cu = Int32Array.from([0, N, 2 * N, 3 * N]);
    const v = native.attentionVarlen(nt(qkv, [B * N, 3 * C]), nt(cu, [4]), H, 0.3, null).read();
    expectClose(v, dense, 1e-6, 'varlen vs dense');
  });

  it('rejects bad input with typed errors', () => {
    const x = nt(randn([4, 6], 1), [4, 6]);
    expectCode(() => native.gatherRows(x, nt(new Int32Array([0, 4]), [2])), 'ERR_VITRIM_INDEX');
    expectCode(() => native.gatherRows(x, nt(new Int32Array([-1]), [1])), 'ERR_VITRIM_INDEX');
    expectCode(() => native.gatherRows(x, nt([0, 1], [2])), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.indexAddRows(x, nt(new Int32Array([1, 1]), [2]), nt(randn([2, 6], 2), [2, 6])), 'ERR_VITRIM_INDEX');
    expectCode(() => native.indexAddRows(x, nt(new Int32Array([1, 2]), [2]), nt(randn([2, 5], 2), [2, 5])), 'ERR_VITRIM_SHAPE');
    const q = nt(randn([5, 24], 3), [5, 24]);
    expectCode(() => native.attentionVarlen(q, nt(new Int32Array([1, 5]), [2]), 2, 1, null), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionVarlen(q, nt(new Int32Array([0, 3, 2, 5]), [4]), 2, 1, null), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.attentionVarlen(q, nt(new Int32Array([0, 4]), [2]), 2, 1, null), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionVarlen(q, nt(new Int32Array([0, 5]), [2]), 5, 1, null), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionVarlen(q, nt(new Int32Array([0, 5]), [2]), 2, 1, nt([1, 1, 1], [1, 3])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.attentionVarlen(q, nt(new Int32Array([0, 5]), [2]), 0, 1, null), 'ERR_VITRIM_ARGUMENT');
    x.free();
    expectCode(() => native.gatherRows(x, nt(new Int32Array([0]), [1])), 'ERR_VITRIM_DISPOSED');
    expect(native.gatherRows(nt(randn([2, 2], 4), [2, 2]), nt(new Int32Array([1]), [1])).shape).toEqual([1, 2]);
  });
});
