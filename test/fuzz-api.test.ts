// The rest of the public API under random and hostile arguments (fast-check): tensor creation and
// conversion, Tensor methods, model configs, AdamW and clipGradNorm, autocast / noGrad / tidy, the
// AdaViT policy and its inference. Each call must succeed or throw a typed VitrimError — never a
// TypeError or RangeError from inside the library — and the process keeps working.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AdamW, adavitInfer, ArgumentError, autocast, captureGraph, clipGradNorm, cudaAvailable, createInferencePlan, data as datasets, denseMacs, DeviceError, evaluate,
  full, keep, Linear, MemoryError, noGrad, ones, ops, Parameter, policies, safetensors, ShapeError, tensor, Tensor, tidy, Trainer, vit,
  VitrimError, zeros,
} from '../lib/index.js';
import { expectThrowsLike, fuzzCalls } from './fuzz-helpers.js';

const RUNS = Number(process.env.VITRIM_FUZZ_RUNS ?? 200);

const EDGE: unknown[] = [0, 1, -1, 0.5, 2, 3, 1e-6, Number.NaN, Infinity, -Infinity, 2 ** 31, 1.5, 1e30, -0];
const JUNK: unknown[] = ['x', {}, null, undefined, [1], [], true, 1n, () => 1, new Float32Array(2)];
const any = fc.oneof(fc.constantFrom(...EDGE), fc.constantFrom(...JUNK), fc.integer({ min: -2, max: 6 }));
const small = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: any });
const shape = fc.oneof({ weight: 4, arbitrary: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }) }, { weight: 1, arbitrary: any });
const dtype = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('float32', 'bfloat16', 'int32') }, { weight: 1, arbitrary: any });
const device = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('cpu', 'cuda') }, { weight: 1, arbitrary: any });
const data = fc.oneof(
  fc.array(fc.oneof(fc.double({ min: -3, max: 3, noNaN: true }), fc.constantFrom(Number.NaN, 2 ** 40, 0.5)), { maxLength: 12 }),
  fc.array(fc.integer({ min: -3, max: 3 }), { maxLength: 12 }).map((a) => Int32Array.from(a)),
  fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { maxLength: 12 }).map((a) => Float32Array.from(a)),
  fc.array(fc.nat(65535), { maxLength: 12 }).map((a) => Uint16Array.from(a)),
  any,
);
/** An object with a random subset of these fields. */
const obj = (fields: Record<string, fc.Arbitrary<unknown>>) => fc.oneof(
  { weight: 6, arbitrary: fc.record(fields, { requiredKeys: [] }) },
  { weight: 1, arbitrary: any },
);

const prop = <A extends unknown[]>(arbs: { [K in keyof A]: fc.Arbitrary<A[K]> }, name: string, f: (...a: A) => unknown, k: number) =>
  fuzzCalls(arbs, name, f, k, RUNS);

const tiny = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 8, depth: 2, numHeads: 2, numClasses: 3 };

