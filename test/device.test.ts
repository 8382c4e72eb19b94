/**
 * Device and precision plumbing that can be checked without a GPU: Tensor.to semantics on the CPU,
 * the error (with its reasons) when cuda is asked for and unavailable, backends() and memory(),
 * autocast as a no-op on the CPU, float32 ↔ bfloat16 casts with gradients, type promotion,
 * Module.to keeping Parameter identity, and the Trainer's device / precision options on the CPU.
 * The GPU side is in test/cuda/lib-device.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  AdamW, adavitInfer, autocast, autocastDtype, backends, cast, data, DeviceError, full, memory, Module, noGrad, ones, ops,
  Parameter, policies, resolveDevice, setAllowTf32, tensor, Tensor, tidy, Trainer, vit, zeros,
} from '../lib/index.js';
import { native } from '../lib/native.js';
import { expectCode, randn } from './helpers.js';

const cudaEntry = native.backends().find((b) => b.device === 'cuda')!;
const noCuda = !cudaEntry.available;
const tinyCfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 4, mlpRatio: 2, numClasses: 5 };

/** float32 values rounded to bfloat16 (round to nearest even) by the native cast: the reference. */
function roundBf16(v: Float32Array): Float32Array {
  const a = native.fromArray(v, [v.length], 'float32');
  const b = native.cast(a, 'bfloat16');
  const c = native.cast(b, 'float32');
  const r = c.read() as Float32Array;
  for (const h of [a, b, c]) h.free();
  return r;
}

function bits(t: Tensor): number[] {
  return Array.from(new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer));
}

describe('Tensor.to on the CPU', () => {
  it('to(its own device / dtype) returns the same tensor; creation options place and type tensors', () => {
    const x = tensor(randn([3, 4], 1), [3, 4]);
    expect(x.device).toBe('cpu');
    expect(x.to('cpu')).toBe(x);
    expect(x.to({ device: 'cpu' })).toBe(x);
    expect(x.to('float32')).toBe(x);
    expect(x.to({ device: 'cpu', dtype: 'float32' })).toBe(x);
    expect(tensor([1, 2], [2], { device: 'cpu' }).device).toBe('cpu');
    const f = full([2, 3], 7, { device: 'cpu' });
    expect(f.toArray()).toEqual([7, 7, 7, 7, 7, 7]);
    expect(full([2], 3, 'int32').dtype).toBe('int32'); // the old positional dtype still works
    expect(zeros([2], { dtype: 'bfloat16' }).dtype).toBe('bfloat16');
    expect(ones([2], { dtype: 'bfloat16' }).toArray()).toEqual([1, 1]);
    const r1 = ops.random([5], 'normal', { seed: 3, device: 'cpu' }).toArray();
    expect(r1).toEqual(ops.random([5], 'normal', { seed: 3 }).toArray());
    expect(() => x.to('gpu' as never)).toThrow(/expected a device/);
    expect(() => x.to({ device: 'tpu' as never })).toThrow(/unknown device/);
    expect(() => tensor([1], [1], { device: 'metal' as never })).toThrow(/unknown device/);
    expect(() => full([1], 0, { dtype: 'float16' as never })).toThrow(/unknown dtype/);
    expect(() => ops.random([2], 'uniform', { device: 'xpu' as never })).toThrow(/unknown device/);
  });

  it('bfloat16 storage round trip: values, bits, item and toArray; casts with gradients', () => {
    const v = randn([64], 2, 3);
    const want = roundBf16(v);
    // from numbers with dtype bfloat16: rounded to nearest even
    const b = tensor(v, [8, 8], { dtype: 'bfloat16' });
    expect(b.dtype).toBe('bfloat16');
    expect(b.dataSync()).toBeInstanceOf(Uint16Array);
    expect(Array.from(b.values())).toEqual(Array.from(want));
    expect(b.toArray()).toEqual(Array.from(want));
    expect(tensor(new Float32Array([v[0]]), [], { dtype: 'bfloat16' }).item()).toBe(want[0]);
    // from bits
    const b2 = tensor(b.dataSync() as Uint16Array, [8, 8], { dtype: 'bfloat16' });
    expect(b2.toArray()).toEqual(b.toArray());
    // to(dtype) differentiable: L = Σ w ⊙ f32(bf16(x)) → dL/dx = f32(bf16(w)) (the gradient is cast
    // back through both casts), and x.grad is float32
    const x = tensor(v, [8, 8], { requiresGrad: true });
    const wv = randn([64], 3);
    const w = tensor(wv, [8, 8]);
    const xb = x.to('bfloat16');
    expect(xb.dtype).toBe('bfloat16');
    expect(Array.from(xb.values())).toEqual(Array.from(want));
    const back = xb.to('float32');
    expect(Array.from(back.dataSync())).toEqual(Array.from(want));
    ops.sum(ops.mul(back, w)).backward();
    expect(x.grad!.dtype).toBe('float32');
    expect(Array.from(x.grad!.dataSync())).toEqual(Array.from(roundBf16(wv)));
    // the same with the functional cast and a combined to({ dtype })
    const x2 = tensor(v, [8, 8], { requiresGrad: true });
    ops.sum(ops.mul(cast(cast(x2, 'bfloat16'), 'float32'), w)).backward();
    expect(Array.from(x2.grad!.dataSync())).toEqual(Array.from(roundBf16(wv)));
    // int32 casts carry no gradient
    const xi = tensor([1.7, -2.2], [2], { requiresGrad: true }).to('int32');
    expect(xi.dtype).toBe('int32');
    expect(xi.gradFn).toBeNull();
    expect(xi.toArray()).toEqual([1, -2]);
  });

  it('type promotion: float32 with bfloat16 computes in float32; the bfloat16 operand gets a bfloat16 gradient', () => {
    const av = randn([3, 5], 4);
    const bv = randn([5], 5);
    const a = tensor(av, [3, 5], { requiresGrad: true });
    const b = tensor(bv, [5], { dtype: 'bfloat16', requiresGrad: true });
    const y = ops.mul(a, b);
    expect(y.dtype).toBe('float32');
    const br = roundBf16(bv);
    const got = y.dataSync();
    for (let i = 0; i < 15; i++) expect(got[i]).toBe(Math.fround(av[i] * br[i % 5]));
    ops.sum(y).backward();
    expect(b.grad!.dtype).toBe('bfloat16');
    expect(a.grad!.dtype).toBe('float32');
    expect(Array.from(a.grad!.dataSync())).toEqual(Array.from({ length: 15 }, (_, i) => br[i % 5]));
    const c = ops.concat([tensor(av, [3, 5]), tensor(av, [3, 5], { dtype: 'bfloat16' })], 0);
    expect(c.dtype).toBe('float32');
    expect(Array.from(c.dataSync().slice(15))).toEqual(Array.from(roundBf16(av)));
    // a scalar operand follows the tensor's device
    expect(ops.sub(1, tensor([0.25], [1])).toArray()).toEqual([0.75]);
  });
});

