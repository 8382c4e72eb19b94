/**
 * AdaViT (Meng et al., CVPR 2022): per-image patch, head and block gates for a ViT backbone.
 *
 * Decision network, for every block l ≥ keepLayers (earlier blocks run dense):
 *   head gate  Linear(C → H) on the class token of the block input   → one logit per head
 *   block gate Linear(C → 2) on the class token                        → attention / MLP sub-layer
 *   patch gate Linear(C → 1) on every patch token                      → one logit per patch
 * The class token is always kept; decisions are per block, not hierarchical (a patch dropped at l
 * may return at l+1: its activation passes through block l unchanged).
 *
 * Training (masked, dense compute): Gumbel-sigmoid with straight-through gradients,
 *   y_soft = σ((z + ε)/τ), ε ~ Logistic(0,1), forward value y = 1[y_soft > θ].
 * A dropped token is masked as a key (attention logits of kept queries to it are −∞; it attends only
 * to itself, eps = 0 so no leakage), and its attention and MLP updates are multiplied by its
 * decision, so it leaves the block unchanged; a dropped head's output channels are zero; a dropped
 * sub-layer is skipped: x ← x + b_attn·keep·proj(Attn(norm1 x)); x ← x + b_mlp·keep·MLP(norm2 x).
 * This is exactly what the packed inference computes when it removes the dropped work.
 *
 * One threshold θ for training and inference (deviation from the public code, which uses θ = 0.6 for
 * tokens in training but keeps z > 0.405 at inference): inference keeps iff σ(z/τ) > θ, i.e. the
 * training rule with the noise at its median 0. With the default θ = 0.5 both reduce to z > 0.
 * τ is configurable (default 5 as the public code) with an optional linear schedule.
 *
 * Loss: CE + 2·|head usage − γ_h| + 2·|block usage − γ_b| + 2·(token usage − γ_t)² (the public
 * code's form and weights), usage measured on the hard decisions (straight-through gradients).
 *
 * Devices and precision: the gates are created on the backbone's device (`policy.to(device)` moves
 * them; the backbone moves with `model.to`). Everything a forward creates lives on the input's
 * device. Under autocast('bfloat16') the backbone's linears and attention run in bfloat16, but the
 * decision network (its gate linears, tiny) and the sampling run in float32, so a decision never
 * depends on the bfloat16 rounding of its own gate logits.
 */
import { join } from 'node:path';
import { autocast, lowOutDtype } from '../autocast.js';
import { boolOpt, int, num, optsOf, show } from '../args.js';
import { ArgumentError, IOError } from '../errors.js';
import { checkpointBytes, readCheckpoint, runFile, SAVE_ID_KEY, saveIdOf } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/safetensors.js';
import * as ops from '../ops/index.js';
import { Linear } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { VisionTransformer } from '../nn/vit.js';
import { full, Tensor, tidy } from '../tensor.js';

export interface AdaVitTargets {
  patch: number;
  head: number;
  block: number;
}

export interface AdaVitOptions {
  /** Target usage ratios γ (default 0.5 each). */
  targets?: Partial<AdaVitTargets>;
  /** Blocks before this index run dense (default 1). */
  keepLayers?: number;
  /** Gumbel temperature τ (default 5, as the public code), or a schedule from step to τ. */
  tau?: number | ((step: number) => number);
  /** Decision threshold θ in (0,1), the same in training and inference (default 0.5). */
  threshold?: number;
  /** Loss weights (defaults 2, 2, 2). */
  weights?: Partial<AdaVitTargets>;
  /** Initial gate bias: σ(bias/τ) is the initial keep probability (default 3). */
  initBias?: number;
  /** Philox seed for the Gumbel noise. */
  seed?: number;
  /** Gate the attention heads (default true). */
  gateHeads?: boolean;
  /** Gate whole sub-layers (default true). */
  gateBlocks?: boolean;
  /** Gate patches (default true). */
  gatePatches?: boolean;
}

