import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArgumentError, MemoryError, memory, noGrad, ops, tensor, tidy, vit } from '../lib/index.js';
import { checkpointBytes, CONFIG_KEY } from '../lib/io/checkpoint.js';
import { writeFileAtomic } from '../lib/io/safetensors.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { expectClose, randn } from './helpers.js';

const FIXTURE = join(__dirname, 'fixtures/vit-tiny-ref.safetensors');
const tinyCfg = { imgSize: 32, patchSize: 8, inChans: 3, embedDim: 64, depth: 2, numHeads: 4, mlpRatio: 4, numClasses: 10, qkvBias: true };

describe('VisionTransformer parity with timm (PyTorch float64 fixture)', () => {
  it('matches logits, loss, activations and every gradient within 1e-5', async () => {
    const f = await readSafetensors(FIXTURE);
    const meta = JSON.parse(f.metadata.config);
    expect(meta.embed_dim).toBe(tinyCfg.embedDim);
    const m = vit.create(tinyCfg);
    await m.load(FIXTURE, { strict: false });
    // every model parameter is in the file (strict:false only tolerates the fixture's extra tensors)
    for (const [name] of m.namedParameters()) expect(f.entries.has(name), name).toBe(true);
    const x = tensor(f.getFloat32('input'), [3, 3, 32, 32], { requiresGrad: true });
    const labels = tensor(Int32Array.from(f.getFloat32('target')), [3]);

    const pe = noGrad(() => m.patch_embed.forward(x));
    expectClose(pe.dataSync(), f.getFloat32('act.patch_embed'), 1e-5, 'act.patch_embed');
    noGrad(() => tidy(() => {
      let t = m.embed(x);
      m.blocks.forEach((b, i) => {
        t = b.forward(t);
        expectClose(t.dataSync(), f.getFloat32(`act.blocks.${i}`), 1e-5, `act.blocks.${i}`);
      });
    }));

    const logits = m.forward(x);
    expectClose(logits.dataSync(), f.getFloat32('logits'), 1e-5, 'logits');
    const loss = ops.crossEntropy(logits, labels);
    expectClose(loss.dataSync(), f.getFloat32('loss'), 1e-5, 'loss');
    loss.backward();
    let n = 0;
    for (const [name, p] of m.namedParameters()) {
      expect(p.grad, name).not.toBeNull();
      expectClose(p.grad!.dataSync(), f.getFloat32(`grad.${name}`), 1e-5, `grad.${name}`);
      n++;
    }
    expect(n).toBe(4 + 2 * 12 + 4);
    expectClose(x.grad!.dataSync(), f.getFloat32('grad.input'), 1e-5, 'grad.input');
    m.dispose();
  });
});