describe('cuda requested without a usable CUDA backend', () => {
  it.skipIf(!noCuda)('throws ERR_VITRIM_DEVICE naming the reasons, and the process keeps working', () => {
    expect(cudaEntry.reasons.length).toBeGreaterThan(0);
    const x = tensor(randn([4, 4], 6), [4, 4], { requiresGrad: true });
    const msg = expectCode(() => x.to('cuda'), 'ERR_VITRIM_DEVICE');
    for (const r of cudaEntry.reasons) expect(msg).toContain(r);
    expect(() => x.to('cuda')).toThrow(DeviceError);
    expectCode(() => tensor([1, 2], [2], { device: 'cuda' }), 'ERR_VITRIM_DEVICE');
    expectCode(() => full([2], 1, { device: 'cuda' }), 'ERR_VITRIM_DEVICE');
    expectCode(() => ops.random([2], 'uniform', { device: 'cuda' }), 'ERR_VITRIM_DEVICE');
    expectCode(() => setAllowTf32(false), 'ERR_VITRIM_DEVICE');
    expectCode(() => resolveDevice('cuda'), 'ERR_VITRIM_DEVICE');
    expect(resolveDevice('auto')).toBe('cpu');
    // Module.to('cuda') fails as a whole: every parameter stays on the cpu, the model still runs
    const m = vit.create(tinyCfg, { seed: 1 });
    const before = m.parameters().map((p) => p.dataSync());
    expectCode(() => m.to('cuda'), 'ERR_VITRIM_DEVICE');
    expect(m.parameters().every((p) => p.device === 'cpu')).toBe(true);
    m.parameters().forEach((p, i) => expect(Array.from(p.dataSync())).toEqual(Array.from(before[i])));
    // the Trainer refuses before touching anything
    expectCode(() => new Trainer({ model: m, device: 'cuda', log: 'silent' }), 'ERR_VITRIM_DEVICE');
    // and everything keeps working on the cpu
    const xi = tensor(randn([2, 3, 16, 16], 7), [2, 3, 16, 16]);
    expect(noGrad(() => m.forward(xi)).shape).toEqual([2, 5]);
    const y = ops.sum(ops.square(x));
    y.backward();
    expect(x.grad!.shape).toEqual([4, 4]);
  });
});