/** Gate layers of one block: timm-like names `gates.{i}.head|block|patch.weight`. */
export class BlockGates extends Module {
  head: Linear;
  block: Linear;
  patch: Linear;
  constructor(dim: number, heads: number, bias: number, seed: number) {
    super();
    this.head = new Linear(dim, heads, { seed });
    this.block = new Linear(dim, 2, { seed: seed + 1 });
    this.patch = new Linear(dim, 1, { seed: seed + 2 });
    for (const l of [this.head, this.block, this.patch]) l.bias!.assign(new Float32Array(l.outFeatures).fill(bias));
  }
}

export interface Decisions {
  /** [B, N] keep (class token 1), or null when patches are not gated. */
  keep: Tensor | null;
  /** [B, H] head keep, or null. */
  heads: Tensor | null;
  /** [B, 1, 1] attention / MLP sub-layer keep, or null. */
  attn: Tensor | null;
  mlp: Tensor | null;
}

export interface AdaVitTrainOutput {
  logits: Tensor;
  /** Mean usage over gated blocks (scalars with straight-through gradients). */
  usage: { patch: Tensor | null; head: Tensor | null; block: Tensor | null };
}

export class AdaVitPolicy extends Module {
  readonly kind = 'adavit';
  gates: BlockGates[];
  readonly targets: AdaVitTargets;
  readonly weights: AdaVitTargets;
  readonly keepLayers: number;
  readonly threshold: number;
  readonly gateHeads: boolean;
  readonly gateBlocks: boolean;
  readonly gatePatches: boolean;
  private readonly tauOpt: number | ((step: number) => number);
  /** Training step (advances the τ schedule and the noise stream). */
  step = 0;
  seed: number;
  private calls = 0;

  constructor(readonly model: VisionTransformer, opts0: AdaVitOptions | null = {}) {
    super();
    const opts = optsOf(opts0, 'adavit');
    if (!(model instanceof VisionTransformer)) throw new ArgumentError(`adavit: model must be a VisionTransformer, got ${show(model)}`);
    const c = model.config;
    this.keepLayers = opts.keepLayers ?? 1;
    if (!Number.isInteger(this.keepLayers) || this.keepLayers < 0 || this.keepLayers > c.depth) {
      throw new ArgumentError(`adavit: keepLayers must be an integer in [0, ${c.depth}], got ${opts.keepLayers}`);
    }
    const t = { patch: 0.5, head: 0.5, block: 0.5, ...optsOf(opts.targets, 'adavit') };
    for (const [k, v] of Object.entries(t)) {
      if (!(typeof v === 'number' && v >= 0 && v <= 1)) throw new ArgumentError(`adavit: targets.${k} must be in [0, 1], got ${v}`);
    }
    this.targets = t;
    this.weights = { patch: 2, head: 2, block: 2, ...optsOf(opts.weights, 'adavit') };
    for (const [k, v] of Object.entries(this.weights)) num(v, `weights.${k}`, 'adavit', (x) => x >= 0 && x < Infinity, 'finite and ≥ 0');
    this.threshold = opts.threshold ?? 0.5;
    if (!(this.threshold > 0 && this.threshold < 1)) throw new ArgumentError(`adavit: threshold must be in (0, 1), got ${this.threshold}`);
    this.tauOpt = opts.tau ?? 5;
    if (typeof this.tauOpt !== 'function') num(this.tauOpt, 'tau', 'adavit', (v) => v > 0 && v < Infinity, 'finite and > 0 (or a function of the step)');
    this.gateHeads = boolOpt(opts.gateHeads, true, 'gateHeads', 'adavit');
    this.gateBlocks = boolOpt(opts.gateBlocks, true, 'gateBlocks', 'adavit');
    this.gatePatches = boolOpt(opts.gatePatches, true, 'gatePatches', 'adavit');
    this.seed = int(opts.seed ?? 0, 'seed', 'adavit', 0);
    const bias = num(opts.initBias ?? 3, 'initBias', 'adavit', Number.isFinite, 'finite');
    this.gates = Array.from({ length: c.depth - this.keepLayers }, (_, i) => new BlockGates(c.embedDim, c.numHeads, bias, 7000 + i * 3 + this.seed));
    const device = model.device;
    if (device !== 'cpu') this.to(device);
  }