describe('fuzzing the public API (cpu)', () => {
  it('tensor(data, shape, opts) and full / zeros / ones', () => {
    prop([data, shape, obj({ dtype, device, requiresGrad: fc.oneof(fc.boolean(), any) })], 'tensor', (d, s, o) => tensor(d as never, s as never, o as never), 1);
    prop([shape, any, obj({ dtype, device })], 'full', (s, v, o) => full(s as never, v as never, o as never), 2);
    prop([shape, obj({ dtype, device })], 'zeros', (s, o) => zeros(s as never, o as never), 3);
    prop([shape, obj({ dtype, device })], 'ones', (s, o) => ones(s as never, o as never), 4);
  });

  it('Tensor methods: to, item, toArray, values, backward', () => {
    const target = fc.oneof(dtype, device, obj({ dtype, device }));
    prop([shape, target], 'to', (s, t) => {
      const x = ones(Array.isArray(s) ? (s as number[]) : [2]);
      try {
        return x.to(t as never);
      } finally {
        x.dispose();
      }
    }, 5);
    prop([shape, fc.constantFrom('item', 'toArray', 'values', 'dataSync')], 'read', (s, m) => {
      const x = ones(Array.isArray(s) ? (s as number[]) : [2]);
      try {
        return (x[m as 'item'] as () => unknown)();
      } finally {
        x.dispose();
      }
    }, 6);
    prop([fc.oneof(any, shape), obj({ retainGraph: fc.oneof(fc.boolean(), any) })], 'backward', (g, o) => {
      const p = tensor([1, 2, 3], [3], { requiresGrad: true });
      const y = ops.mul(p, p);
      const grad = Array.isArray(g) ? ones(g as number[]) : g;
      try {
        y.backward(grad as never, o as never);
      } finally {
        y.dispose();
        if (grad instanceof Tensor) grad.dispose();
        p.grad?.dispose();
        p.dispose();
      }
    }, 7);
  });

  it('vit.create(config) and vit.resolveConfig', () => {
    const cfg = obj({
      imgSize: fc.oneof(fc.constantFrom(8, 16, 32), any), patchSize: fc.oneof(fc.constantFrom(4, 8), any),
      inChans: small, embedDim: fc.oneof(fc.constantFrom(4, 8), any), depth: fc.oneof(fc.constantFrom(0, 1, 2), fc.constantFrom(...EDGE.filter((v) => !(typeof v === 'number' && v > 100))), fc.constantFrom(...JUNK)),
      numHeads: small, mlpRatio: fc.oneof(fc.constantFrom(1, 2, 0.5), any), numClasses: small, qkvBias: any, layerNormEps: any,
    });
    prop([cfg], 'vit.create', (c) => {
      const m = vit.create(c as never);
      m.dispose();
    }, 8);
    prop([fc.oneof(fc.string(), any)], 'vit.create(name)', (n) => vit.create(n as never), 9);
    prop([obj({ seed: fc.oneof(small, fc.constant(2 ** 45), any), depth: fc.oneof(fc.constantFrom(0, 1), any) })], 'vit.create(config, opts)',
      (o) => vit.create(tiny, o as never).dispose(), 10);
    prop([small, small, obj({ bias: fc.oneof(fc.boolean(), any), seed: fc.oneof(small, any) })], 'new Linear',
      (i, o, opts) => new Linear(i as never, o as never, opts as never).dispose(), 11);
  });

  it('AdamW, clipGradNorm', () => {
    const opts = obj({ lr: any, betas: fc.oneof(fc.tuple(any, any), any), eps: any, weightDecay: any });
    prop([opts, fc.oneof(any, fc.constant('tensor'))], 'AdamW', (o, scale) => {
      const p = Parameter.from(tensor([1, -2, 3], [3]));
      const y = ops.sum(ops.mul(p, p));
      y.backward();
      y.dispose();
      const s = scale === 'tensor' ? tensor([0.5], [1]) : scale;
      try {
        const opt = new AdamW([p], o as never);
        opt.step(s as never);
      } finally {
        if (s instanceof Tensor) s.dispose();
        p.grad?.dispose();
        p.dispose();
      }
    }, 10);
    prop([fc.oneof(any, fc.constant([])), any], 'clipGradNorm', (ps, maxNorm) => {
      const p = Parameter.from(tensor([3, 4], [2]));
      const y = ops.sum(ops.mul(p, p));
      y.backward();
      y.dispose();
      try {
        const r = clipGradNorm((Array.isArray(ps) ? [p] : ps) as never, maxNorm as never);
        r?.norm.dispose();
        r?.factor.dispose();
      } finally {
        p.grad?.dispose();
        p.dispose();
      }
    }, 11);
  });

  it('autocast, noGrad, tidy, keep', () => {
    prop([fc.oneof(dtype, any), fc.oneof(fc.constant(() => 1), any)], 'autocast', (d, f) => autocast(d as never, f as never), 12);
    prop([any], 'noGrad', (f) => noGrad(f as never), 13);
    prop([any], 'tidy', (f) => tidy(f as never), 14);
    prop([any], 'keep', (t) => keep(t as never), 15);
  });

  it('policies.adavit and adavitInfer', () => {
    const model = vit.create(tiny, { seed: 1 });
    const ratio = fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), any);
    const popts = obj({
      targets: obj({ patch: ratio, head: ratio, block: ratio }), keepLayers: small, tau: fc.oneof(fc.constant((s: number) => 1 + s), any),
      threshold: ratio, weights: obj({ patch: any, head: any, block: any }), initBias: any,
    });
    prop([popts], 'policies.adavit', (o) => policies.adavit(model, o as never).dispose(), 16);
    const policy = policies.adavit(model, {});
    const x = tensor(Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, k) => Math.sin(k)), [2, 3, 16, 16]);
    const iopts = obj({
      threshold: ratio, keepRatio: ratio, random: obj({ patch: ratio, head: ratio, block: ratio, seed: any }), details: any,
    });
    prop([iopts, fc.oneof(fc.constant('x'), any)], 'adavitInfer', (o, xx) => {
      const r = adavitInfer(policy, (xx === 'x' ? x : xx) as never, o as never);
      r.logits.dispose();
    }, 17);
    x.dispose();
    policy.dispose();
    model.dispose();
    expect(ones([2]).toArray()).toEqual([1, 1]);
  });
});

