import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { absDot, dot, expectClose, expectCode, nt, randint, randn } from './helpers.js';
import { expectExact } from './nd_ref.js';

function patchifyRef(x: Float32Array, [B, C, H, W]: number[], p: number): Float32Array {
  const gh = H / p;
  const gw = W / p;
  const P = C * p * p;
  const out = new Float32Array(B * gh * gw * P);
  for (let b = 0; b < B; b++)
    for (let gy = 0; gy < gh; gy++)
      for (let gx = 0; gx < gw; gx++)
        for (let c = 0; c < C; c++)
          for (let py = 0; py < p; py++)
            for (let px = 0; px < p; px++)
              out[(b * gh * gw + gy * gw + gx) * P + (c * p + py) * p + px] =
                x[((b * C + c) * H + gy * p + py) * W + gx * p + px];
  return out;
}

/** Direct Conv2d(k=p, s=p) in float64: out[b, e, gy, gx]. */
function convRef(x: Float32Array, [B, C, H, W]: number[], w: Float32Array, bias: Float32Array, E: number, p: number) {
  const gh = H / p;
  const gw = W / p;
  const out = new Float64Array(B * E * gh * gw);
  for (let b = 0; b < B; b++)
    for (let e = 0; e < E; e++)
      for (let gy = 0; gy < gh; gy++)
        for (let gx = 0; gx < gw; gx++) {
          let s = bias[e];
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < p; ky++)
              for (let kx = 0; kx < p; kx++)
                s += w[((e * C + c) * p + ky) * p + kx] * x[((b * C + c) * H + gy * p + ky) * W + gx * p + kx];
          out[((b * E + e) * gh + gy) * gw + gx] = s;
        }
  return out;
}

const CASES: [number[], number][] = [
  [[2, 3, 8, 12], 4],
  [[1, 1, 5, 5], 1],
  [[2, 3, 6, 6], 3],
  [[1, 2, 7, 7], 7], // one patch
  [[3, 1, 4, 6], 2],
  [[2, 3, 224, 224], 16], // ViT/16 (threaded)
  [[0, 3, 4, 4], 2],
];

describe('patchify', () => {
  it('is the exact reference unfold: row-major patches, each flattened (c, py, px)', () => {
    CASES.forEach(([s, p], k) => {
      const x = randn(s, k);
      const y = native.patchify(nt(x, s), p);
      expect(y.shape).toEqual([s[0], (s[2] / p) * (s[3] / p), s[1] * p * p]);
      expectExact(y.read(), patchifyRef(x, s, p), `patchify ${JSON.stringify(s)} p=${p}`);
    });
  });

  it('followed by linear with the conv weight reshaped [E, C*p*p] equals a direct Conv2d(k=p, s=p)', () => {
    const cases: [number[], number, number][] = [
      [[2, 3, 8, 12], 4, 5],
      [[1, 3, 32, 32], 16, 24],
      [[2, 1, 6, 9], 3, 7],
    ];
    cases.forEach(([s, p, E], k) => {
      const [B, C, H, W] = s;
      const x = randn(s, 10 + k);
      const w = randn([E, C, p, p], 20 + k, 0.2);
      const bias = randn([E], 30 + k);
      const tokens = native.linearForward(native.patchify(nt(x, s), p), nt(w, [E, C * p * p]), nt(bias, [E]));
      const gh = H / p;
      const gw = W / p;
      expect(tokens.shape).toEqual([B, gh * gw, E]);
      const conv = convRef(x, s, w, bias, E, p);
      // conv [B, E, gh, gw] -> tokens [B, gh*gw, E] (timm: proj(x).flatten(2).transpose(1, 2))
      const want = new Float64Array(B * gh * gw * E);
      for (let b = 0; b < B; b++)
        for (let e = 0; e < E; e++)
          for (let l = 0; l < gh * gw; l++) want[(b * gh * gw + l) * E + e] = conv[(b * E + e) * gh * gw + l];
      expectClose(tokens.read(), want, 1e-5, `conv ${JSON.stringify(s)} p=${p}`);
    });
  });

  it('bad input gives typed errors and the op still works after', () => {
    const x = nt(randn([1, 3, 8, 8], 1), [1, 3, 8, 8]);
    expectCode(() => native.patchify(x, 3), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.patchify(nt(randn([1, 3, 8, 6], 1), [1, 3, 8, 6]), 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.patchify(nt(randn([3, 8, 8], 1), [3, 8, 8]), 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.patchify(x, 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.patchify(x, -2), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.patchify(x, 2.5), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.patchify(x, Number.NaN), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.patchify(nt(randint([1, 1, 4, 4], 1, 3), [1, 1, 4, 4]), 2), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.patchify({} as never, 2), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.patchify(nt(new Float32Array(0), [0, 1, 0, 0]), 2 ** 40), 'ERR_VITRIM_SHAPE');
    const f = nt(randn([1, 1, 4, 4], 2), [1, 1, 4, 4]);
    f.free();
    expectCode(() => native.patchify(f, 2), 'ERR_VITRIM_DISPOSED');
    expect(native.patchify(x, 4).shape).toEqual([1, 4, 48]);
  });
});

describe('unpatchify', () => {
  it('is the adjoint of patchify (<patchify(x), g> = <x, unpatchify(g)>) and its exact inverse', () => {
    CASES.forEach(([s, p], k) => {
      const x = randn(s, 40 + k);
      const L = (s[2] / p) * (s[3] / p);
      const ps = [s[0], L, s[1] * p * p];
      const g = randn(ps, 50 + k);
      const gx = native.unpatchify(nt(g, ps), s, p);
      expect(gx.shape).toEqual(s);
      const px = native.patchify(nt(x, s), p).read();
      const lhs = dot(px, g);
      const rhs = dot(x, gx.read());
      expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-9 * (1 + absDot(px, g)));
      expectExact(native.unpatchify(native.patchify(nt(x, s), p), s, p).read(), x, 'round trip');
      expectExact(native.patchify(gx, p).read(), g, 'inverse');
    });
  });

  it('bad input gives typed errors and the op still works after', () => {
    const g = nt(randn([1, 4, 48], 1), [1, 4, 48]);
    expectCode(() => native.unpatchify(g, [1, 3, 8, 8], 2), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(g, [1, 3, 8, 12], 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(g, [1, 3, 8, 9], 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(g, [3, 8, 8], 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(g, [1, 3, -8, 8], 4), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.unpatchify(g, [1, 3, 8, 8], 0), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.unpatchify(g, 'x' as never, 4), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.unpatchify(nt(randint([1, 4, 48], 1, 3), [1, 4, 48]), [1, 3, 8, 8], 4), 'ERR_VITRIM_DTYPE');
    const f = nt(randn([1, 4, 48], 2), [1, 4, 48]);
    f.free();
    expectCode(() => native.unpatchify(f, [1, 3, 8, 8], 4), 'ERR_VITRIM_DISPOSED');
    expect(native.unpatchify(g, [1, 3, 8, 8], 4).shape).toEqual([1, 3, 8, 8]);
  });
});