  /** `model` is the backbone this policy gates, not a part of it: to() moves the gates only. */
  protected override referencedKeys(): readonly string[] {
    return ['model'];
  }

  /** The options that rebuild this policy (saved with its checkpoint; a τ schedule is saved as its current value). */
  options(): AdaVitOptions {
    return {
      targets: { ...this.targets }, weights: { ...this.weights }, keepLayers: this.keepLayers, threshold: this.threshold,
      tau: this.tau, seed: this.seed, gateHeads: this.gateHeads, gateBlocks: this.gateBlocks, gatePatches: this.gatePatches,
    };
  }

  get tau(): number {
    const t = typeof this.tauOpt === 'function' ? this.tauOpt(this.step) : this.tauOpt;
    if (!(t > 0)) throw new ArgumentError(`adavit: the tau schedule returned ${t} at step ${this.step}`);
    return t;
  }

  /** l names a gated block and x is a block input [B, N, C] of the backbone (ArgumentError otherwise). */
  private checkGateInput(l: number, x: Tensor, op: string): void {
    int(l, 'l', `AdaVitPolicy.${op}`, this.keepLayers, this.model.config.depth - 1);
    const C = this.model.config.embedDim;
    if (!(x instanceof Tensor) || x.rank !== 3 || x.shape[2] !== C || x.shape[1] < 2) {
      throw new ArgumentError(`AdaVitPolicy.${op}: x must be a block input Tensor [B, N ≥ 2, ${C}], got ${x instanceof Tensor ? `[${x.shape}]` : show(x)}`);
    }
  }

  /** Gate logits of block l from its input x [B, N, C]: {head [B,H], block [B,2], patch [B,N-1]}. */
  logits(l: number, x: Tensor): { head: Tensor; block: Tensor; patch: Tensor } {
    this.checkGateInput(l, x, 'logits');
    const g = this.gates[l - this.keepLayers];
    const [B, N, C] = x.shape;
    // float32 even under autocast('bfloat16'): the gate linears are tiny and decide by a threshold
    return autocast('float32', () => {
      const cls = ops.reshape(ops.slice(x, 1, 0, 1), [B, C]);
      const patches = ops.slice(x, 1, 1, N);
      return {
        head: g.head.forward(cls),
        block: g.block.forward(cls),
        patch: ops.reshape(g.patch.forward(patches), [B, N - 1]),
      };
    });
  }

  private sample(z0: Tensor, training: boolean): Tensor {
    const tau = this.tau;
    const z = z0.to('float32'); // sampling in float32 (a no-op for the float32 gate logits)
    if (training) {
      return ops.gumbelSigmoid(z, { tau, threshold: this.threshold, hard: true, seed: this.seed, offset: this.step * 4096 + this.calls++ });
    }
    // Inference: the training rule without noise, σ(z/τ) > θ.
    return ops.step(ops.scale(z, 1 / tau), Math.log(this.threshold / (1 - this.threshold)));
  }

  /** Decisions of block l for input x (training: sampled with straight-through; else deterministic). */
  decide(l: number, x: Tensor, training: boolean): Decisions {
    this.checkGateInput(l, x, 'decide');
    if (typeof training !== 'boolean') throw new ArgumentError(`AdaVitPolicy.decide: training must be a boolean, got ${show(training)}`);
    const [B] = x.shape;
    const z = this.logits(l, x);
    const keepP = this.gatePatches ? this.sample(z.patch, training) : null;
    const keep = keepP ? ops.concat([full([B, 1], 1, { device: x.device }), keepP], 1) : null;
    const heads = this.gateHeads ? this.sample(z.head, training) : null;
    let attn: Tensor | null = null;
    let mlp: Tensor | null = null;
    if (this.gateBlocks) {
      const b = this.sample(z.block, training);
      attn = ops.reshape(ops.slice(b, 1, 0, 1), [B, 1, 1]);
      mlp = ops.reshape(ops.slice(b, 1, 1, 2), [B, 1, 1]);
    }
    return { keep, heads, attn, mlp };
  }

