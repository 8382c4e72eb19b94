/**
 * VisionTransformer mirroring timm's `VisionTransformer` (class token, learned position embedding,
 * pre-norm blocks, token pooling): same module structure and parameter names, so timm state dicts
 * load without renaming. LayerNorm eps 1e-6 and exact-erf GELU as timm; attention runs the fused
 * kernel over the packed qkv.
 *
 * Forward, for x [B, C, H, W]:
 *   t = patch_embed(x) [B, L, E] → cat(cls_token, t) + pos_embed → blocks → norm → t[:, 0] → head.
 * A block: t = t + attn(norm1(t)); t = t + mlp(norm2(t)). The linears go through ops.linearFused:
 * without gradient recording fc1's GELU and the two residual adds run inside the GEMMs' stores and
 * the weights are used pre-packed (cached natively while unchanged); with recording it is the plain
 * composition (same values up to rounding).
 *
 * Devices and precision: `model.to('cuda')` moves every parameter in place; a forward runs on the
 * device of its input (every tensor it creates is made there). Under autocast('bfloat16') on cuda the
 * linears (patch embedding, qkv, proj, fc1 + GELU, fc2, head) and attention run in bfloat16 while the
 * residual stream, LayerNorm's arithmetic and the loss stay float32, and the parameters and gradients
 * float32. The norms write their output in bfloat16 there (only bf16 GEMMs read it), and without
 * gradient proj and fc2 add the float32 residual in their GEMM's epilogue (ops.linearFused).
 */
import { totalmem } from 'node:os';
import { lowOutDtype } from '../autocast.js';
import { boolOpt, int, optsOf, show } from '../args.js';
import { ArgumentError, MemoryError } from '../errors.js';
import { checkpointBytes, CONFIG_KEY, readCheckpoint, runFile, type StateDict } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/safetensors.js';
import * as ops from '../ops/index.js';
import { full, Tensor, tidy } from '../tensor.js';
import { truncNormal } from './init.js';
import { LayerNorm, Linear } from './layers.js';
import { Module, Parameter } from './module.js';

export interface VitConfig {
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  numClasses: number;
  qkvBias: boolean;
  /** LayerNorm eps (timm: 1e-6; Hugging Face ViT configs use 1e-12). */
  layerNormEps: number;
}

const BASE: Omit<VitConfig, 'embedDim' | 'depth' | 'numHeads'> = {
  imgSize: 224, patchSize: 16, inChans: 3, mlpRatio: 4, numClasses: 1000, qkvBias: true, layerNormEps: 1e-6,
};

/** timm's named configurations (vit_* and deit_* share the architecture). */
export const VIT_CONFIGS: Record<string, VitConfig> = {
  vit_tiny_patch16_224: { ...BASE, embedDim: 192, depth: 12, numHeads: 3 },
  vit_small_patch16_224: { ...BASE, embedDim: 384, depth: 12, numHeads: 6 },
  vit_base_patch16_224: { ...BASE, embedDim: 768, depth: 12, numHeads: 12 },
  deit_tiny_patch16_224: { ...BASE, embedDim: 192, depth: 12, numHeads: 3 },
  deit_small_patch16_224: { ...BASE, embedDim: 384, depth: 12, numHeads: 6 },
  deit_base_patch16_224: { ...BASE, embedDim: 768, depth: 12, numHeads: 12 },
};

