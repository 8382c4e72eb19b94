// Fused AdamW on CUDA (native/cuda/optim.cu) vs the CPU op: several consecutive steps in place on
// the same param / m / v handles, from random (non-zero) moments, float32 grads and bfloat16 grads
// (the CPU sees the same bf16-rounded values as float32), sizes that take the scalar path (< 4),
// the vectorised path with a tail (17, 1000003) and a ViT weight; bad input. param, m and v are
// float32 on both devices (fp32 master weights), so every comparison is at 1e-5. Skipped where no
// GPU is visible.
import { expect, it } from 'vitest';
import { native, type NativeTensor } from '../../lib/native.js';
import { expectCode, nt, randn, randu } from '../helpers.js';
import { FLOAT_DTYPES, cudaAs, describeCuda, expectRel, roundTo } from './helpers.js';

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  wd: number;
}

const HYPERS: Hyper[] = [
  { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.05 },
  { lr: 0.1, beta1: 0.8, beta2: 0.95, eps: 1e-6, wd: 0.3 },
  { lr: 5e-4, beta1: 0, beta2: 0, eps: 1e-3, wd: 0 },
];

const SHAPES: number[][] = [[1], [3], [17], [1000003], [384, 1536]];

const step = (p: NativeTensor, g: NativeTensor, m: NativeTensor, v: NativeTensor, h: Hyper, t: number) =>
  native.adamwStep(p, g, m, v, h.lr, h.beta1, h.beta2, h.eps, h.wd, t);

describeCuda('cuda adamw', () => {
  for (const gdtype of FLOAT_DTYPES) {
    it(`4 steps in place match the CPU, ${gdtype} grads`, () => {
      HYPERS.forEach((h, hi) => {
        SHAPES.forEach((shape, si) => {
          const seed = 1000 + 100 * hi + 10 * si;
          const what = `${JSON.stringify(shape)} hyper ${hi} grad ${gdtype}`;
          const p = nt(randn(shape, seed), shape);
          const m = nt(randn(shape, seed + 1, 0.01), shape);
          const v = nt(randu(shape, seed + 2, 1e-6, 1e-3), shape);
          const [pc, mc, vc] = [p, m, v].map((t) => cudaAs(t, 'float32'));
          for (let t = 1; t <= 4; t++) {
            const g = roundTo(nt(randn(shape, seed + 3 + t, 0.1), shape), gdtype);
            step(p, g, m, v, h, t);
            step(pc, cudaAs(g, gdtype), mc, vc, h, t);
            expect(pc.device).toBe('cuda');
            expect(pc.dtype).toBe('float32');
            expectRel(pc, p, 1e-5, `${what} step ${t} param`);
            expectRel(mc, m, 1e-5, `${what} step ${t} m`);
            expectRel(vc, v, 1e-5, `${what} step ${t} v`);
          }
        });
      });
    });
  }

  it('an empty parameter is a no-op', () => {
    const e = () => native.toDevice(native.full([0, 4], 0, 'float32'), 'cuda');
    const p = e();
    step(p, e(), e(), e(), HYPERS[0], 1);
    expect(p.shape).toEqual([0, 4]);
  });

  it('rejects bad input with typed errors, then works', () => {
    const shape = [5, 3];
    const r = (seed: number) => nt(randn(shape, seed), shape);
    const [p, g, m] = [r(1100), r(1101), r(1102)];
    const v = nt(randu(shape, 1103, 0.1, 1), shape);
    const [pc, gc, mc, vc] = [p, g, m, v].map((t) => cudaAs(t, 'float32'));
    const h = HYPERS[0];
    expectCode(() => step(cudaAs(p, 'bfloat16'), gc, mc, vc, h, 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => step(pc, gc, cudaAs(m, 'bfloat16'), vc, h, 1), 'ERR_VITRIM_DTYPE');
    const gi = native.toDevice(native.fromArray(new Int32Array(15), shape, 'int32'), 'cuda');
    expectCode(() => step(pc, gi, mc, vc, h, 1), 'ERR_VITRIM_DTYPE');
    expectCode(() => step(pc, gc, cudaAs(nt(randn([15], 1104), [15]), 'float32'), vc, h, 1), 'ERR_VITRIM_SHAPE');
    expectCode(() => step(pc, g, mc, vc, h, 1), 'ERR_VITRIM_DEVICE');
    expectCode(() => step(pc, gc, pc, vc, h, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => step(pc, gc, mc, mc.reshape([15]).reshape(shape), h, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => step(pc, pc, mc, vc, h, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => step(pc, gc, mc, vc, { ...h, lr: -1 }, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => step(pc, gc, mc, vc, { ...h, beta1: 1 }, 1), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => step(pc, gc, mc, vc, h, 0), 'ERR_VITRIM_ARGUMENT');
    // None of the rejected calls wrote anything: one good step still matches the CPU's first step.
    step(p, g, m, v, h, 1);
    step(pc, gc, mc, vc, h, 1);
    expectRel(pc, p, 1e-5, 'param after errors');
    expectRel(mc, m, 1e-5, 'm after errors');
    expectRel(vc, v, 1e-5, 'v after errors');
  });
});