  /** One block with masks (training path; differentiable in the decisions). */
  static maskedBlock(model: VisionTransformer, l: number, x: Tensor, d: Decisions): Tensor {
    const blk = model.blocks[l];
    const [B, N] = x.shape;
    const keep3 = d.keep ? ops.reshape(d.keep, [B, N, 1]) : null;
    const gate = (y: Tensor, sub: Tensor | null): Tensor => {
      let r = y;
      if (keep3) r = ops.mul(r, keep3);
      if (sub) r = ops.mul(r, sub);
      return r;
    };
    const ln = { dtype: lowOutDtype(x.device) };  // as in Block.forward: the norms feed bf16 GEMMs only
    const h = blk.norm1.forward(x, ln);
    const qkv = blk.attn.qkv.forward(h);
    const o = ops.attention(qkv, { numHeads: blk.attn.numHeads, keep: d.keep, headGate: d.heads, eps: 0 });
    const a = ops.add(x, gate(blk.attn.proj.forward(o), d.attn));
    return ops.add(a, gate(blk.mlp.forward(blk.norm2.forward(a, ln)), d.mlp));
  }

  /**
   * Training forward: masked, with sampled decisions. Returns logits and usage (means over gated
   * blocks of the hard decisions, with straight-through gradients).
   */
  forwardTrain(x: Tensor): AdaVitTrainOutput {
    const m = this.model;
    this.calls = 0;
    const use = { patch: [] as Tensor[], head: [] as Tensor[], block: [] as Tensor[] };
    let t = m.embed(x);
    for (let l = 0; l < m.blocks.length; l++) {
      if (l < this.keepLayers) {
        t = m.blocks[l].forward(t);
        continue;
      }
      const d = this.decide(l, t, true);
      if (d.keep) use.patch.push(ops.mean(ops.slice(d.keep, 1, 1, t.shape[1])));
      if (d.heads) use.head.push(ops.mean(d.heads));
      if (d.attn && d.mlp) use.block.push(ops.mean(ops.concat([d.attn, d.mlp], 0)));
      t = AdaVitPolicy.maskedBlock(m, l, t, d);
    }
    const logits = m.classify(t);
    const avg = (xs: Tensor[]) => (xs.length ? ops.mean(ops.concat(xs.map((v) => ops.reshape(v, [1])), 0)) : null);
    return { logits, usage: { patch: avg(use.patch), head: avg(use.head), block: avg(use.block) } };
  }

  /** AdaViT's loss: CE + usage penalties toward the targets. Returns the total and its parts. */
  loss(out: AdaVitTrainOutput, labels: Tensor, opts?: { labelSmoothing?: number } | null): { total: Tensor; ce: Tensor } {
    if (typeof out !== 'object' || out === null || typeof out.usage !== 'object' || out.usage === null) {
      throw new ArgumentError(`AdaViT loss: out must be the output of the policy's forward (logits and usage), got ${show(out)}`);
    }
    const ce = ops.crossEntropy(out.logits, labels, optsOf(opts, 'AdaViT loss'));
    let total = ce;
    const { patch, head, block } = out.usage;
    if (head) total = ops.add(total, ops.scale(ops.abs(ops.sub(head, this.targets.head)), this.weights.head));
    if (block) total = ops.add(total, ops.scale(ops.abs(ops.sub(block, this.targets.block)), this.weights.block));
    if (patch) total = ops.add(total, ops.scale(ops.square(ops.sub(patch, this.targets.patch)), this.weights.patch));
    return { total, ce };
  }

  /** Masked forward with deterministic (inference) decisions: the reference for packed inference. */
  forwardMasked(x: Tensor): Tensor {
    return tidy(() => {
      const m = this.model;
      let t = m.embed(x);
      for (let l = 0; l < m.blocks.length; l++) {
        t = l < this.keepLayers ? m.blocks[l].forward(t) : AdaVitPolicy.maskedBlock(m, l, t, this.decide(l, t, false));
      }
      return m.classify(t);
    });
  }

  /**
   * Saves the decision network (float32, timm-style names `gates.i.*`) with the options that rebuild
   * it, atomically; `policies.fromFile(model, path)` reads it back. The backbone is not included
   * (`model.save`).
   */
  async save(path: string): Promise<void> {
    if (typeof path !== 'string' || path === '') throw new ArgumentError(`AdaVitPolicy.save: path must be a non-empty string, got ${show(path)}`);
    await writeFileAtomic(path, this.checkpointBytes());
  }

