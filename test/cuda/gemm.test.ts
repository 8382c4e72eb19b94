// cuBLASLt GEMMs on CUDA vs the CPU GEMMs, on fresh random inputs: matmul (batched, shared b,
// transposes), linear forward / fused (bias, GELU, residual) / backward, float32 (TF32 off, 1e-5)
// and bfloat16 (1e-2); bf16 operands with a float32 residual (float32 output; fused and fallback);
// the opt-in 3xTF32 float32 and bf16 mma tensor-core linears. Skipped where no GPU is visible.
// lt_gemm's fallbacks under the emulated cuBLASLt's knobs: gemm-lt.test.ts.
import { beforeAll, expect, it } from 'vitest';
import { withCublasLt, withEnv } from '../../bench/env.js';
import { native, type NativeTensor } from '../../lib/native.js';
import { RUN_SEED, expectCode, nt, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, cudaAs, describeCuda, expectRel, roundTo } from './helpers.js';

const r = (shape: number[], seed: number, scale = 1) => nt(randn(shape, RUN_SEED + seed, scale), shape);
// The cuBLASLt path, named rather than assumed to be the default (which a GPU run may flip, and a
// whole test run may set through the environment).
const lt = withCublasLt;

describeCuda('cuda gemm', () => {
  beforeAll(() => native.setAllowTf32(false));

  for (const dtype of FLOAT_DTYPES) {
    it(`matmul ${dtype}: batched, shared b, every transpose`, () => {
      const cases: [number[], number[], boolean, boolean][] = [
        [[5, 7], [7, 3], false, false],
        [[2, 3, 17, 33], [2, 3, 33, 9], false, false],
        [[4, 197, 64], [4, 197, 64], false, true], // q k^T
        [[4, 64, 197], [4, 64, 31], true, false],
        [[6, 19, 8], [8, 21], false, false], // shared b, folded into one GEMM
        [[6, 8, 19], [21, 8], true, true], // shared b with transA: batch stride 0
        [[1, 1], [1, 1], false, false],
      ];
      cases.forEach(([as, bs, ta, tb], i) => {
        const a = roundTo(r(as, 10 * i + 1), dtype), b = roundTo(r(bs, 10 * i + 2), dtype);
        const want = native.matmul(a, b, ta, tb);
        const got = native.matmul(cudaAs(a, dtype), cudaAs(b, dtype), ta, tb);
        expect(got.device).toBe('cuda');
        expect(got.dtype).toBe(dtype);
        expect(got.shape).toEqual(want.shape);
        expectRel(got, want, TOL[dtype], `matmul ${as}x${bs} ${ta}${tb}`);
      });
    });

    it(`linear forward and fused epilogues ${dtype}`, () => {
      for (const [lead, K, N] of [[[3], 5, 7], [[8, 197], 384, 1152], [[2, 17], 64, 33]] as [number[], number, number][]) {
        const x = roundTo(r([...lead, K], 1), dtype), w = roundTo(r([N, K], 2, 0.2), dtype);
        const b = roundTo(r([N], 3), dtype), res = roundTo(r([...lead, N], 4), dtype);
        const [xc, wc, bc, rc] = [x, w, b, res].map((t) => cudaAs(t, dtype));
        expectRel(native.linearForward(xc, wc, bc), native.linearForward(x, w, b), TOL[dtype], 'linear');
        expectRel(native.linearForward(xc, wc, null), native.linearForward(x, w, null), TOL[dtype], 'linear no bias');
        for (const act of ['none', 'gelu'] as const) {
          for (const withRes of [false, true]) {
            const want = native.linearFused(x, w, b, act, withRes ? res : null);
            const got = native.linearFused(xc, wc, bc, act, withRes ? rc : null);
            expectRel(got, want, TOL[dtype], `linearFused ${act} residual=${withRes} ${lead},${K},${N}`);
          }
        }
      }
    });

    it(`linear backward ${dtype}`, () => {
      for (const [M, K, N] of [[1, 3, 2], [197 * 4, 384, 1536], [70000, 8, 5]]) {
        const x = roundTo(r([M, K], 5), dtype), w = roundTo(r([N, K], 6, 0.3), dtype), gy = roundTo(r([M, N], 7), dtype);
        const [gx, gw, gb] = native.linearBackward(gy, x, w, true);
        const [cx, cw, cb] = native.linearBackward(cudaAs(gy, dtype), cudaAs(x, dtype), cudaAs(w, dtype), true);
        expectRel(cx, gx, TOL[dtype], `gx ${M},${K},${N}`);
        expectRel(cw, gw, TOL[dtype], `gw ${M},${K},${N}`);
        expectRel(cb!, gb!, TOL[dtype], `gb ${M},${K},${N}`);
        const [, , none] = native.linearBackward(cudaAs(gy, dtype), cudaAs(x, dtype), cudaAs(w, dtype), false);
        expect(none).toBeNull();
      }
    });
  }

  // Autocast's residual layers: bf16 x and weight, float32 residual -> float32 y from one GEMM with
  // float32 C/D. The product is accumulated in fp32 and never rounded to bf16, so against the CPU's
  // float32 op on the same (bf16-representable) values it is float32-accurate; the bias may be the
  // float32 master bias or a bf16 one. With VITRIM_CUDA_LT_NO_MIXED=1 the fallback (bf16 GEMM into a
  // temporary, then a float32 pass) runs instead: autocast eager's numerics, bf16-accurate, and it
  // must differ from the fused path (else the knob tested nothing).
  it('linearFused with bf16 operands and a float32 residual: float32 y, fused and fallback', () => {
    for (const [lead, K, N] of [[[3], 5, 7], [[4, 197], 384, 384], [[2, 17], 64, 33], [[6], 0, 5]] as [number[], number, number][]) {
      const x = roundTo(r([...lead, K], 21), 'bfloat16'), w = roundTo(r([N, K], 22, 0.2), 'bfloat16');
      const res = r([...lead, N], 23);
      const [xc, wc] = [x, w].map((t) => cudaAs(t, 'bfloat16'));
      const rc = cudaAs(res, 'float32');
      for (const biasDtype of ['float32', 'bfloat16'] as const) {
        const b = roundTo(r([N], 24), biasDtype);
        const bc = cudaAs(b, biasDtype);
        for (const act of ['none', 'gelu'] as const) {
          const what = `${act} bias ${biasDtype} ${lead},${K},${N}`;
          const want = native.linearFused(x, w, b, act, res);
          const got = lt(() => native.linearFused(xc, wc, bc, act, rc));
          expect(got.dtype).toBe('float32');
          expect(got.shape).toEqual([...lead, N]);
          expectRel(got, want, TOL.float32, `fused ${what}`);
          const fb = lt(() => withEnv('VITRIM_CUDA_LT_NO_MIXED', '1', () => native.linearFused(xc, wc, bc, act, rc)));
          expect(fb.dtype).toBe('float32');
          expectRel(fb, want, TOL.bfloat16, `fallback ${what}`);
          if (K > 0 && lead[0] > 3) expect(Array.from(fb.read())).not.toEqual(Array.from(got.read()));
        }
      }
    }
    // what stays refused: a float32 residual with float32 operands and a bf16 bias, a bf16 residual
    // with float32 operands, a float32 bias without the float32 residual
    const x = cudaAs(r([4, 8], 25), 'bfloat16'), w = cudaAs(r([3, 8], 26), 'bfloat16');
    const res32 = cudaAs(r([4, 3], 27), 'float32');
    expectCode(() => native.linearFused(cudaAs(r([4, 8], 25), 'float32'), cudaAs(r([3, 8], 26), 'float32'),
      cudaAs(r([3], 28), 'bfloat16'), 'none', res32), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearFused(cudaAs(r([4, 8], 25), 'float32'), cudaAs(r([3, 8], 26), 'float32'), null, 'none',
      cudaAs(r([4, 3], 27), 'bfloat16')), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearFused(x, w, cudaAs(r([3], 28), 'float32'), 'none', null), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearFused(x, w, null, 'none', cudaAs(r([4, 4], 29), 'float32')), 'ERR_VITRIM_SHAPE');
  });

  // The 3xTF32 tensor-core linear (gemm_f32tc.cu), opt-in by VITRIM_CUDA_GEMM_F32=3xtf32: float32
  // accuracy against the CPU (1e-5) with bias, GELU and residual in its epilogue, on shapes with
  // partial M, N and K tiles; it must differ in bits from the cuBLASLt path (else the switch did
  // nothing); shapes it does not take (K % 4 != 0) fall back to cuBLASLt.
  it('float32 linearFused on the 3xTF32 kernel (VITRIM_CUDA_GEMM_F32=3xtf32)', () => {
    const cases: [number[], number, number][] = [[[2, 67], 72, 136], [[130], 16, 8], [[197], 384, 384], [[3], 4, 260], [[5], 6, 7]];
    for (const [lead, K, N] of cases) {
      const x = r([...lead, K], 31), w = r([N, K], 32, 0.2), b = r([N], 33), res = r([...lead, N], 34);
      const [xc, wc, bc, rc] = [x, w, b, res].map((t) => cudaAs(t, 'float32'));
      for (const act of ['none', 'gelu'] as const) {
        for (const withRes of [false, true]) {
          const what = `${act} residual=${withRes} ${lead},${K},${N}`;
          const want = native.linearFused(x, w, b, act, withRes ? res : null);
          const viaLt = lt(() => native.linearFused(xc, wc, bc, act, withRes ? rc : null));
          const got = withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () => native.linearFused(xc, wc, bc, act, withRes ? rc : null));
          expectRel(got, want, TOL.float32, `3xtf32 ${what}`);
          if (K % 4 === 0 && K > 4) expect(Array.from(got.read()), what).not.toEqual(Array.from(viaLt.read()));
          if (K % 4 !== 0) expect(Array.from(got.read()), what).toEqual(Array.from(viaLt.read()));
        }
      }
    }
    // every CTA tile of the bench's sweep (VITRIM_CUDA_GEMM_F32_TILE), with and without GELU, partial
    // tiles in M, N and K
    const x = r([2, 67, 72], 35), w = r([136, 72], 36, 0.2), b = r([136], 37), res = r([2, 67, 136], 38);
    const [xc, wc, bc, rc] = [x, w, b, res].map((t) => cudaAs(t, 'float32'));
    const want = native.linearFused(x, w, b, 'gelu', res);
    const wantPlain = native.linearFused(x, w, b, 'none', null);
    withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () => {
      for (const tile of ['128x128', '128x64', '64x128', '64x64']) {
        withEnv('VITRIM_CUDA_GEMM_F32_TILE', tile, () => {
          expectRel(native.linearFused(xc, wc, bc, 'gelu', rc), want, TOL.float32, `tile ${tile}`);
          expectRel(native.linearFused(xc, wc, bc, 'none', null), wantPlain, TOL.float32, `tile ${tile} no GELU`);
        });
      }
      withEnv('VITRIM_CUDA_GEMM_F32_TILE', '32x32', () =>
        expectCode(() => native.linearFused(xc, wc, bc, 'gelu', rc), 'ERR_VITRIM_ARGUMENT'));
    });
    expectRel(native.linearFused(xc, wc, bc, 'gelu', rc), want, TOL.float32, 'after the bad tile');
  });

  // The bf16 tensor-core linear (gemm_bf16tc.cu), opt-in by VITRIM_CUDA_GEMM_BF16=mma. Its sum of
  // exact bf16 products is fp32, so:
  // - with a float32 y (float32 residual, autocast's proj / fc2) it is float32-accurate (1e-5)
  //   against the CPU's float32 op on the same bf16-representable values, GELU or not, bias float32
  //   or bf16;
  // - with a bf16 y it is that float32 result rounded once: within 1e-3 of the CPU result rounded to
  //   bf16 (a rounding may flip where the sum order moves a value across a tie; bf16's own step is
  //   4e-3), where the cuBLASLt path rounds twice with GELU (GEMM output, then the GELU pass).
  // Shapes with partial M, N and K tiles (K = 16: fewer K steps than pipeline stages), odd N (no
  // paired stores); K % 8 != 0 falls back to cuBLASLt, bit for bit.
  it('bf16 linearFused on the mma kernel (VITRIM_CUDA_GEMM_BF16=mma)', () => {
    const cases: [number[], number, number][] = [
      [[2, 67], 72, 136], [[130], 16, 8], [[197], 384, 384], [[3], 8, 260], [[5], 24, 7], [[5], 6, 7],
    ];
    const mma = <T>(fn: () => T) => withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', fn);
    for (const [lead, K, N] of cases) {
      const x = roundTo(r([...lead, K], 41), 'bfloat16'), w = roundTo(r([N, K], 42, 0.2), 'bfloat16');
      const [xc, wc] = [x, w].map((t) => cudaAs(t, 'bfloat16'));
      const fits = K % 8 === 0;
      for (const act of ['none', 'gelu'] as const) {
        // float32 y: residual float32, bias float32 or bf16
        const res = r([...lead, N], 43), rc = cudaAs(res, 'float32');
        for (const biasDtype of ['float32', 'bfloat16'] as const) {
          const b = roundTo(r([N], 44), biasDtype), bc = cudaAs(b, biasDtype);
          const what = `f32 y ${act} bias ${biasDtype} ${lead},${K},${N}`;
          const got = mma(() => native.linearFused(xc, wc, bc, act, rc));
          expect(got.dtype).toBe('float32');
          expectRel(got, native.linearFused(x, w, b, act, res), TOL.float32, `mma ${what}`);
          // another summation than cuBLASLt's: the switch took effect (or, where it cannot, did not);
          // only on the larger problems, where all outputs agreeing by chance is out of the question
          const viaLt = lt(() => native.linearFused(xc, wc, bc, act, rc));
          if (K >= 64) expect(Array.from(got.read()), what).not.toEqual(Array.from(viaLt.read()));
          if (!fits) expect(Array.from(got.read()), what).toEqual(Array.from(viaLt.read()));
        }
        // bf16 y: bias and residual bf16 or absent
        const b = roundTo(r([N], 45), 'bfloat16'), res16 = roundTo(r([...lead, N], 46), 'bfloat16');
        const [bc, rc16] = [b, res16].map((t) => cudaAs(t, 'bfloat16'));
        for (const withBias of [false, true]) {
          for (const withRes of [false, true]) {
            const what = `bf16 y ${act} bias=${withBias} residual=${withRes} ${lead},${K},${N}`;
            const args = [withBias ? bc : null, act, withRes ? rc16 : null] as const;
            const got = mma(() => native.linearFused(xc, wc, ...args));
            const viaLt = lt(() => native.linearFused(xc, wc, ...args));
            expect(got.dtype).toBe('bfloat16');
            const want = roundTo(native.linearFused(x, w, withBias ? b : null, act, withRes ? res16 : null), 'bfloat16');
            expectRel(got, want, fits ? 1e-3 : TOL.bfloat16, `mma ${what}`);
            if (!fits) expect(Array.from(got.read()), what).toEqual(Array.from(viaLt.read()));
          }
        }
      }
    }
    // every CTA tile (VITRIM_CUDA_GEMM_BF16_TILE), partial tiles in M, N and K, with each output and
    // bias type (float32 y with a float32 or a bf16 bias; bf16 y), with and without GELU; a bad tile
    // is refused
    const x = roundTo(r([2, 67, 72], 47), 'bfloat16'), w = roundTo(r([136, 72], 48, 0.2), 'bfloat16');
    const b = r([136], 49), res = r([2, 67, 136], 50);
    const b16 = roundTo(b, 'bfloat16'), res16 = roundTo(res, 'bfloat16');
    const [xc, wc, bc16, rc16] = [x, w, b16, res16].map((t) => cudaAs(t, 'bfloat16'));
    const [bc, rc] = [b, res].map((t) => cudaAs(t, 'float32'));
    const want = native.linearFused(x, w, b, 'gelu', res);
    mma(() => {
      for (const tile of ['128x128', '128x64', '64x128', '64x64']) {
        withEnv('VITRIM_CUDA_GEMM_BF16_TILE', tile, () => {
          for (const act of ['none', 'gelu'] as const) {
            expectRel(native.linearFused(xc, wc, bc, act, rc), native.linearFused(x, w, b, act, res), TOL.float32,
              `tile ${tile} ${act}`);
            const f32y = native.linearFused(xc, wc, bc16, act, rc);
            expect(f32y.dtype).toBe('float32');
            expectRel(f32y, native.linearFused(x, w, b16, act, res), TOL.float32, `tile ${tile} ${act} bf16 bias`);
            const bf16y = native.linearFused(xc, wc, bc16, act, rc16);
            expect(bf16y.dtype).toBe('bfloat16');
            expectRel(bf16y, roundTo(native.linearFused(x, w, b16, act, res16), 'bfloat16'), 1e-3, `tile ${tile} ${act} bf16 y`);
          }
        });
      }
      withEnv('VITRIM_CUDA_GEMM_BF16_TILE', '32x32', () =>
        expectCode(() => native.linearFused(xc, wc, bc, 'gelu', rc), 'ERR_VITRIM_ARGUMENT'));
    });
    expectRel(native.linearFused(xc, wc, bc, 'gelu', rc), want, TOL.float32, 'after the bad tile');
  });

  // Split-K in both tensor-core linears (tc_plan, gemm_tc.cu): where even 64 x 64 tiles leave SMs
  // idle the K steps are shared out over CTAs whose fp32 partial sums the tile's last CTA adds up.
  // Forced (VITRIM_CUDA_GEMM_SPLITK) on partial tiles with K ranges that do not divide evenly, and
  // chosen by the plan on a problem of one tile (the emulated GPU has 4 SMs, or VITRIM_EMU_SMS);
  // the same accuracy as without; deterministic (two runs, same bits) whichever CTA of a tile comes
  // last: under the emulation the blocks run in a shuffled order here (VITRIM_EMU_ORDER=random, read
  // at each launch; a GPU ignores it and orders them as it likes); a bad value is refused.
  it('split-K in the tensor-core linears (3xTF32 and bf16 mma)', () => withEnv('VITRIM_EMU_ORDER', 'random', () => {
    const cases: [number[], number, number][] = [[[2, 33], 200, 72], [[60], 512, 40], [[5], 24, 7]];
    for (const [lead, K, N] of cases) {
      for (const act of ['none', 'gelu'] as const) {
        // float32 (3xTF32)
        const x = r([...lead, K], 51), w = r([N, K], 52, 0.2), b = r([N], 53), res = r([...lead, N], 54);
        const [xc, wc, bc, rc] = [x, w, b, res].map((t) => cudaAs(t, 'float32'));
        const want = native.linearFused(x, w, b, act, res);
        withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () => {
          for (const splits of [undefined, '3', '7']) {
            const what = `3xtf32 ${act} split=${splits ?? 'auto'} ${lead},${K},${N}`;
            withEnv('VITRIM_CUDA_GEMM_SPLITK', splits, () => {
              const a = native.linearFused(xc, wc, bc, act, rc), a2 = native.linearFused(xc, wc, bc, act, rc);
              expectRel(a, want, TOL.float32, what);
              expect(Array.from(a2.read()), what).toEqual(Array.from(a.read()));
            });
          }
        });
        // bf16 (mma): float32 y with the float32 residual, and bf16 y
        const x16 = roundTo(x, 'bfloat16'), w16 = roundTo(w, 'bfloat16'), b16 = roundTo(b, 'bfloat16');
        const res16 = roundTo(res, 'bfloat16');
        const [xh, wh, bh, rh] = [x16, w16, b16, res16].map((t) => cudaAs(t, 'bfloat16'));
        const want32 = native.linearFused(x16, w16, b, act, res);
        const want16 = roundTo(native.linearFused(x16, w16, b16, act, res16), 'bfloat16');
        withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', () => {
          for (const splits of [undefined, '3', '7']) {
            const what = `mma ${act} split=${splits ?? 'auto'} ${lead},${K},${N}`;
            withEnv('VITRIM_CUDA_GEMM_SPLITK', splits, () => {
              const a = native.linearFused(xh, wh, bc, act, rc), a2 = native.linearFused(xh, wh, bc, act, rc);
              expect(a.dtype).toBe('float32');
              expectRel(a, want32, TOL.float32, `f32 y ${what}`);
              expect(Array.from(a2.read()), what).toEqual(Array.from(a.read()));
              // float32 y with a bf16 bias (its own instantiation)
              expectRel(native.linearFused(xh, wh, bh, act, rc), native.linearFused(x16, w16, b16, act, res), TOL.float32,
                `f32 y, bf16 bias ${what}`);
              const h = native.linearFused(xh, wh, bh, act, rh);
              expect(h.dtype).toBe('bfloat16');
              expectRel(h, want16, 1e-3, `bf16 y ${what}`);
            });
          }
        });
      }
    }
    // the plan splits a one-tile problem on its own: the bits differ from the unsplit run
    const x = r([60, 512], 55), w = r([40, 512], 56, 0.2);
    const [xc, wc] = [x, w].map((t) => cudaAs(t, 'float32'));
    withEnv('VITRIM_CUDA_GEMM_F32', '3xtf32', () => {
      const auto = native.linearFused(xc, wc, null, 'none', null);
      const one = withEnv('VITRIM_CUDA_GEMM_SPLITK', '1', () => native.linearFused(xc, wc, null, 'none', null));
      expectRel(one, native.linearFused(x, w, null, 'none', null), TOL.float32, 'unsplit');
      expect(Array.from(auto.read())).not.toEqual(Array.from(one.read()));
      for (const bad of ['0', '65', 'x', '2.5'])
        withEnv('VITRIM_CUDA_GEMM_SPLITK', bad, () => expectCode(() => native.linearFused(xc, wc, null, 'none', null), 'ERR_VITRIM_ARGUMENT'));
    });
    // a forced split of a problem with more 64 x 64 tiles than there are tile counters (4096)
    const big = [cudaAs(r([4160, 64], 57), 'bfloat16'), cudaAs(r([4096, 64], 58), 'bfloat16')];
    withEnv('VITRIM_CUDA_GEMM_BF16', 'mma', () => withEnv('VITRIM_CUDA_GEMM_SPLITK', '2', () =>
      expectCode(() => native.linearFused(big[0], big[1], null, 'none', null), 'ERR_VITRIM_ARGUMENT')));
    expectRel(native.linearFused(xc, wc, null, 'none', null), native.linearFused(x, w, null, 'none', null), TOL.float32, 'after');
  }));

  it('K = 0 gives the bias (and zero gradients)', () => {
    const x = native.full([3, 0], 0, 'float32'), w = native.full([4, 0], 0, 'float32');
    const b = r([4], 8);
    const got = native.linearForward(native.toDevice(x, 'cuda'), native.toDevice(w, 'cuda'), native.toDevice(b, 'cuda'));
    expectRel(got, native.linearForward(x, w, b), 0, 'K=0');
  });

  it('rejects mixed devices, mixed dtypes and bad shapes; then works', () => {
    const x = r([4, 8], 9), w = r([3, 8], 10);
    const xc = cudaAs(x, 'float32'), wc = cudaAs(w, 'float32');
    expectCode(() => native.linearForward(xc, w, null), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.matmul(x, wc, false, true), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.linearForward(xc, cudaAs(w, 'bfloat16'), null), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearForward(xc, cudaAs(r([3, 7], 11), 'float32'), null), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearForward(xc, wc, cudaAs(r([4], 12), 'float32')), 'ERR_VITRIM_SHAPE');
    const idx: NativeTensor = native.toDevice(native.fromArray(new Int32Array([1, 2]), [2], 'int32'), 'cuda');
    expectCode(() => native.matmul(idx.reshape([1, 2]), idx.reshape([2, 1]), false, false), 'ERR_VITRIM_DTYPE');
    // a misspelt code-path switch is refused, never silently the default path
    const [xh, wh] = [x, w].map((t) => cudaAs(t, 'bfloat16'));
    for (const [name, a, b] of [['VITRIM_CUDA_GEMM_F32', xc, wc], ['VITRIM_CUDA_GEMM_BF16', xh, wh]] as const) {
      for (const bad of ['MMA', 'cublas', ' 3xtf32'])
        withEnv(name, bad, () => expectCode(() => native.linearFused(a, b, null, 'none', null), 'ERR_VITRIM_ARGUMENT'));
    }
    expectRel(native.linearForward(xc, wc, null), native.linearForward(x, w, null), TOL.float32, 'after errors');
  });
});