/** Fills defaults and validates a config (clear errors for every inconsistent field). */
export function resolveConfig(c: Partial<VitConfig> | string, overrides: Partial<VitConfig> = {}): VitConfig {
  let base: Partial<VitConfig>;
  if (typeof c !== 'string' && (typeof c !== 'object' || c === null || Array.isArray(c))) {
    throw new ArgumentError(`config must be a timm model name or a config object, got ${show(c)}`);
  }
  if (typeof c === 'string') {
    const named = VIT_CONFIGS[c];
    if (!named) throw new ArgumentError(`unknown model '${c}'; known: ${Object.keys(VIT_CONFIGS).join(', ')}`);
    base = named;
  } else base = { ...BASE, ...c };
  const cfg = { ...BASE, ...base, ...overrides } as VitConfig;
  const intFields: (keyof VitConfig)[] = ['imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'numClasses'];
  for (const k of intFields) {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (k === 'depth' || k === 'numClasses' ? 0 : 1)) {
      throw new ArgumentError(`config.${k} must be a positive integer, got ${show(v)}`);
    }
  }
  if (cfg.imgSize % cfg.patchSize) throw new ArgumentError(`config.imgSize ${cfg.imgSize} must be divisible by patchSize ${cfg.patchSize}`);
  if (cfg.embedDim % cfg.numHeads) throw new ArgumentError(`config.embedDim ${cfg.embedDim} must be divisible by numHeads ${cfg.numHeads}`);
  if (!(typeof cfg.mlpRatio === 'number' && cfg.mlpRatio > 0)) throw new ArgumentError(`config.mlpRatio must be a number > 0, got ${show(cfg.mlpRatio)}`);
  if (!Number.isInteger(cfg.embedDim * cfg.mlpRatio)) throw new ArgumentError('config.embedDim * mlpRatio must be an integer');
  if (!(typeof cfg.layerNormEps === 'number' && cfg.layerNormEps >= 0)) throw new ArgumentError(`config.layerNormEps must be a number ≥ 0, got ${show(cfg.layerNormEps)}`);
  if (typeof cfg.qkvBias !== 'boolean') throw new ArgumentError(`config.qkvBias must be a boolean, got ${show(cfg.qkvBias)}`);
  // Parameters are initialised from JavaScript arrays, which hold at most 2^31 - 1 elements.
  const E = cfg.embedDim;
  const largest: [string, number][] = [
    ['pos_embed', ((cfg.imgSize / cfg.patchSize) ** 2 + 1) * E], ['patch_embed.proj.weight', E * cfg.inChans * cfg.patchSize ** 2],
    ['qkv.weight', 3 * E * E], ['fc1.weight', E * E * cfg.mlpRatio], ['head.weight', cfg.numClasses * E],
  ];
  for (const [name, n] of largest) {
    if (n > 2 ** 31 - 1) throw new ArgumentError(`config: ${name} would hold ${n} elements, more than a tensor here can (2^31 - 1)`);
  }
  return cfg;
}

/** The parameters of timm's patch_embed.proj Conv2d: weight [E, C, p, p], bias [E]. */
export class ConvProj extends Module {
  weight: Parameter;
  bias: Parameter;
  constructor(embedDim: number, inChans: number, patchSize: number, seed: number) {
    super();
    this.weight = truncNormal([embedDim, inChans, patchSize, patchSize], 0.02, seed);
    this.bias = Parameter.from(full([embedDim], 0));
  }
}

/** Conv2d(inChans, E, kernel = stride = patchSize) as unfold + GEMM. */
export class PatchEmbed extends Module {
  proj: ConvProj;
  constructor(readonly patchSize: number, inChans: number, embedDim: number, seed: number) {
    super();
    this.proj = new ConvProj(embedDim, inChans, patchSize, seed);
  }
  forward(x: Tensor): Tensor {
    return ops.patchEmbed(x, this.proj.weight, this.proj.bias, this.patchSize);
  }
}

export class Attention extends Module {
  qkv: Linear;
  proj: Linear;
  constructor(readonly dim: number, readonly numHeads: number, qkvBias: boolean, seed: number) {
    super();
    this.qkv = new Linear(dim, dim * 3, { bias: qkvBias, seed });
    this.proj = new Linear(dim, dim, { seed: seed + 1 });
  }
  /** opts: keep mask / head gate as in ops.attention; residual (shaped like x) is added to the output. */
  forward(x: Tensor, opts: { keep?: Tensor | null; headGate?: Tensor | null; residual?: Tensor | null } = {}): Tensor {
    const qkv = ops.linearFused(x, this.qkv.weight, this.qkv.bias);
    const o = ops.attention(qkv, { numHeads: this.numHeads, keep: opts.keep, headGate: opts.headGate });
    const y = ops.linearFused(o, this.proj.weight, this.proj.bias, { residual: opts.residual });
    qkv.dispose();
    o.dispose();
    return y;
  }
}