  /** The bytes save() writes (safetensors), for writing them with other files as one save. */
  checkpointBytes(metadata: Record<string, string> = {}): Uint8Array {
    return checkpointBytes(this.stateDict(), { ...metadata, [POLICY_KIND_KEY]: this.kind, [POLICY_CONFIG_KEY]: JSON.stringify(this.options()) });
  }

  /** Policy parameters only (the decision network). */
  policyParameters(): Parameter[] {
    return this.gates.flatMap((g) => g.parameters());
  }

  /** The decision network's parameters (not the backbone's). */
  override *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    for (let i = 0; i < this.gates.length; i++) yield* this.gates[i].namedParameters(`${prefix ? `${prefix}.` : ''}gates.${i}`);
  }
}

export function adavit(model: VisionTransformer, opts: AdaVitOptions = {}): AdaVitPolicy {
  return new AdaVitPolicy(model, opts);
}

/** Metadata keys of a policy file (written by AdaVitPolicy.save and Trainer.save). */
export const POLICY_KIND_KEY = 'vitrim.policy';
export const POLICY_CONFIG_KEY = 'vitrim.policy.config';

/**
 * Reads a policy saved by `policy.save(path)`, or the `policy.safetensors` of a Trainer's run
 * directory, and attaches it to `model` (the backbone it was trained with: its gates must match the
 * model's width, heads and depth). `over` replaces saved options, e.g. `{ threshold: 0.6 }`.
 * Errors: SafetensorsError for a missing or corrupt file, ArgumentError for a file that is not an
 * AdaViT policy or does not fit the model.
 */
export async function fromFile(model: VisionTransformer, path: string, over?: AdaVitOptions | null): Promise<AdaVitPolicy> {
  if (!(model instanceof VisionTransformer)) throw new ArgumentError(`policies.fromFile: model must be a VisionTransformer, got ${show(model)}`);
  if (typeof path !== 'string' || path === '') throw new ArgumentError(`policies.fromFile: path must be a non-empty string, got ${show(path)}`);
  const extra = optsOf(over, 'policies.fromFile');
  const file = runFile(path, 'policy.safetensors');
  const { state, metadata } = await readCheckpoint(file);
  if (file !== path) {
    // a run directory: its model and policy must come from one Trainer.save (a crash between the
    // renames of a save leaves one of each; vit.fromFile(dir) would then have loaded the other)
    const mine = metadata[SAVE_ID_KEY];
    const model = await saveIdOf(join(path, 'model.safetensors'));
    if (mine !== undefined && model !== undefined && mine !== model) {
      throw new IOError(`${path}: policy.safetensors (${mine}) and model.safetensors (${model}) come from different saves: a save was interrupted`);
    }
  }
  const kind = metadata[POLICY_KIND_KEY];
  if (kind !== 'adavit') {
    throw new ArgumentError(`${file}: not an AdaViT policy file (its '${POLICY_KIND_KEY}' metadata is ${kind === undefined ? 'missing' : JSON.stringify(kind)})`);
  }
  let saved: unknown;
  try {
    saved = JSON.parse(metadata[POLICY_CONFIG_KEY] ?? '{}');
  } catch {
    throw new ArgumentError(`${file}: the ${POLICY_CONFIG_KEY} metadata is not valid JSON`);
  }
  if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) {
    throw new ArgumentError(`${file}: the ${POLICY_CONFIG_KEY} metadata must be a JSON object`);
  }
  let p: AdaVitPolicy;
  try {
    p = new AdaVitPolicy(model, { ...(saved as AdaVitOptions), ...extra });
  } catch (e) {
    if (e instanceof ArgumentError) throw new ArgumentError(`${file}: ${e.message}`);
    throw e;
  }
  try {
    p.loadStateDict(state);
  } catch (e) {
    p.dispose();
    if (e instanceof ArgumentError) throw new ArgumentError(`${file}: does not fit this model (${e.message})`);
    throw e;
  }
  return p;
}