describe('VisionTransformer save / load', () => {
  it('round trip: identical bytes and identical outputs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-vit-'));
    const m = vit.create({ ...tinyCfg, depth: 1 }, { seed: 7 });
    const p1 = join(dir, 'a.safetensors');
    const p2 = join(dir, 'b.safetensors');
    await m.save(p1);
    const m2 = await vit.fromFile(p1);
    expect(m2.config).toEqual(m.config);
    await m2.save(p2);
    expect(readFileSync(p1).equals(readFileSync(p2))).toBe(true);
    const x = tensor(randn([2, 3, 32, 32], 5), [2, 3, 32, 32]);
    const y1 = noGrad(() => m.forward(x)).dataSync();
    const y2 = noGrad(() => m2.forward(x)).dataSync();
    expect(Array.from(y2)).toEqual(Array.from(y1));
  });

  it('names missing, unexpected and mismatched parameters', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-vit-'));
    const p = join(dir, 'small.safetensors');
    await vit.create({ ...tinyCfg, depth: 1, numClasses: 5 }).save(p);
    const m = vit.create({ ...tinyCfg, depth: 2 });
    const err = await m.load(p).catch((e) => e);
    expect(err).toBeInstanceOf(ArgumentError);
    expect(err.message).toMatch(/missing: .*blocks\.1\.norm1\.weight/);
    expect(err.message).toMatch(/shape mismatch: head\.weight: checkpoint \[5,64\] vs model \[10,64\]/);
  });

  it('parameterCount(config) is what the model holds, across config variants', () => {
    for (const over of [{}, { qkvBias: false }, { numClasses: 0 }, { mlpRatio: 2.5, depth: 3 }, { patchSize: 4, inChans: 1 }]) {
      const m = vit.create({ ...tinyCfg, depth: 1, ...over });
      expect(vit.parameterCount(m.config), JSON.stringify(over)).toBe(m.numParams());
      m.dispose();
    }
    expect(vit.parameterCount(vit.configs.deit_tiny_patch16_224)).toBe(5717416);
  });

  it('a checkpoint whose config does not fit its tensors is refused before the model is built', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitrim-vit-'));
    const p = join(dir, 'hostile.safetensors');
    const m = vit.create({ ...tinyCfg, depth: 1 }, { seed: 3 });
    // the file's tensors are a depth-1 model, its config metadata asks for a million blocks
    await writeFileAtomic(p, checkpointBytes(m.stateDict(), { [CONFIG_KEY]: JSON.stringify({ ...m.config, depth: 1_000_000 }) }));
    m.dispose();
    const live = memory()[0].liveTensors;
    const t0 = performance.now();
    const err = await vit.fromFile(p).catch((e) => e);
    expect(err).toBeInstanceOf(ArgumentError);
    expect(err.message).toMatch(/parameter elements, the file holds/);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(memory()[0].liveTensors).toBe(live);
  });

  it('a depth whose blocks (parameters and objects) exceed memory is refused before building', () => {
    // 16 wide: 3280 parameters (13 KB) a block, about 20 KB more of objects. A depth whose
    // parameters take a third of memory but whose blocks together take more than all of it was
    // built block by block for minutes (a million blocks: tens of GB) before the estimate counted them.
    const small = { ...tinyCfg, embedDim: 16, numHeads: 2, layerNormEps: 1e-6 };
    const perBlock = vit.parameterCount({ ...small, depth: 2 }) - vit.parameterCount({ ...small, depth: 1 });
    expect(perBlock).toBe(3280);
    const depth = Math.ceil(totalmem() / (3 * perBlock * 4));
    expect(vit.parameterCount({ ...small, depth }) * 4).toBeLessThan(totalmem());
    const live = memory()[0].liveTensors;
    const t0 = performance.now();
    expect(() => vit.create({ ...small, depth })).toThrow(MemoryError);
    expect(() => vit.create({ ...small, depth })).toThrow(new RegExp(`float32 parameters and ${depth} blocks need about \\d+ bytes, more than this machine's memory`));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(memory()[0].liveTensors).toBe(live);
  });

  it('rejects bad configs and inputs with clear errors', () => {
    expect(() => vit.create('vit_huge_patch99')).toThrow(/unknown model/);
    expect(() => vit.create({ ...tinyCfg, embedDim: 65 })).toThrow(/divisible by numHeads/);
    expect(() => vit.create({ ...tinyCfg, imgSize: 30 })).toThrow(/divisible by patchSize/);
    const m = vit.create({ ...tinyCfg, depth: 1 });
    expect(() => m.forward(tensor(randn([1, 3, 16, 16], 1), [1, 3, 16, 16]))).toThrow(/input must be \[B, 3, 32, 32\]/);
    expect(vit.configs.deit_small_patch16_224.embedDim).toBe(384);
    const s = vit.create('deit_tiny_patch16_224', { numClasses: 10 });
    // timm's deit_tiny_patch16_224 has 5,717,416 parameters with its 1000-class head (192·1000 + 1000).
    expect(s.numParams()).toBe(5717416 - 193000 + (192 * 10 + 10));
    s.dispose();
  });
});
