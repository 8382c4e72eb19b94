// Corrupt and hostile checkpoints, fuzzed (fast-check): a valid file (ours with its config, and a
// Hugging Face-named one) with random byte flips, truncations, a rewritten length prefix, or one
// field of its JSON header replaced by an edge value. Parsing, readCheckpoint and vit.fromFile must
// each succeed or throw a typed VitrimError (never a RangeError or TypeError, never a hang), and
// leave no tensor behind.
import fc from 'fast-check';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { memory, policies, VitrimError, vit } from '../lib/index.js';
import { readCheckpoint } from '../lib/io/checkpoint.js';
import { parseSafetensors, serializeSafetensors } from '../lib/io/safetensors.js';
import { RUN_SEED } from './helpers.js';

const RUNS = Number(process.env.VITRIM_FUZZ_RUNS ?? 200);
const dir = mkdtempSync(join(tmpdir(), 'vitrim-io-fuzz-'));
const cfg = { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, numClasses: 3 };
const files: Record<'ours' | 'hf', Uint8Array> = { ours: new Uint8Array(), hf: new Uint8Array() };

/** A timm name as Hugging Face's ViTModel spells it (the inverse of checkpoint.ts's mapping, for the names a depth-1 model has). */
function hfName(n: string): string {
  const b = n.match(/^blocks\.(\d+)\.(.*)$/);
  const blk: Record<string, string> = {
    'norm1.weight': 'layernorm_before.weight', 'norm1.bias': 'layernorm_before.bias',
    'norm2.weight': 'layernorm_after.weight', 'norm2.bias': 'layernorm_after.bias',
    'attn.proj.weight': 'attention.output.dense.weight', 'attn.proj.bias': 'attention.output.dense.bias',
    'mlp.fc1.weight': 'intermediate.dense.weight', 'mlp.fc1.bias': 'intermediate.dense.bias',
    'mlp.fc2.weight': 'output.dense.weight', 'mlp.fc2.bias': 'output.dense.bias',
  };
  if (b && blk[b[2]]) return `vit.encoder.layer.${b[1]}.${blk[b[2]]}`;
  const top: Record<string, string> = {
    cls_token: 'vit.embeddings.cls_token', pos_embed: 'vit.embeddings.position_embeddings',
    'patch_embed.proj.weight': 'vit.embeddings.patch_embeddings.projection.weight',
    'patch_embed.proj.bias': 'vit.embeddings.patch_embeddings.projection.bias',
    'norm.weight': 'vit.layernorm.weight', 'norm.bias': 'vit.layernorm.bias', 'head.weight': 'classifier.weight', 'head.bias': 'classifier.bias',
  };
  return top[n] ?? n;
}

beforeAll(async () => {
  const m = vit.create(cfg, { seed: 5 });
  const p = join(dir, 'ours.safetensors');
  await m.save(p);
  files.ours = new Uint8Array(readFileSync(p));
  // the same weights under Hugging Face names, qkv split into query / key / value
  const tensors = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
  for (const [name, e] of m.stateDict()) {
    const q = name.match(/^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$/);
    if (q) {
      const third = e.data.length / 3;
      ['query', 'key', 'value'].forEach((w, i) => tensors.set(`vit.encoder.layer.${q[1]}.attention.attention.${w}.${q[2]}`,
        { dtype: 'F32', shape: [e.shape[0] / 3, ...e.shape.slice(1)], data: e.data.slice(i * third, (i + 1) * third) }));
    } else tensors.set(hfName(name), { dtype: 'F32', shape: [...e.shape], data: e.data });
  }
  files.hf = serializeSafetensors(tensors, { format: 'pt' });
  m.dispose();
  // both load as they are (the fuzz starts from valid files)
  writeFileSync(join(dir, 'hf.safetensors'), files.hf);
  expect((await readCheckpoint(join(dir, 'hf.safetensors'))).state.get('blocks.0.attn.qkv.weight')!.shape).toEqual([48, 16]);
});

const EDGE_JSON: unknown[] = [-1, 0, 1, 2 ** 53, 1e300, 0.5, 'F32', 'BF16', 'I64', 'x', null, [], [1], [0, 1e12], [-8, 8], [2 ** 53, 2 ** 53 + 8], {}, true];

/** One mutation of a file: flips, a cut, a new length prefix, or one header field replaced. */
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('flips' as const), at: fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('length' as const), v: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, 1n, 7n, 1n << 40n)) }),
  // a valid file whose entry has another shape of the same size (flattened, or a 1 put in front)
  fc.record({ kind: fc.constant('reshape' as const), entry: fc.nat(), flat: fc.boolean() }),
  fc.record({ kind: fc.constant('field' as const), entry: fc.nat(), path: fc.constantFrom('dtype', 'shape', 'data_offsets', 'shape.0', 'data_offsets.1', 'whole', '__metadata__'), v: fc.constantFrom(...EDGE_JSON) }),
);
type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never;