describe('backends() and memory()', () => {
  it('lists cpu first (available, threads, isa, gemm) and cuda with its status and reasons', () => {
    const b = backends();
    expect(b.length).toBe(2);
    expect(b[0]).toMatchObject({ device: 'cpu', available: true, reasons: [] });
    expect(b[0].threads).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'generic']).toContain(b[0].isa);
    expect(typeof b[0].gemm).toBe('string');
    expect(b[1].device).toBe('cuda');
    expect(typeof b[1].available).toBe('boolean');
    expect(Array.isArray(b[1].reasons)).toBe(true);
    if (b[1].available) {
      expect(b[1].reasons).toEqual([]);
      expect(b[1].detail.length).toBeGreaterThan(0);
    } else {
      expect(b[1].reasons.length).toBeGreaterThan(0);
      for (const r of b[1].reasons) expect(r.length).toBeGreaterThan(5);
      expect(b[1].reason).toBe(b[1].reasons.join('; '));
    }
    const mem = memory();
    expect(mem[0].device).toBe('cpu');
    for (const e of mem) for (const k of ['liveTensors', 'bytesInUse', 'bytesCached', 'hostPinnedBytes'] as const) expect(e[k]).toBeGreaterThanOrEqual(0);
    expect(mem.some((e) => e.device === 'cuda')).toBe(b[1].available);
  });
});

describe('autocast', () => {
  it('scopes nest and restore (also after a throw); bad use is rejected', () => {
    expect(autocastDtype()).toBe('float32');
    autocast('bfloat16', () => {
      expect(autocastDtype()).toBe('bfloat16');
      autocast('float32', () => expect(autocastDtype()).toBe('float32'));
      expect(autocastDtype()).toBe('bfloat16');
    });
    expect(() => autocast('bfloat16', () => {
      throw new Error('boom');
    })).toThrow('boom');
    expect(autocastDtype()).toBe('float32');
    expect(() => autocast('float16' as never, () => 1)).toThrow(/bfloat16/);
    expect(() => autocast('bfloat16', async () => 1)).toThrow(/synchronous/);
    expect(autocastDtype()).toBe('float32');
  });

  it('is a no-op on the CPU: ViT forward, loss and every gradient bit-identical to float32', () => {
    const run = (ac: boolean) => {
      const m = vit.create(tinyCfg, { seed: 4 });
      const x = tensor(randn([3, 3, 16, 16], 8), [3, 3, 16, 16], { requiresGrad: true });
      const y = tensor(new Int32Array([0, 3, 4]), [3]);
      const f = () => tidy(() => ops.crossEntropy(m.forward(x), y));
      const loss = ac ? autocast('bfloat16', f) : f();
      expect(loss.dtype).toBe('float32');
      loss.backward();
      const logits = noGrad(() => (ac ? autocast('bfloat16', () => m.forward(x)) : m.forward(x)));
      expect(logits.dtype).toBe('float32');
      const out = { loss: bits(loss), logits: bits(logits), grads: m.parameters().map((p) => bits(p.grad!)), gx: bits(x.grad!) };
      m.dispose();
      return out;
    };
    const a = run(false);
    const b = run(true);
    expect(b.loss).toEqual(a.loss);
    expect(b.logits).toEqual(a.logits);
    expect(b.gx).toEqual(a.gx);
    b.grads.forEach((g, i) => expect(g, `grad ${i}`).toEqual(a.grads[i]));
  });

  it('is a no-op for the AdaViT policy on the CPU (training loss, grads and packed inference)', () => {
    const run = (ac: boolean) => {
      const m = vit.create(tinyCfg, { seed: 5 });
      const p = policies.adavit(m, { seed: 5, tau: 1, initBias: 0 });
      const x = tensor(randn([2, 3, 16, 16], 9), [2, 3, 16, 16]);
      const y = tensor(new Int32Array([1, 2]), [2]);
      const f = () => tidy(() => p.loss(p.forwardTrain(x), y).total);
      const loss = ac ? autocast('bfloat16', f) : f();
      loss.backward();
      const inf = ac ? autocast('bfloat16', () => adavitInfer(p, x, { record: true })) : adavitInfer(p, x, { record: true });
      return { loss: bits(loss), grads: [...m.parameters(), ...p.parameters()].map((q) => bits(q.grad!)), logits: bits(inf.logits), macs: inf.macs };
    };
    const a = run(false);
    const b = run(true);
    expect(b).toEqual(a);
  });
});