export class Mlp extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(dim: number, hidden: number, seed: number) {
    super();
    this.fc1 = new Linear(dim, hidden, { seed });
    this.fc2 = new Linear(hidden, dim, { seed: seed + 1 });
  }
  /** fc2(gelu(fc1(x))) (+ residual, shaped like x). */
  forward(x: Tensor, residual: Tensor | null = null): Tensor {
    const a = ops.linearFused(x, this.fc1.weight, this.fc1.bias, { activation: 'gelu' });
    const y = ops.linearFused(a, this.fc2.weight, this.fc2.bias, { residual });
    a.dispose();
    return y;
  }
}

export class Block extends Module {
  norm1: LayerNorm;
  attn: Attention;
  norm2: LayerNorm;
  mlp: Mlp;
  constructor(cfg: VitConfig, seed: number) {
    super();
    this.norm1 = new LayerNorm(cfg.embedDim, cfg.layerNormEps);
    this.attn = new Attention(cfg.embedDim, cfg.numHeads, cfg.qkvBias, seed);
    this.norm2 = new LayerNorm(cfg.embedDim, cfg.layerNormEps);
    this.mlp = new Mlp(cfg.embedDim, cfg.embedDim * cfg.mlpRatio, seed + 2);
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      // Under autocast the norms feed only bf16 GEMMs: they write bfloat16 directly (same bits as
      // float32 then cast; one pass and one launch fewer each).
      const ln = { dtype: lowOutDtype(x.device) };
      const a = this.attn.forward(this.norm1.forward(x, ln), { residual: x });
      return this.mlp.forward(this.norm2.forward(a, ln), a);
    });
  }
}

/** Host memory one block's objects take beyond its parameters (an upper estimate; see the constructor). */
const BLOCK_OVERHEAD_BYTES = 32 * 1024;

export class VisionTransformer extends Module {
  readonly config: VitConfig;
  patch_embed: PatchEmbed;
  cls_token: Parameter;
  pos_embed: Parameter;
  blocks: Block[];
  norm: LayerNorm;
  head: Linear;

  constructor(config: Partial<VitConfig> | string, opts?: ({ seed?: number } & Partial<VitConfig>) | null) {
    super();
    const { seed = 0, ...over } = optsOf(opts, 'vit.create');
    // every parameter's init seed is seed * 1000 + a small offset: exact below 2^53
    int(seed, 'seed', 'vit.create', 0, 2 ** 42);
    const cfg = resolveConfig(config, over);
    // A config whose parameters cannot fit in memory (say depth 2^31) is refused before building
    // block after block of it. Each block also costs its objects (12 tensors, their wrappers and
    // modules): about 7-21 KiB measured with a 16-wide model, counted as BLOCK_OVERHEAD_BYTES, which
    // matters only for absurd depths (a million blocks: 32 GB beside 13 GB of parameters).
    const count = parameterCount(cfg);
    const need = count * 4 + cfg.depth * BLOCK_OVERHEAD_BYTES;
    if (need > totalmem()) {
      throw new MemoryError(`vit.create: the model's ${count} float32 parameters and ${cfg.depth} blocks need about ${need} bytes, more than this machine's memory (${totalmem()})`);
    }
    this.config = cfg;
    const L = (cfg.imgSize / cfg.patchSize) ** 2;
    this.patch_embed = new PatchEmbed(cfg.patchSize, cfg.inChans, cfg.embedDim, seed * 1000 + 1);
    this.cls_token = truncNormal([1, 1, cfg.embedDim], 1e-6, seed * 1000 + 2);
    this.pos_embed = truncNormal([1, L + 1, cfg.embedDim], 0.02, seed * 1000 + 3);
    this.blocks = Array.from({ length: cfg.depth }, (_, i) => new Block(cfg, seed * 1000 + 10 + i * 8));
    this.norm = new LayerNorm(cfg.embedDim, cfg.layerNormEps);
    this.head = new Linear(cfg.embedDim, cfg.numClasses, { seed: seed * 1000 + 4 });
  }

