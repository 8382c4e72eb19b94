/**
 * The softmax-family row kernels are built per ISA (rowkernels.h: baseline, AVX2, AVX-512) and
 * chosen by CPUID, so the in-process tests only cover the best ISA of this machine. Here every lower
 * ISA is forced in a child process (VITRIM_ISA=generic|avx2) and its attention and softmax outputs
 * are checked against the float64 references, and against the in-process (default ISA) results.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { attentionReference } from './attention-ref.js';
import { expectClose, expectCloseSum, nt, randn, randu } from './helpers.js';

const levels = ['generic', 'avx2', 'avx512'];
const here = native.info().isa;

function softmaxRef(x: ArrayLike<number>, L: number, log: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / L; r++) {
    let m = -Infinity;
    for (let j = 0; j < L; j++) m = Math.max(m, x[r * L + j]);
    let s = 0;
    for (let j = 0; j < L; j++) s += Math.exp(x[r * L + j] - m);
    for (let j = 0; j < L; j++) y[r * L + j] = log ? x[r * L + j] - m - Math.log(s) : Math.exp(x[r * L + j] - m) / s;
  }
  return y;
}

describe('row kernels on every ISA this machine has', () => {
  for (const isa of ['generic', 'avx2']) {
    it.skipIf(levels.indexOf(isa) > levels.indexOf(here))(`VITRIM_ISA=${isa} matches the references`, () => {
      const B = 2, N = 37, H = 3, D = 8, C = H * D, eps = 0.01, scale = 0.4;
      const qkv = randn([B, N, 3 * C], 1, 1.5);
      const keep = randu([B, N], 2);
      keep[3] = 0;
      keep[4] = 1;
      const gate = randu([B, H], 3, 0.2, 1.2);
      const gout = randn([B, N, C], 4);
      const sshape = [5, 43];
      const sx = randn(sshape, 5, 4);
      const sgy = randn(sshape, 6);
      const input = {
        B, N, H, D, scale, eps, qkv: Array.from(qkv), keep: Array.from(keep), gate: Array.from(gate),
        gout: Array.from(gout), sx: Array.from(sx), sshape, sgy: Array.from(sgy),
      };
      const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./rowkernel-child.ts', import.meta.url))], {
        input: JSON.stringify(input),
        env: { ...process.env, VITRIM_ISA: isa },
        encoding: 'utf8',
        maxBuffer: 1 << 26,
      });
      expect(child.status, child.stderr).toBe(0);
      const got = JSON.parse(child.stdout) as Record<string, number[] | string>;
      expect(got.isa).toBe(isa);
      const ref = attentionReference(qkv, { B, N, H, D }, scale, keep, gate, eps, gout);
      expectClose(got.out as number[], ref.out, 1e-5, `${isa} out`);
      expectClose(got.gqkv as number[], ref.gqkv, 1e-5, `${isa} gqkv`);
      expectCloseSum(got.gkeep as number[], ref.gkeep!, ref.gkeepMag!, 1e-5, `${isa} gkeep`); // a sum that can cancel
      expectClose(got.ggate as number[], ref.ggate!, 1e-5, `${isa} gheadGate`);
      // same as this process's (default ISA) kernels up to rounding
      const [out] = native.attentionForward(nt(qkv, [B, N, 3 * C]), H, scale, nt(keep, [B, N]), nt(gate, [B, H]), eps);
      expectClose(got.out as number[], out.read(), 1e-6, `${isa} vs ${here} out`);
      for (const log of [false, true]) {
        const y = softmaxRef(sx, 43, log);
        expectClose(got[log ? 'logsoftmax' : 'softmax'] as number[], y, 1e-6, `${isa} softmax log=${log}`);
        // backward reference from the float64 forward output (formulas of softmax.cpp's header)
        const gx = new Float64Array(sx.length);
        for (let r = 0; r < 5; r++) {
          let s = 0;
          for (let j = 0; j < 43; j++) s += log ? sgy[r * 43 + j] : y[r * 43 + j] * sgy[r * 43 + j];
          for (let j = 0; j < 43; j++) {
            const k = r * 43 + j;
            gx[k] = log ? sgy[k] - Math.exp(y[k]) * s : y[k] * (sgy[k] - s);
          }
        }
        expectClose(got[log ? 'glogsoftmax' : 'gsoftmax'] as number[], gx, 1e-5, `${isa} softmax backward log=${log}`);
      }
    });
  }
});