class WithBuffer extends Module {
  lin = new (class extends Module {
    weight = Parameter.from(tensor(randn([3, 2], 10), [3, 2]));
  })();
  scale: Tensor = tensor([2], [1]);
  stats: Tensor[] = [tensor([1, 2], [2])];
}

describe('Module.to', () => {
  it("to('cpu') keeps every Parameter object, its values and gradient; buffers stay usable", () => {
    const m = vit.create(tinyCfg, { seed: 2 });
    const before = m.parameters();
    const vals = before.map((p) => Array.from(p.dataSync()));
    const x = tensor(randn([1, 3, 16, 16], 11), [1, 3, 16, 16]);
    ops.sum(m.forward(x)).backward();
    const grads = before.map((p) => p.grad);
    expect(m.to('cpu')).toBe(m);
    expect(m.device).toBe('cpu');
    const after = m.parameters();
    after.forEach((p, i) => {
      expect(p).toBe(before[i]);
      expect(p.grad).toBe(grads[i]); // nothing moved: the same gradient object
      expect(Array.from(p.dataSync())).toEqual(vals[i]);
    });
    expect(before[0].moveTo('cpu')).toBe(before[0]);
    const w = new WithBuffer();
    const s = w.scale;
    w.to('cpu');
    expect(w.scale).toBe(s);
    expect(w.stats[0].toArray()).toEqual([1, 2]);
    expect(w.device).toBe('cpu');
    expect(() => m.to('tpu' as never)).toThrow(/unknown device/);
    // a policy moves its gates (its parameters()), not the backbone it refers to
    const p = policies.adavit(m, { seed: 1 });
    expect(p.to('cpu')).toBe(p);
    expect(p.device).toBe('cpu');
  });

  it('an optimizer keeps training the same parameters after Module.to', () => {
    const m = vit.create(tinyCfg, { seed: 3 });
    const opt = new AdamW(m.parameters(), { lr: 1e-2 });
    const x = tensor(randn([2, 3, 16, 16], 12), [2, 3, 16, 16]);
    const y = tensor(new Int32Array([0, 1]), [2]);
    tidy(() => ops.crossEntropy(m.forward(x), y)).backward();
    m.to('cpu');
    const w0 = Array.from(m.head.weight.dataSync());
    opt.step();
    expect(Array.from(m.head.weight.dataSync())).not.toEqual(w0);
  });
});

describe("Trainer / evaluate with device 'cpu'", () => {
  const cfg = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 4 };
  const train = data.shapes({ split: 'train', size: 16, length: 96, seed: 1, numClasses: 4 });
  const test = data.shapes({ split: 'test', size: 16, length: 32, seed: 1, numClasses: 4 });

  async function fit(opts: Record<string, unknown>, withPolicy: boolean) {
    const m = vit.create(cfg, { seed: 6 });
    const p = withPolicy ? policies.adavit(m, { seed: 6, tau: 1 }) : null;
    const t = new Trainer({ model: m, policy: p, log: 'silent', optimizer: { lr: 1e-3 }, clipGrad: 0.5, ...opts });
    const hist = await t.fit(train, { epochs: 1, batchSize: 32, eval: test });
    return { t, params: [...m.parameters(), ...(p ? p.parameters() : [])].map((q) => bits(q)), hist };
  }

  for (const withPolicy of [false, true]) {
    it(`default, 'cpu', 'auto' (no GPU) and precision 'bfloat16' (a CPU no-op) train identically${withPolicy ? ' (AdaViT)' : ''}`, async () => {
      const base = await fit({}, withPolicy);
      expect(base.t.device).toBe('cpu');
      expect(base.t.precision).toBe('float32');
      const variants = [{ device: 'cpu' }, { device: 'cpu', precision: 'bfloat16' }, ...(noCuda ? [{ device: 'auto' }] : [])];
      for (const v of variants) {
        const r = await fit(v, withPolicy);
        expect(r.t.device).toBe('cpu');
        r.params.forEach((b, i) => expect(b, `${JSON.stringify(v)} param ${i}`).toEqual(base.params[i]));
        expect(r.hist[0].trainLoss).toBe(base.hist[0].trainLoss);
        expect(r.hist[0].eval).toEqual({ ...base.hist[0].eval, imagesPerSec: r.hist[0].eval!.imagesPerSec });
      }
      expect(() => new Trainer({ model: vit.create(cfg), precision: 'float16' as never })).toThrow(/precision/);
      expect(() => new Trainer({ model: vit.create(cfg), device: 'tpu' as never })).toThrow(/unknown device/);
    });
  }
});