  get numTokens(): number {
    return (this.config.imgSize / this.config.patchSize) ** 2 + 1;
  }

  private checkInput(x: Tensor): void {
    const c = this.config;
    if (!(x instanceof Tensor)) throw new ArgumentError(`VisionTransformer: input must be a Tensor [B, ${c.inChans}, ${c.imgSize}, ${c.imgSize}], got ${show(x)}`);
    if (x.rank !== 4 || x.shape[1] !== c.inChans || x.shape[2] !== c.imgSize || x.shape[3] !== c.imgSize) {
      throw new ArgumentError(`VisionTransformer: input must be [B, ${c.inChans}, ${c.imgSize}, ${c.imgSize}], got [${x.shape}]`);
    }
  }

  /** Patch embedding + class token + position embedding: [B, C, H, W] → [B, 1 + L, E]. */
  embed(x: Tensor): Tensor {
    this.checkInput(x);
    return tidy(() => {
      const t = this.patch_embed.forward(x);
      const B = x.shape[0];
      const cls = ops.add(full([B, 1, this.config.embedDim], 0, { device: x.device }), this.cls_token);
      return ops.add(ops.concat([cls, t], 1), this.pos_embed);
    });
  }

  /** Final norm and head on the class token: [B, N, E] → [B, numClasses]. */
  classify(tokens: Tensor): Tensor {
    const E = this.config.embedDim;
    if (!(tokens instanceof Tensor) || tokens.rank !== 3 || tokens.shape[2] !== E || tokens.shape[1] < 1) {
      throw new ArgumentError(`VisionTransformer.classify: tokens must be a Tensor [B, N, ${E}], got ${tokens instanceof Tensor ? `[${tokens.shape}]` : show(tokens)}`);
    }
    return tidy(() => {
      // LayerNorm is per token, so norming only the class token gives timm's values (norm of all
      // tokens, then the class token) without normalising the N - 1 others.
      const cls = ops.reshape(ops.slice(tokens, 1, 0, 1), [tokens.shape[0], this.config.embedDim]);
      return this.head.forward(this.norm.forward(cls, { dtype: lowOutDtype(tokens.device) }));
    });
  }

  /** Token features after the blocks (before the final norm). */
  forwardFeatures(x: Tensor): Tensor {
    return this.forwardBlocks(this.embed(x));
  }

