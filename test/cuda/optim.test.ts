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

  it('adamwStepMulti: 40 tensors (two launches), mixed grad dtypes, chunk edges: the bits of adamwStep, and the CPU', () => {
    const h = HYPERS[0];
    const sizes = Array.from({ length: 40 }, (_, i) => [1, 2, 3, 5, 8191, 8192, 8193, 16384, 20001][i % 9] + (i >= 36 ? 100000 : 0));
    const init = sizes.map((n, i) => ({ p: randn([n], 1300 + 5 * i), m: randn([n], 1301 + 5 * i, 0.01), v: randu([n], 1302 + 5 * i, 1e-6, 1e-3) }));
    const up = (a: Float32Array, n: number) => cudaAs(nt(a, [n]), 'float32');
    const multi = init.map((e, i) => ({ p: up(e.p, sizes[i]), m: up(e.m, sizes[i]), v: up(e.v, sizes[i]) }));
    const single = init.map((e, i) => ({ p: up(e.p, sizes[i]), m: up(e.m, sizes[i]), v: up(e.v, sizes[i]) }));
    const cpu = init.map((e, i) => ({ p: nt(e.p, [sizes[i]]), m: nt(e.m, [sizes[i]]), v: nt(e.v, [sizes[i]]) }));
    for (let t = 1; t <= 2; t++) {
      const g = sizes.map((n, i) => roundTo(nt(randn([n], 1500 + 10 * t + i, 0.1), [n]), i % 2 ? 'bfloat16' : 'float32'));
      const gc = g.map((x, i) => cudaAs(x, i % 2 ? 'bfloat16' : 'float32'));
      native.adamwStepMulti(multi.map((e) => e.p), gc, multi.map((e) => e.m), multi.map((e) => e.v), h.lr, h.beta1, h.beta2, h.eps, h.wd, t);
      single.forEach((e, i) => step(e.p, gc[i], e.m, e.v, h, t));
      native.adamwStepMulti(cpu.map((e) => e.p), g, cpu.map((e) => e.m), cpu.map((e) => e.v), h.lr, h.beta1, h.beta2, h.eps, h.wd, t);
      multi.forEach((e, i) => {
        expect(e.p.read(), `param ${i} (n=${sizes[i]}) step ${t}: the bits of adamwStep`).toEqual(single[i].p.read());
        expect(e.v.read(), `v ${i} step ${t}`).toEqual(single[i].v.read());
        expectRel(e.p, cpu[i].p, 1e-5, `param ${i} vs the CPU`);
        expectRel(e.m, cpu[i].m, 1e-5, `m ${i} vs the CPU`);
      });
    }
    // typed errors: devices mixed within the lists, a bf16 moment
    const c0 = multi[0];
    expectCode(() => native.adamwStepMulti([c0.p, cpu[1].p], [up(init[0].p, 1), nt(randn([2], 1), [2])], [c0.m, cpu[1].m], [c0.v, cpu[1].v], h.lr, h.beta1, h.beta2, h.eps, h.wd, 3), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.adamwStepMulti([c0.p], [up(init[0].p, 1)], [native.cast(c0.m, 'bfloat16')], [c0.v], h.lr, h.beta1, h.beta2, h.eps, h.wd, 3), 'ERR_VITRIM_DTYPE');
  });

  it('adamwStepMulti with a device gradScale: the bits of the step on pre-scaled grads; the CPU', () => {
    const h = HYPERS[1];
    const sizes = [7, 8192 * 2 + 1, 33];
    const init = sizes.map((n, i) => randn([n], 1800 + i));
    const up = (a: Float32Array, n: number) => cudaAs(nt(a, [n]), 'float32');
    const zeros = (dev: 'cpu' | 'cuda') => sizes.map((n) => (dev === 'cuda' ? up(new Float32Array(n), n) : nt(new Float32Array(n), [n])));
    const s = Math.fround(0.23);
    const g = sizes.map((n, i) => roundTo(nt(randn([n], 1810 + i), [n]), i === 1 ? 'bfloat16' : 'float32'));
    const gc = g.map((x, i) => cudaAs(x, i === 1 ? 'bfloat16' : 'float32'));
    // pre-scaled on the host (float products, then the same dtype on the device)
    const gcs = g.map((x, i) => cudaAs(nt(Float32Array.from(x.read() as Float32Array, (v) => Math.fround(v * s)), [sizes[i]]), 'float32'));
    const a = sizes.map((n, i) => up(init[i], n));
    const b = sizes.map((n, i) => up(init[i], n));
    const c = sizes.map((n, i) => nt(init[i], [n]));
    native.adamwStepMulti(a, gc, zeros('cuda'), zeros('cuda'), h.lr, h.beta1, h.beta2, h.eps, h.wd, 1, native.full([1], s, 'float32', 'cuda'));
    native.adamwStepMulti(b, gcs, zeros('cuda'), zeros('cuda'), h.lr, h.beta1, h.beta2, h.eps, h.wd, 1);
    native.adamwStepMulti(c, g, zeros('cpu'), zeros('cpu'), h.lr, h.beta1, h.beta2, h.eps, h.wd, 1, nt(Float32Array.of(s), [1]));
    a.forEach((p, i) => {
      expect(p.read(), `entry ${i}`).toEqual(b[i].read());
      expectRel(p, c[i], 1e-5, `entry ${i} vs the CPU`);
    });
    expectCode(() => native.adamwStepMulti(a, gc, zeros('cuda'), zeros('cuda'), h.lr, h.beta1, h.beta2, h.eps, h.wd, 2, nt(Float32Array.of(s), [1])), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.adamwStepMulti(a, gc, zeros('cuda'), zeros('cuda'), h.lr, h.beta1, h.beta2, h.eps, h.wd, 2, native.full([2], s, 'float32', 'cuda')), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.adamwStepMulti(a, gc, zeros('cuda'), zeros('cuda'), h.lr, h.beta1, h.beta2, h.eps, h.wd, 2, native.full([1], s, 'bfloat16', 'cuda')), 'ERR_VITRIM_DTYPE');
  });

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