function mutate(src: Uint8Array, m: Mutation): Uint8Array {
  const out = src.slice();
  const dv = new DataView(out.buffer);
  switch (m.kind) {
    case 'flips':
      for (const [i, b] of m.at) out[i % out.length] = b;
      return out;
    case 'cut':
      return out.slice(0, m.at % out.length);
    case 'length':
      dv.setBigUint64(0, m.v, true);
      return out;
    case 'reshape':
    case 'field': {
      const n = Number(dv.getBigUint64(0, true));
      const hdr = JSON.parse(new TextDecoder().decode(out.subarray(8, 8 + n))) as Record<string, Record<string, unknown>>;
      const names = Object.keys(hdr).filter((x) => x !== '__metadata__');
      const name = names[m.entry % names.length];
      if (m.kind === 'reshape') {
        const shape = hdr[name].shape as number[];
        hdr[name].shape = m.flat ? [shape.reduce((a, b) => a * b, 1)] : [1, ...shape];
      } else if (m.path === 'whole') hdr[name] = m.v as Record<string, unknown>;
      else if (m.path === '__metadata__') hdr.__metadata__ = m.v as Record<string, unknown>;
      else {
        const [k, i] = m.path.split('.');
        const e = hdr[name];
        if (e && typeof e === 'object') {
          if (i === undefined) e[k] = m.v;
          else if (Array.isArray(e[k])) (e[k] as unknown[])[Number(i)] = m.v;
        }
      }
      const h = new TextEncoder().encode(JSON.stringify(hdr));
      const data = out.subarray(8 + n);
      const res = new Uint8Array(8 + h.length + data.length);
      new DataView(res.buffer).setBigUint64(0, BigInt(h.length), true);
      res.set(h, 8);
      res.set(data, 8 + h.length);
      return res;
    }
  }
}

/** fn() succeeds or throws a typed VitrimError; anything else fails with the mutation named. */
async function typedOrOk(what: string, m: Mutation, fn: () => Promise<unknown> | unknown): Promise<void> {
  try {
    const r = await fn();
    if (r && typeof r === 'object' && 'dispose' in r) (r as { dispose(): void }).dispose();
  } catch (e) {
    if (!(e instanceof VitrimError)) {
      throw new Error(`${what} after ${JSON.stringify(m, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}: ${(e as Error)?.name}: ${(e as Error)?.message}`);
    }
  }
}

describe('corrupt checkpoints, fuzzed', () => {
  for (const [k, which] of (['ours', 'hf'] as const).entries()) {
    it(`${which === 'ours' ? 'our checkpoint (config in the metadata)' : 'a Hugging Face checkpoint'}: typed errors or a model, nothing leaked`, async () => {
      const live = memory()[0].liveTensors;
      let n = 0;
      await fc.assert(
        fc.asyncProperty(mutationArb, async (m) => {
          const bytes = mutate(files[which], m);
          const path = join(dir, `case-${which}-${n++ % 4}.safetensors`);
          writeFileSync(path, bytes);
          await typedOrOk('parseSafetensors', m, () => parseSafetensors(bytes, 'case'));
          await typedOrOk('readCheckpoint', m, () => readCheckpoint(path));
          await typedOrOk('vit.fromFile', m, () => vit.fromFile(path));
          await typedOrOk('model.load', m, async () => {
            const model = vit.create(cfg);
            try {
              await model.load(path);
            } finally {
              model.dispose();
            }
          });
        }),
        { numRuns: RUNS, seed: RUN_SEED + k },
      );
      expect(memory()[0].liveTensors).toBe(live);
    }, 120_000);
  }
});

describe('policy files, fuzzed', () => {
  // A saved AdaViT policy (gates + the options that rebuild them in its metadata), corrupted as the
  // checkpoints above, and with one option of its saved config replaced by an edge value:
  // policies.fromFile gives a policy or a typed error, and leaves nothing behind.
  it('corrupt bytes and hostile saved options: typed errors or a policy, nothing leaked', async () => {
    const model = vit.create({ ...cfg, depth: 2 }, { seed: 5 });
    const path = join(dir, 'policy.safetensors');
    const p = policies.adavit(model, { seed: 1, targets: { patch: 0.4 } });
    await p.save(path);
    p.dispose();
    const bytes = new Uint8Array(readFileSync(path));
    const valid = await policies.fromFile(model, path);
    expect(valid.targets.patch).toBe(0.4);
    valid.dispose();
    const live = memory()[0].liveTensors;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(mutationArb, async (m) => {
        const at = join(dir, `policy-case-${n++ % 4}.safetensors`);
        writeFileSync(at, mutate(bytes, m));
        await typedOrOk('policies.fromFile', m, () => policies.fromFile(model, at));
      }),
      { numRuns: RUNS, seed: RUN_SEED + 7 },
    );
    const f = parseSafetensors(bytes);
    const tensors = new Map([...f.entries].map(([name, e]) => [name, { dtype: e.dtype, shape: e.shape, data: f.get(name) }]));
    const saved = JSON.parse(f.metadata['vitrim.policy.config']);
    const keys = ['targets', 'weights', 'keepLayers', 'threshold', 'tau', 'seed', 'gateHeads', 'gateBlocks', 'gatePatches', 'initBias',
      'targets.patch', 'targets.head', 'weights.block'];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...keys), fc.constantFrom(...EDGE_JSON, -0.5, 2, 'adavit', { patch: 2 }, { head: 'x' }, '{'), fc.boolean(),
        async (key, v, asText) => {
          const cfgOut = structuredClone(saved);
          const [k, sub] = key.split('.');
          if (sub) cfgOut[k] = { ...(typeof cfgOut[k] === 'object' ? cfgOut[k] : {}), [sub]: v };
          else cfgOut[k] = v;
          const meta = { ...f.metadata, 'vitrim.policy.config': asText ? String(v) : JSON.stringify(cfgOut) };
          const at = join(dir, `policy-cfg-${n++ % 4}.safetensors`);
          writeFileSync(at, serializeSafetensors(tensors, meta));
          await typedOrOk('policies.fromFile (config)', { key, v, asText } as never, () => policies.fromFile(model, at));
        }),
      { numRuns: RUNS, seed: RUN_SEED + 8 },
    );
    expect(memory()[0].liveTensors).toBe(live);
    model.dispose();
  }, 120_000);
});