  /**
   * Runs blocks [0, end) on tokens t and takes t over: each block's input is disposed once used, the
   * current one also when a block throws (out of memory; the block has freed its own). end = 0
   * returns t itself.
   */
  forwardBlocks(t: Tensor, end = this.blocks.length): Tensor {
    try {
      for (let l = 0; l < end; l++) {
        const next = this.blocks[l].forward(t);
        t.dispose();
        t = next;
      }
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  /** Logits [B, numClasses]. */
  forward(x: Tensor): Tensor {
    const f = this.forwardFeatures(x);
    try {
      return this.classify(f);
    } finally {
      f.dispose();
    }
  }

  /**
   * Loads weights from a safetensors checkpoint (ours, timm's, or Hugging Face transformers'). Strict
   * by default: missing, unexpected and mismatched names are all reported in one error.
   */
  async load(path: string, opts?: { strict?: boolean } | null): Promise<this> {
    const strict = boolOpt(optsOf(opts, 'load').strict, true, 'strict', 'load');
    const { state } = await readCheckpoint(path);
    this.loadStateDict(state, strict);
    return this;
  }

  /** Saves weights (timm names, float32) with the config in the metadata; atomic. */
  async save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    await writeFileAtomic(path, this.checkpointBytes(metadata));
  }

  /** The bytes save() writes (safetensors), for writing them with other files as one save. */
  checkpointBytes(metadata: Record<string, string> = {}): Uint8Array {
    return checkpointBytes(this.stateDict(), { ...metadata, [CONFIG_KEY]: JSON.stringify(this.config) });
  }
}

/** Guesses a config from a foreign checkpoint's shapes (numHeads = embedDim / 64 unless given). */
export function inferConfig(state: StateDict, over: Partial<VitConfig> = {}): VitConfig {
  if (!(state instanceof Map)) throw new ArgumentError(`inferConfig: state must be a Map from names to { shape, data } (a state dict), got ${show(state)}`);
  const need = (k: string) => {
    const e = state.get(k);
    if (!e) throw new ArgumentError(`cannot infer the model config: '${k}' is missing (pass a config)`);
    return e.shape;
  };
  const w = need('patch_embed.proj.weight');
  const pos = need('pos_embed');
  const embedDim = w[0];
  let depth = 0;
  while (state.has(`blocks.${depth}.norm1.weight`)) depth++;
  const fc1 = depth ? need('blocks.0.mlp.fc1.weight') : [embedDim * 4];
  const grid = Math.round(Math.sqrt(pos[1] - 1));
  return resolveConfig({
    patchSize: w[2],
    inChans: w[1],
    embedDim,
    imgSize: grid * w[2],
    depth,
    numHeads: over.numHeads ?? Math.max(1, Math.round(embedDim / 64)),
    mlpRatio: fc1[0] / embedDim,
    numClasses: state.get('head.weight')?.shape[0] ?? 0,
    qkvBias: state.has('blocks.0.attn.qkv.bias'),
    ...over,
  });
}

/** How many parameter elements a model of this config holds (timm's layout, as VisionTransformer builds it). */
export function parameterCount(config: Partial<VitConfig> | string): number {
  const cfg = resolveConfig(config);
  const E = cfg.embedDim;
  const L = (cfg.imgSize / cfg.patchSize) ** 2;
  const hidden = E * cfg.mlpRatio;
  const block = 2 * E + 3 * E * E + (cfg.qkvBias ? 3 * E : 0) + E * E + E + 2 * E + hidden * E + hidden + E * hidden + E;
  return E * cfg.inChans * cfg.patchSize ** 2 + E + E + (L + 1) * E + cfg.depth * block + 2 * E + cfg.numClasses * E + cfg.numClasses;
}

/**
 * Builds a model from a checkpoint: our config metadata when present, else inferred from shapes.
 * `path` may also be a Trainer's run directory (its model.safetensors).
 */
export async function fromFile(path: string, over: Partial<VitConfig> = {}): Promise<VisionTransformer> {
  if (typeof path !== 'string' || path === '') throw new ArgumentError(`vit.fromFile: path must be a non-empty string, got ${show(path)}`);
  path = runFile(path, 'model.safetensors');
  const { state, metadata } = await readCheckpoint(path);
  let cfg: VitConfig;
  if (metadata[CONFIG_KEY]) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(metadata[CONFIG_KEY]);
    } catch {
      throw new ArgumentError(`${path}: the ${CONFIG_KEY} metadata is not valid JSON`);
    }
    cfg = resolveConfig(parsed as Partial<VitConfig>, over);
  } else cfg = inferConfig(state, over);
  // A strict load needs exactly the file's tensors, so a config asking for more (or fewer) parameter
  // elements than the file holds can only fail: say so before allocating it (a hostile or corrupt
  // config could otherwise ask for millions of blocks).
  let held = 0;
  for (const e of state.values()) held += e.shape.reduce((a, b) => a * b, 1);
  const want = parameterCount(cfg);
  if (want !== held) {
    throw new ArgumentError(`${path}: the model config (${JSON.stringify(cfg)}) has ${want} parameter elements, the file holds ${held}`);
  }
  const m = new VisionTransformer(cfg);
  try {
    m.loadStateDict(state, true);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return m;
}

/** Creates a model by timm name ('deit_small_patch16_224', ...) or config, randomly initialised. */
export function create(config: string | Partial<VitConfig>, opts?: ({ seed?: number } & Partial<VitConfig>) | null): VisionTransformer {
  return new VisionTransformer(config, opts);
}