// What the fuzzer found (TypeErrors and RangeErrors from inside the library, an untyped native
// error from AdamW.step), pinned down.
describe('public API: wrong-kind arguments are typed errors', () => {
  const typed = expectThrowsLike;
  it('tensor creation', () => {
    typed(() => tensor('x' as never), ArgumentError, /tensor: data must be an array of numbers or a typed array/);
    typed(() => tensor([1, 'a'] as never), ArgumentError, /data must hold numbers, got a at index 1/);
    typed(() => tensor([1], 3 as never), ArgumentError, /tensor: shape must be an array of integers/);
    typed(() => tensor([1], [1], { requiresGrad: 'yes' as never }), ArgumentError, /requiresGrad must be a boolean/);
    typed(() => full(0 as never, 0), ArgumentError, /full: shape must be an array/);
    expect(full([2], 3, null as never).toArray()).toEqual([3, 3]);
    expect(tensor(Float64Array.from([1.5, 2]), [2]).toArray()).toEqual([1.5, 2]); // other typed arrays still convert
  });
  it('backward options (fuzz seed 762249: null options threw a TypeError after the gradients were added)', () => {
    const p = tensor([1, 2, 3], [3], { requiresGrad: true });
    const y = ops.sum(ops.mul(p, p));
    typed(() => y.backward(undefined, { retainGraph: 'false' as never }), ArgumentError, /backward: retainGraph must be a boolean/);
    typed(() => y.backward(undefined, 3 as never), ArgumentError, /backward: options must be an object/);
    expect(p.grad).toBeNull(); // refused before any gradient was accumulated
    y.backward(null, null); // null grad and null options: the defaults
    expect(p.grad!.toArray()).toEqual([2, 4, 6]);
    typed(() => y.backward(), ArgumentError, /graph was (already )?freed/); // retainGraph defaulted to false
    y.dispose();
    p.grad!.dispose();
    p.dispose();
  });
  it('scopes, optimiser, policy and inference', () => {
    typed(() => noGrad(0 as never), ArgumentError, /noGrad: fn must be a function/);
    typed(() => tidy(0 as never), ArgumentError, /tidy: fn must be a function/);
    typed(() => keep(0 as never), ArgumentError, /keep: expects a Tensor/);
    const p = Parameter.from(tensor([1, 2], [2]));
    typed(() => new AdamW([p], { betas: ['x', 0] as never }), ArgumentError, /AdamW: betas\[0\] must be a number/);
    typed(() => new AdamW([p], { eps: 0 }), ArgumentError, /AdamW: eps must be finite and > 0/);
    typed(() => new AdamW(p as never), ArgumentError, /AdamW: params must be an array of Parameters/);
    typed(() => clipGradNorm(0 as never, 1), ArgumentError, /clipGradNorm: params must be an array/);
    const model = vit.create(tiny, { seed: 2 });
    const policy = policies.adavit(model, null as never);
    typed(() => policies.adavit(model, { initBias: 1n as never }), ArgumentError, /adavit: initBias must be a number/);
    typed(() => policies.adavit(model, { gateHeads: 'no' as never }), ArgumentError, /adavit: gateHeads must be a boolean/);
    typed(() => policies.adavit({} as never), ArgumentError, /adavit: model must be a VisionTransformer/);
    typed(() => adavitInfer('x' as never, ones([1, 3, 16, 16])), ArgumentError, /infer: policy must be an AdaViT policy/);
    typed(() => adavitInfer(policy, ones([1, 3, 8, 8])), ShapeError, /infer: x must be \[B, 3, 16, 16\]/);
    typed(() => adavitInfer(policy, ones([1, 3, 16, 16]), { random: { patch: 0, head: 0, block: 0, seed: 1e30 } }), ArgumentError, /random.seed must be ≤/);
    typed(() => vit.create({ ...tiny, imgSize: 2 ** 31 }), ArgumentError, /pos_embed would hold .* elements/);
    policy.dispose();
    model.dispose();
    p.dispose();
  });
  // null options threw TypeErrors in these (found by reading every `opts = {}` default after the
  // backward() fuzz failure); null now means the defaults, and the options' fields are checked
  it('null options and wrong-kind fields: models, layers, policy loss, evaluate, plans, pipelines', async () => {
    vit.create(tiny, null).dispose();
    typed(() => vit.create(tiny, { seed: 'x' as never }), ArgumentError, /vit.create: seed must be an integer/);
    typed(() => vit.create(tiny, { seed: -1 }), ArgumentError, /vit.create: seed must be ≥ 0/);
    // (the config fuzz found depth 1e30 a RangeError; 2^31 blocks would be built one by one)
    typed(() => vit.create(tiny, { depth: 2 ** 31 }), MemoryError, /vit.create: the model's \d+ float32 parameters and \d+ blocks need about \d+ bytes, more than this machine's memory/);
    new Linear(4, 2, null).dispose();
    typed(() => new Linear(4, 2, { bias: 'no' as never }), ArgumentError, /Linear: bias must be a boolean/);
    typed(() => new Linear('4' as never, 2), ArgumentError, /Linear: inFeatures must be an integer/);
    const model = vit.create(tiny, { seed: 3 });
    const policy = policies.adavit(model);
    typed(() => policy.loss(null as never, ones([1])), ArgumentError, /AdaViT loss: out must be the output of the policy's forward/);
    const ds = datasets.shapes({ length: 4, size: 16, numClasses: 3 });
    expect(evaluate(model, null, ds, null).count).toBe(4);
    typed(() => evaluate({} as never, null, ds), ArgumentError, /evaluate: model must be a VisionTransformer/);
    typed(() => evaluate(model, {} as never, ds), ArgumentError, /evaluate: policy must be an AdaViT policy or null/);
    typed(() => evaluate(model, null, ds, { batchSize: 'x' as never }), ArgumentError, /evaluate: batchSize must be an integer/);
    typed(() => createInferencePlan(model, [3, 16, 16], null), DeviceError, /move the model to cuda first/); // options read, then the device
    await expect(model.load('/nonexistent/x.safetensors', { strict: 'no' as never })).rejects.toThrow(/load: strict must be a boolean/);
    new datasets.Pipeline([3, 16, 16], null);
    typed(() => new datasets.Pipeline(null as never), ShapeError, /inShape must be \[C, H, W\]/);
    policy.dispose();
    model.dispose();
  });
});

describe('modules: wrong-kind arguments are typed errors', () => {
  it('Parameter.from, Parameter.assign, Module.to, loadStateDict', () => {
    expect(() => Parameter.from({} as never)).toThrow(/Parameter.from: expects a Tensor/);
    const p = Parameter.from(tensor([1, 2], [2]));
    expect(() => p.assign([1, 2] as never)).toThrow(/Parameter.assign: data must be a typed array/);
    expect(() => p.assign(new Int32Array(2))).toThrow(VitrimError); // the native dtype check, typed
    expect(() => p.assign(new Float32Array(3))).toThrow(/expected 2 values/);
    p.assign(Float32Array.from([5, 6]));
    expect(p.toArray()).toEqual([5, 6]);
    const m = vit.create(tiny, { seed: 4 });
    expect(() => m.to('tpu' as never)).toThrow(/unknown device 'tpu'/);
    expect(() => m.loadStateDict({} as never)).toThrow(/state must be a Map/);
    expect(() => m.loadStateDict(new Map([['cls_token', { shape: 8, data: new Float32Array(8) }]]) as never)).toThrow(/cls_token must be \{ shape/);
    expect(() => m.loadStateDict(new Map([['cls_token', { shape: [1, 1, 8], data: new Float32Array(7) }]]))).toThrow(/element count/);
    m.dispose();
    p.dispose();
  });
});

describe('datasets, configs and buffers handed to the wrong function: typed errors', () => {
  // Found by calling every exported function with junk (a throwaway probe): these threw TypeErrors,
  // or (evaluate with eval: {}) returned NaN figures as a result.
  it('fit / evaluate / batches / subset check their dataset, its image shape and its classes against the model', async () => {
    const model = vit.create(tiny, { seed: 2 });
    const t = new Trainer({ model, log: 'silent' });
    const good = datasets.shapes({ length: 8, size: 16, numClasses: 3 });
    for (const bad of [null, {}, { length: 4 }, [1, 2], { ...good, getBatch: 1 }, Object.assign(Object.create(good), { imageShape: [3, 16] })]) {
      await expect(t.fit(bad as never, { epochs: 1, batchSize: 2 })).rejects.toThrow(/fit: train must be a Dataset \(\{ length, imageShape/);
      expect(() => evaluate(model, null, bad as never)).toThrow(/evaluate: ds must be a Dataset/);
      expect(() => datasets.batches(bad as never, { batchSize: 2 })).toThrow(/batches: ds must be a Dataset/); // at the call, not at next()
      expect(() => datasets.subset(bad as never, 1)).toThrow(/subset: ds must be a Dataset/);
    }
    await expect(t.fit(good, { epochs: 1, batchSize: 2, eval: {} as never })).rejects.toThrow(/fit: eval must be a Dataset/);
    await expect(t.fit(good, null as never)).rejects.toThrow(/fit: options \{ epochs/);
    await expect(t.fit(good, { epochs: 1, limit: 'x' as never })).rejects.toThrow(/fit: limit must be an integer/);
    for (const evalLimit of [0, 1.5, 'x', -1]) {
      await expect(t.fit(good, { epochs: 1, eval: good, evalLimit: evalLimit as never })).rejects.toThrow(/fit: evalLimit must be (an integer|≥ 1)/);
    }
    await expect(t.fit(good, { epochs: 1, resume: 'yes' as never })).rejects.toThrow(/fit: resume must be a boolean/);
    const big = datasets.shapes({ length: 8, size: 32, numClasses: 3 });
    await expect(t.fit(big, { epochs: 1, batchSize: 2 })).rejects.toThrow(/fit: train: its images are \[3,32,32\], the model takes \[3,16,16\]/);
    expect(() => evaluate(model, null, big)).toThrow(/evaluate: ds: its images are \[3,32,32\]/);
    const many = datasets.shapes({ length: 8, size: 16, numClasses: 10 });
    await expect(t.fit(many, { epochs: 1, batchSize: 2 })).rejects.toThrow(/fit: train: its labels go up to 9, the model predicts 3 classes/);
    expect(() => evaluate(model, null, datasets.subset(good, 0))).toThrow(/evaluate: no images to evaluate/);
    const other = vit.create(tiny, { seed: 3 });
    const foreign = policies.adavit(other);
    expect(() => evaluate(model, foreign, good)).toThrow(/evaluate: the policy was made for another model/);
    // nothing was trained by the refused calls; a good call still works
    expect(t.step).toBe(0);
    expect((await t.fit(good, { epochs: 1, batchSize: 4 })).length).toBe(1);
    for (const z of [t, foreign, other, model]) z.dispose();
  });

  it('configs (denseMacs, parameterCount, inferConfig, vit.create), buffers (safetensors, parseIdx), graphs and plans', async () => {
    expect(denseMacs('deit_small_patch16_224')).toBeCloseTo(4.6e9, -8);
    expect(denseMacs(tiny)).toBe(denseMacs({ ...tiny, qkvBias: true, mlpRatio: 4, layerNormEps: 1e-6 }));
    expect(vit.parameterCount('deit_tiny_patch16_224')).toBe(5717416);
    for (const bad of [undefined, null, 5, [], true]) {
      expect(() => denseMacs(bad as never)).toThrow(/config must be a timm model name or a config object/);
      expect(() => vit.parameterCount(bad as never)).toThrow(ArgumentError);
      expect(() => vit.create(bad as never)).toThrow(ArgumentError);
      expect(() => vit.inferConfig(bad as never)).toThrow(/inferConfig: state must be a Map/);
    }
    expect(() => denseMacs({ ...tiny, depth: -1 })).toThrow(/config.depth must be/);
    for (const bad of [undefined, null, 'x', [1, 2], new Float32Array(4)]) {
      expect(() => safetensors.parseSafetensors(bad as never)).toThrow(/parseSafetensors: bytes must be a Uint8Array/);
      expect(() => datasets.parseIdx(bad as never, 'f', 1)).toThrow(/parseIdx: bytes must be a Uint8Array/);
      await expect(safetensors.writeFileAtomic('/tmp/never-written', bad as never)).rejects.toThrow(/writeFileAtomic: bytes must be a Uint8Array/);
    }
    expect(() => datasets.parseIdx(new Uint8Array(8), 'f', 0)).toThrow(/parseIdx: rank must be ≥ 1/);
    await expect(safetensors.writeFileAtomic(3 as never, new Uint8Array(1))).rejects.toThrow(/writeFileAtomic: path must be a non-empty string/);
    await expect(safetensors.readSafetensors(undefined as never)).rejects.toThrow(/readSafetensors: path must be a non-empty string/);
    for (const bad of [undefined, null, 'x', [1]]) expect(() => safetensors.serializeSafetensors(bad as never)).toThrow(ArgumentError);
    expect(() => safetensors.serializeSafetensors({ a: null } as never)).toThrow(/tensor 'a' must be \{ dtype, shape, data \}/);
    expect(() => safetensors.serializeSafetensors({ a: { dtype: 'F32', shape: 'x', data: new Float32Array(1) } } as never)).toThrow(/'a': shape must be an array/);
    expect(() => safetensors.serializeSafetensors({ a: { dtype: 'F32', shape: [1], data: [1] } } as never)).toThrow(/'a': data must be a typed array/);
    expect(() => safetensors.serializeSafetensors({ a: { dtype: 'toString', shape: [1], data: new Float32Array(1) } } as never)).toThrow(/unknown dtype toString/);
    expect(() => safetensors.serializeSafetensors({}, null as never)).toThrow(/metadata must be an object of strings/);
    expect(() => captureGraph(5 as never)).toThrow(/captureGraph: fn must be a function/);
    if (!cudaAvailable()) expect(() => captureGraph(() => 1)).toThrow(DeviceError); // was a plain Error
    expect(() => createInferencePlan({} as never, [3, 16, 16])).toThrow(/createInferencePlan: model must be a Module with a forward/);
    const model = vit.create(tiny, { seed: 2 });
    expect(() => createInferencePlan(model, 'x' as never)).toThrow(/createInferencePlan: inputShape must be an array/);
    expect(() => createInferencePlan(model, [3, 16, 16], { precision: 'fp16' as never })).toThrow(VitrimError);
    model.dispose();
  });

  it('model, policy, trainer and data methods called with missing or junk arguments', () => {
    const model = vit.create(tiny, { seed: 2 });
    const policy = policies.adavit(model);
    for (const bad of [undefined, null, 'x', new Float32Array(4)]) {
      expect(() => model.forward(bad as never)).toThrow(/VisionTransformer: input must be a Tensor \[B, 3, 16, 16\]/);
      expect(() => model.classify(bad as never)).toThrow(/classify: tokens must be a Tensor \[B, N, 8\]/);
      expect(() => policy.forwardTrain(bad as never)).toThrow(ArgumentError);
      expect(() => policy.logits(1, bad as never)).toThrow(/AdaVitPolicy.logits: x must be a block input Tensor \[B, N ≥ 2, 8\]/);
    }
    const t = model.embed(ones([2, 3, 16, 16]));
    expect(() => policy.logits(0, t)).toThrow(/AdaVitPolicy.logits: l must be ≥ 1/); // block 0 runs dense (keepLayers 1)
    expect(() => policy.logits(2, t)).toThrow(/AdaVitPolicy.logits: l must be ≤ 1/);
    expect(() => policy.decide(1, t, 'yes' as never)).toThrow(/decide: training must be a boolean/);
    expect(policy.logits(1, t).patch.shape).toEqual([2, 4]);
    const tr = new Trainer({ model, log: 'silent' });
    const img = new Float32Array(2 * 3 * 16 * 16).fill(0.5);
    expect(() => tr.trainStep(undefined as never, new Int32Array(2), [3, 16, 16])).toThrow(/trainStep: images must be a Float32Array/);
    expect(() => tr.trainStep(img, [0, 1] as never, [3, 16, 16])).toThrow(/trainStep: labels must be a non-empty Int32Array/);
    expect(() => tr.trainStep(img, new Int32Array(2), [3, 8, 8])).toThrow(/trainStep: shape must be the model's image shape \[3,16,16\]/);
    expect(() => tr.trainStep(img, new Int32Array(3), [3, 16, 16])).toThrow(/trainStep: 3 labels need 2304 image values, got 1536/);
    expect(tr.step).toBe(0);
    const pipe = new datasets.Pipeline([3, 16, 16], { size: 8 });
    const out = new Float32Array(3 * 8 * 8);
    expect(() => pipe.apply(undefined as never, null, 0, 0, out, 0, null, 0)).toThrow(/Pipeline.apply: src must be a Float32Array of 3×16×16 values/);
    expect(() => pipe.apply(img.subarray(0, 768), null, 0, 0, out, 1, null, 0)).toThrow(/dstOff 1 leaves no room for 192 values/);
    pipe.apply(img.subarray(0, 768), null, 0, 0, out, 0, null, 0);
    expect(() => new datasets.Rng(1).fillU32([] as never)).toThrow(/Rng.fillU32: out must be a Uint32Array/);
    expect(() => new AdamW(model.parameters()).loadStateByName('x', undefined as never, new Map(), 0)).toThrow(/AdamW.loadStateByName: expects/);
    for (const z of [t, tr, policy, model]) z.dispose();
  });
});
