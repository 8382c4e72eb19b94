/**
 * Trainer: fits a ViT alone (dense) or with an AdaViT policy.
 *
 * - AdamW (fused native update), separate learning rates for the policy and the backbone, or a
 *   frozen backbone; cosine schedule with linear warm-up; optional global-norm gradient clipping;
 *   label smoothing; optional distillation from a frozen teacher (KL on logits, weight `alpha`).
 * - Evaluation: accuracy, usage of each gated unit, MACs per image from the decisions actually taken
 *   and measured images/s (policy models run the packed inference that really skips work).
 * - Checkpoints in `outDir`: model.safetensors (timm names + config; loadable by vit.fromFile),
 *   policy.safetensors, trainer-state.safetensors (optimizer moments; epoch, step and the optimizers'
 *   step counts in the metadata: no RNG state is needed, the shuffle is keyed by the epoch and the
 *   policy's sampling noise by the step). Written as one save (all files, then all renames; each carries the save's id, which
 *   resume checks); `resume: true` continues from them.
 * - Progress: a progress bar on a terminal, plain log lines otherwise; metrics as JSONL.
 * - Device: `device` ('cpu' | 'cuda' | 'auto'; default: where the model already is, cpu for a new
 *   one) — the model, policy and teacher are moved there in place and every batch is uploaded there.
 * - Precision: 'float32' (default) or 'bfloat16': the forward and the loss run under
 *   autocast('bfloat16') (bf16 GEMMs and attention; LayerNorm, softmax, losses and the policy's
 *   sampling in float32), backward outside it; parameters, gradients and AdamW moments stay float32.
 *   On the CPU autocast is a no-op, so 'bfloat16' there trains exactly as 'float32'.
 * - No host syncs inside `fit`'s steps: the loss, correct count and usage are summed on the device
 *   (device-stats.ts) and read when the progress display asks (at most about once a second, and at
 *   the end of each epoch); gradient clipping runs on the device; batches upload through pinned
 *   staging. On cuda `fit` runs with deferred device-side checks (`deviceChecks`, default
 *   'deferred'), so a bad label or index is thrown as its typed error at the next read instead of
 *   costing a sync per op. `trainStep` (the public single step) reads its figures, so it syncs.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { boolOpt, int, intList, num, optsOf, show } from '../args.js';
import { ArgumentError, DisposedError, IOError } from '../errors.js';
import { noGrad } from '../autograd.js';
import { batches, checkDataset, type Dataset } from '../data/dataset.js';
import { adavitInfer } from '../infer/adavit-infer.js';
import { denseMacs } from '../infer/flops.js';
import { checkpointBytes, readCheckpoint, SAVE_ID_KEY } from '../io/checkpoint.js';
import { writeFileAtomic, writeFilesAtomic } from '../io/safetensors.js';
import { autocast } from '../autocast.js';
import { deviceChecks, resolveDevice, setDeviceChecks } from '../backends.js';
import { native, type Device, type NativeTensor } from '../native.js';
import type { Parameter } from '../nn/module.js';
import { VisionTransformer } from '../nn/vit.js';
import * as ops from '../ops/index.js';
import { AdaVitPolicy } from '../policies/adavit.js';
import { tensor, tidy, type Tensor } from '../tensor.js';
import { correctCount, RunningSums } from './device-stats.js';
import { AdamW, clipGradNorm } from './optim.js';

/** Compute precision of the forward pass (see autocast.ts). */
export type Precision = 'float32' | 'bfloat16';

function checkPrecision(p: unknown, who: string): Precision {
  if (p === undefined) return 'float32';
  if (p !== 'float32' && p !== 'bfloat16') throw new ArgumentError(`${who}: precision must be 'float32' or 'bfloat16', got '${String(p)}'`);
  return p;
}

export interface TrainerOptions {
  model: VisionTransformer;
  /** 'cpu' | 'cuda' | 'auto' (cuda when available); default: the model's current device. */
  device?: Device | 'auto';
  /** 'float32' (default) or 'bfloat16' mixed precision with float32 master weights (a no-op on the CPU). */
  precision?: Precision;
  policy?: AdaVitPolicy | null;
  optimizer?: { name?: 'adamw'; lr?: number; weightDecay?: number; betas?: [number, number]; eps?: number };
  /** Learning rate of the policy's parameters (default: optimizer.lr). */
  policyLr?: number;
  /** Scale of the backbone's lr relative to optimizer.lr (default 1); 0 or freezeBackbone freezes it. */
  backboneLrScale?: number;
  freezeBackbone?: boolean;
  /** Warm-up in epochs (fractional allowed; default 1), then cosine to minLr (default 1e-6). */
  warmupEpochs?: number;
  minLr?: number;
  clipGrad?: number;
  labelSmoothing?: number;
  /** Distillation from a frozen teacher: loss += alpha · KL(teacher ‖ student) on logits. */
  distill?: { teacher: VisionTransformer; alpha?: number; tau?: number };
  outDir?: string;
  /** 'auto' (bar on a TTY, lines otherwise), 'bar', 'lines', 'silent' */
  log?: 'auto' | 'bar' | 'lines' | 'silent';
  seed?: number;
  /**
   * Device-side checks during `fit` on cuda (see setDeviceChecks): 'deferred' (default: no sync per
   * checked op; a bad label or index is thrown at the next read of the running figures) or
   * 'immediate'. The mode in force before `fit` is restored after it.
   */
  deviceChecks?: 'immediate' | 'deferred';
}

/** What one step leaves on the device (handles owned by the caller). */
interface StepStats {
  loss: NativeTensor;
  correct: NativeTensor;
  usage?: { patch: NativeTensor | null; head: NativeTensor | null; block: NativeTensor | null };
}

function freeStats(s: StepStats): void {
  s.loss.free();
  s.correct.free();
  for (const u of Object.values(s.usage ?? {})) u?.free();
}

export interface FitOptions {
  epochs: number;
  batchSize?: number;
  eval?: Dataset;
  evalBatchSize?: number;
  /** Limit the number of training batches per epoch (quick runs). */
  limit?: number;
  /** Limit the number of `eval` batches after each epoch (quick runs); default: the whole set. */
  evalLimit?: number;
  resume?: boolean;
}

export interface EvalOptions {
  batchSize?: number;
  threshold?: number;
  keepRatio?: number;
  limit?: number;
  random?: { patch: number; head: number; block: number; seed?: number };
  /** Where to evaluate ('auto': cuda when available); default: the model's device. Moves model and policy. */
  device?: Device | 'auto';
  /** Forward precision (autocast), default 'float32'. */
  precision?: Precision;
}

export interface EvalResult {
  accuracy: number;
  loss: number;
  count: number;
  kept?: { patch: number; head: number; block: number };
  /** MACs per image (fvcore "FLOPs") and the dense model's. */
  macs: number;
  denseMacs: number;
  imagesPerSec: number;
}

export interface EpochRecord {
  epoch: number;
  step: number;
  trainLoss: number;
  trainAcc: number;
  lr: number;
  usage?: { patch: number | null; head: number | null; block: number | null };
  eval?: EvalResult;
  seconds: number;
}

/**
 * Drops the lines of a run's metrics.jsonl past `epoch` (and a torn last line): the epochs after the
 * save a run resumes from are trained again and logged again, and their first lines would otherwise
 * stay beside the second (an epoch logged, then a crash before or during its save). Atomic rewrite.
 */
async function trimMetrics(path: string, epoch: number): Promise<void> {
  if (!existsSync(path)) return;
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
  const kept = lines.filter((l) => {
    try {
      const e = (JSON.parse(l) as { epoch?: unknown }).epoch;
      return typeof e === 'number' && e <= epoch;
    } catch {
      return false;
    }
  });
  if (kept.length !== lines.length) await writeFileAtomic(path, new TextEncoder().encode(kept.map((l) => `${l}\n`).join('')));
}

/**
 * `ds` as a Dataset whose images `model` takes and whose labels it can predict (ArgumentError naming
 * `what` otherwise), so a mismatch fails before any work rather than at the first batch.
 */
function checkData(ds: unknown, model: VisionTransformer, what: string): Dataset {
  const d = checkDataset(ds, what);
  const c = model.config;
  const want = [c.inChans, c.imgSize, c.imgSize];
  if (d.imageShape.join() !== want.join()) {
    throw new ArgumentError(`${what}: its images are [${d.imageShape}], the model takes [${want}]`);
  }
  if (d.numClasses > c.numClasses) {
    throw new ArgumentError(`${what}: its labels go up to ${d.numClasses - 1}, the model predicts ${c.numClasses} classes`);
  }
  return d;
}

/** Every option checked up front, so a bad one fails at construction, not epochs into fit(). */
function checkTrainerOptions(o: TrainerOptions): void {
  const op = 'Trainer';
  if (!(o.model instanceof VisionTransformer)) throw new ArgumentError(`${op}: model must be a VisionTransformer, got ${show(o.model)}`);
  if (o.policy !== undefined && o.policy !== null) {
    if (!(o.policy instanceof AdaVitPolicy)) throw new ArgumentError(`${op}: policy must be an AdaViT policy (policies.adavit), got ${show(o.policy)}`);
    if (o.policy.model !== o.model) throw new ArgumentError(`${op}: the policy was made for another model (policies.adavit(model) with this Trainer's model)`);
  }
  const finite = (v: unknown, what: string, min: number) =>
    v === undefined || num(v, what, op, (x) => x >= min && x < Infinity, `finite and ≥ ${min}`);
  const opt = optsOf(o.optimizer, op);
  finite(opt.lr, 'optimizer.lr', 0);
  finite(opt.weightDecay, 'optimizer.weightDecay', 0);
  finite(o.policyLr, 'policyLr', 0);
  finite(o.backboneLrScale, 'backboneLrScale', 0);
  finite(o.warmupEpochs, 'warmupEpochs', 0);
  finite(o.minLr, 'minLr', 0);
  finite(o.clipGrad, 'clipGrad', 0);
  if (o.labelSmoothing !== undefined) num(o.labelSmoothing, 'labelSmoothing', op, (v) => v >= 0 && v < 1, 'in [0, 1)');
  boolOpt(o.freezeBackbone, false, 'freezeBackbone', op);
  if (o.seed !== undefined) int(o.seed, 'seed', op, 0, Number.MAX_SAFE_INTEGER);
  if (o.outDir !== undefined && typeof o.outDir !== 'string') throw new ArgumentError(`${op}: outDir must be a path, got ${show(o.outDir)}`);
  if (o.log !== undefined && !['auto', 'bar', 'lines', 'silent'].includes(o.log as string)) {
    throw new ArgumentError(`${op}: log must be 'auto', 'bar', 'lines' or 'silent', got ${show(o.log)}`);
  }
  if (o.distill !== undefined && o.distill !== null) {
    const d = optsOf(o.distill, op);
    if (!(d.teacher instanceof VisionTransformer)) throw new ArgumentError(`${op}: distill.teacher must be a VisionTransformer, got ${show(d.teacher)}`);
    finite(d.alpha, 'distill.alpha', 0);
    if (d.tau !== undefined) num(d.tau, 'distill.tau', op, (v) => v > 0 && v < Infinity, 'finite and > 0');
    // the teacher sees the student's batches and its logits are compared class by class
    const s = (o.model as VisionTransformer).config, t = d.teacher.config;
    for (const k of ['imgSize', 'inChans', 'numClasses'] as const) {
      if (s[k] !== t[k]) throw new ArgumentError(`${op}: distill.teacher's ${k} is ${t[k]}, the model's ${s[k]}: the teacher must take the same images and predict the same classes`);
    }
    if (d.teacher === o.model) throw new ArgumentError(`${op}: distill.teacher is the model being trained; distil from a separate (frozen) copy`);
  }
}

export class Trainer {
  readonly model: VisionTransformer;
  readonly policy: AdaVitPolicy | null;
  private opts: TrainerOptions;
  private backboneOpt: AdamW | null;
  private policyOpt: AdamW | null;
  private baseLr: number;
  readonly device: Device;
  readonly precision: Precision;
  epoch = 0;
  step = 0;
  private disposed = false;

  constructor(opts: TrainerOptions) {
    if (!opts?.model) throw new ArgumentError('Trainer: model is required');
    checkTrainerOptions(opts);
    this.opts = opts;
    this.model = opts.model;
    this.policy = opts.policy ?? null;
    this.precision = checkPrecision(opts.precision, 'Trainer');
    if (opts.deviceChecks !== undefined && opts.deviceChecks !== 'immediate' && opts.deviceChecks !== 'deferred') {
      throw new ArgumentError(`Trainer: deviceChecks must be 'immediate' or 'deferred', got '${String(opts.deviceChecks)}'`);
    }
    this.device = resolveDevice(opts.device, this.model.device, 'Trainer');
    this.model.to(this.device);
    this.policy?.to(this.device);
    opts.distill?.teacher.to(this.device);
    const o = opts.optimizer ?? {};
    if (o.name && o.name !== 'adamw') throw new ArgumentError(`Trainer: optimizer '${o.name}' is not supported (adamw)`);
    this.baseLr = o.lr ?? 5e-4;
    const wd = o.weightDecay ?? 0.05;
    const frozen = opts.freezeBackbone || opts.backboneLrScale === 0;
    const backbone = this.model.parameters();
    for (const p of backbone) p.requiresGrad = !frozen;
    this.backboneOpt = frozen ? null : new AdamW(backbone, { lr: this.baseLr, weightDecay: wd, betas: o.betas, eps: o.eps });
    this.policyOpt = this.policy ? new AdamW(this.policy.parameters(), { lr: opts.policyLr ?? this.baseLr, weightDecay: wd, betas: o.betas, eps: o.eps }) : null;
  }

  private lrAt(step: number, total: number, warm: number): number {
    const min = this.opts.minLr ?? 1e-6;
    if (step < warm) return this.baseLr * (step + 1) / warm;
    const p = Math.min(1, (step - warm) / Math.max(1, total - warm));
    return min + 0.5 * (this.baseLr - min) * (1 + Math.cos(Math.PI * p));
  }

  /**
   * Global-norm clipping (torch's clip_grad_norm_): the factor, computed on the gradients' device
   * with no read-back, for the AdamW steps to apply inside their update; null without clipGrad.
   */
  private clipFactor(params: Parameter[]): Tensor | null {
    const maxNorm = this.opts.clipGrad;
    if (!maxNorm) return null;
    const r = clipGradNorm(params, maxNorm);
    if (!r) return null;
    r.norm.dispose();
    return r.factor;
  }

  private logLine(rec: object): void {
    if (!this.opts.outDir) return;
    appendFileSync(join(this.opts.outDir, 'metrics.jsonl'), `${JSON.stringify(rec)}\n`);
  }

  /** Trains for `epochs`; returns one record per epoch. */
  async fit(train: Dataset, fo: FitOptions): Promise<EpochRecord[]> {
    this.alive('fit');
    if (!fo || typeof fo !== 'object') throw new ArgumentError(`fit: options { epochs, batchSize?, eval?, evalBatchSize?, limit?, evalLimit?, resume? } are required, got ${show(fo)}`);
    const bs = fo.batchSize ?? 64;
    if (!Number.isInteger(fo.epochs) || fo.epochs < 1) throw new ArgumentError(`fit: epochs must be a positive integer, got ${show(fo.epochs)}`);
    if (!Number.isInteger(bs) || bs < 1) throw new ArgumentError(`fit: batchSize must be a positive integer, got ${show(bs)}`);
    if (fo.limit !== undefined) int(fo.limit, 'limit', 'fit', 1);
    if (fo.evalBatchSize !== undefined) int(fo.evalBatchSize, 'evalBatchSize', 'fit', 1);
    if (fo.evalLimit !== undefined) int(fo.evalLimit, 'evalLimit', 'fit', 1);
    boolOpt(fo.resume, false, 'resume', 'fit');
    checkData(train, this.model, 'fit: train');
    if (fo.eval !== undefined && fo.eval !== null) checkData(fo.eval, this.model, 'fit: eval');
    if (this.opts.outDir) mkdirSync(this.opts.outDir, { recursive: true });
    if (fo.resume) await this.resume();
    const perEpoch = Math.min(Math.floor(train.length / bs), fo.limit ?? Infinity);
    if (perEpoch < 1) throw new ArgumentError(`fit: the dataset (${train.length}) is smaller than one batch (${bs})`);
    const total = perEpoch * fo.epochs;
    const warm = Math.round((this.opts.warmupEpochs ?? 1) * perEpoch);
    const mode = this.opts.log ?? 'auto';
    const useBar = mode === 'bar' || (mode === 'auto' && !!process.stderr.isTTY);
    const records: EpochRecord[] = [];
    const seed = this.opts.seed ?? 0;
    const checksBefore = this.device === 'cuda' ? deviceChecks() : null;
    if (checksBefore) setDeviceChecks(this.opts.deviceChecks ?? 'deferred');
    try {
      this.model.train();
      while (this.epoch < fo.epochs) {
        const t0 = performance.now();
        let seen = 0;
        // Σ loss·B, Σ correct and Σ usage·B stay on the device; `read` is the one sync, done for the
        // display (at most about once a second) and at the end of the epoch.
        const sums = new RunningSums(this.device);
        let shown = { loss: 0, correct: 0, seen: 1 };
        let lastRead = t0;
        const read = () => {
          const v = sums.read();
          lastRead = performance.now();
          shown = { loss: v.loss ?? 0, correct: v.correct ?? 0, seen: Math.max(1, seen) };
          return v;
        };
        const bar = useBar ? new cliProgress.SingleBar({ format: `epoch ${this.epoch + 1}/${fo.epochs} [{bar}] {value}/{total} loss {loss} acc {acc}`, stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
        bar?.start(perEpoch, 0, { loss: '-', acc: '-' });
        let totals: Record<string, number>;
        try {
          for (const batch of batches(train, { batchSize: bs, shuffle: true, seed: seed * 1000 + this.epoch, dropLast: true, limit: perEpoch })) {
            const lr = this.lrAt(this.step, total, warm);
            if (this.backboneOpt) this.backboneOpt.lr = lr * (this.opts.backboneLrScale ?? 1);
            if (this.policyOpt) this.policyOpt.lr = (this.opts.policyLr ?? this.baseLr) * (lr / this.baseLr);
            const B = batch.labels.length;
            const st = this.queueStep(batch.images, batch.labels, train.imageShape);
            try {
              sums.add('loss', st.loss, B);
              sums.add('correct', st.correct);
              for (const k of ['patch', 'head', 'block'] as const) {
                const u = st.usage?.[k];
                if (u) sums.add(k, u, B);
              }
            } finally {
              freeStats(st);
            }
            seen += B;
            this.step++;
            const k = this.step - (this.epoch * perEpoch);
            if (bar) {
              if (performance.now() - lastRead > 1000) read();
              bar.increment(1, { loss: (shown.loss / shown.seen).toFixed(4), acc: (shown.correct / shown.seen).toFixed(3) });
            } else if (mode !== 'silent' && perEpoch >= 20 && k % Math.ceil(perEpoch / 10) === 0 && k < perEpoch) {
              read();
              console.log(`  epoch ${this.epoch + 1} ${k}/${perEpoch} loss ${(shown.loss / seen).toFixed(4)} acc ${(shown.correct / seen).toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
            }
          }
          totals = read();
        } finally {
          bar?.stop();
          sums.dispose();
        }
        this.epoch++;
        const rec: EpochRecord = {
          epoch: this.epoch,
          step: this.step,
          trainLoss: (totals.loss ?? 0) / seen,
          trainAcc: (totals.correct ?? 0) / seen,
          lr: this.lrAt(this.step - 1, total, warm),
          seconds: (performance.now() - t0) / 1000,
        };
        if (this.policy) rec.usage = { patch: (totals.patch ?? 0) / seen, head: (totals.head ?? 0) / seen, block: (totals.block ?? 0) / seen };
        if (fo.eval) rec.eval = this.evaluate(fo.eval, { batchSize: fo.evalBatchSize ?? bs, limit: fo.evalLimit });
        this.model.train();
        records.push(rec);
        this.logLine(rec);
        if (mode !== 'silent') {
          const e = rec.eval;
          const u = rec.usage;
          console.log(`epoch ${rec.epoch}/${fo.epochs} step ${rec.step} loss ${rec.trainLoss.toFixed(4)} acc ${rec.trainAcc.toFixed(4)} lr ${rec.lr.toExponential(2)}`
            + (u ? ` usage patch ${u.patch?.toFixed(3)} head ${u.head?.toFixed(3)} block ${u.block?.toFixed(3)}` : '')
            + (e ? ` | eval acc ${e.accuracy.toFixed(4)} MACs ${(e.macs / 1e6).toFixed(2)}M (${((100 * e.macs) / e.denseMacs).toFixed(1)}% of dense) ${e.imagesPerSec.toFixed(0)} img/s` : '')
            + ` (${rec.seconds.toFixed(1)} s)`);
        }
        if (this.opts.outDir) await this.save();
      }
    } finally {
      if (checksBefore) setDeviceChecks(checksBefore);
    }
    return records;
  }

  /**
   * One optimisation step on a batch; returns the loss, correct count and usage. Reading them waits
   * for the step to finish on cuda (`fit` keeps them on the device instead).
   */
  trainStep(images: Float32Array, labels: Int32Array, shape: readonly number[]): { loss: number; correct: number; usage?: { patch: number | null; head: number | null; block: number | null } } {
    this.alive('trainStep');
    const c = this.model.config;
    if (!(images instanceof Float32Array)) throw new ArgumentError(`trainStep: images must be a Float32Array, got ${show(images)}`);
    if (!(labels instanceof Int32Array) || labels.length === 0) throw new ArgumentError(`trainStep: labels must be a non-empty Int32Array, got ${show(labels)}`);
    const want = [c.inChans, c.imgSize, c.imgSize];
    if (intList(shape, 'shape', 'trainStep').join() !== want.join()) throw new ArgumentError(`trainStep: shape must be the model's image shape [${want}], got [${shape}]`);
    if (images.length !== labels.length * want[0] * want[1] * want[2]) {
      throw new ArgumentError(`trainStep: ${labels.length} labels need ${labels.length * want[0] * want[1] * want[2]} image values, got ${images.length}`);
    }
    const st = this.queueStep(images, labels, shape);
    try {
      const one = (h: NativeTensor | null): number | null => {
        if (!h) return null;
        const f = h.dtype === 'float32' ? h : native.cast(h, 'float32');
        try {
          return (f.read() as Float32Array)[0];
        } finally {
          if (f !== h) f.free();
        }
      };
      const r: { loss: number; correct: number; usage?: { patch: number | null; head: number | null; block: number | null } } = { loss: one(st.loss)!, correct: one(st.correct)! };
      if (st.usage) r.usage = { patch: one(st.usage.patch), head: one(st.usage.head), block: one(st.usage.block) };
      return r;
    } finally {
      freeStats(st);
    }
  }

  /** Queues one optimisation step; its figures stay on the device (the caller frees them). */
  private queueStep(images: Float32Array, labels: Int32Array, shape: readonly number[]): StepStats {
    const B = labels.length;
    if (this.policy) this.policy.step = this.step;
    const x = tensor(images, [B, ...shape], { device: this.device });
    let y: Tensor | undefined;
    try {
      y = tensor(labels, [B], { device: this.device });
      return this.runStep(x, y);
    } catch (e) {
      // A step that failed (out of memory, a bad label) leaves no partial gradients for the next;
      // tidy has freed its tensors and the graph's saved activations.
      try {
        this.backboneOpt?.zeroGrad();
        this.policyOpt?.zeroGrad();
      } catch {
        /* the step's own error is the one to report */
      }
      throw e;
    } finally {
      x.dispose();
      y?.dispose();
    }
  }

  private runStep(x: Tensor, y: Tensor): StepStats {
    // the step's figures: handles that outlive tidy, freed here when the step throws after making them
    const made: NativeTensor[] = [];
    const keep = (t: Tensor | null | undefined) => {
      if (!t) return null;
      const h = t.handle.reshape([1]);
      made.push(h);
      return h;
    };
    try {
      const r = tidy((): StepStats => {
        let logits!: Tensor;
        let loss!: Tensor;
        let usage: StepStats['usage'];
        // forward and loss under autocast (a no-op for 'float32' and on the CPU); backward outside it
        autocast(this.precision, () => {
          if (this.policy) {
            const out = this.policy.forwardTrain(x);
            logits = out.logits;
            loss = this.policy.loss(out, y, { labelSmoothing: this.opts.labelSmoothing }).total;
            usage = { patch: keep(out.usage.patch), head: keep(out.usage.head), block: keep(out.usage.block) };
          } else {
            logits = this.model.forward(x);
            loss = ops.crossEntropy(logits, y, { labelSmoothing: this.opts.labelSmoothing });
          }
          if (this.opts.distill) loss = ops.add(loss, ops.scale(this.distillLoss(x, logits), this.opts.distill.alpha ?? 0.5));
        });
        loss.backward();
        const correct = correctCount(logits.handle, y.handle);
        made.push(correct);
        return { loss: keep(loss)!, correct, usage };
      });
      const params = [...(this.backboneOpt ? this.model.parameters() : []), ...(this.policy ? this.policy.parameters() : [])];
      const clip = this.clipFactor(params);
      try {
        this.backboneOpt?.step(clip);
        this.policyOpt?.step(clip);
      } finally {
        clip?.dispose();
      }
      this.backboneOpt?.zeroGrad();
      this.policyOpt?.zeroGrad();
      return r;
    } catch (e) {
      for (const h of made) h.free();
      throw e;
    }
  }

  private distillLoss(x: Tensor, logits: Tensor): Tensor {
    const d = this.opts.distill!;
    const tau = d.tau ?? 1;
    const t = noGrad(() => d.teacher.forward(x));
    // KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s), batch mean, × τ² (Hinton et al.)
    const lt = ops.logSoftmax(ops.scale(t, 1 / tau));
    const ls = ops.logSoftmax(ops.scale(logits, 1 / tau));
    const kl = ops.sum(ops.mul(ops.exp(lt), ops.sub(lt, ls)));
    return ops.scale(kl, (tau * tau) / x.shape[0]);
  }

  /** Accuracy, usage, MACs and throughput on a dataset (packed inference when a policy is set). */
  evaluate(ds: Dataset, opts?: { batchSize?: number; threshold?: number; keepRatio?: number; limit?: number } | null): EvalResult {
    return evaluate(this.model, this.policy, ds, { ...optsOf(opts, 'evaluate'), device: this.device, precision: this.precision });
  }

  /**
   * Writes model, policy and trainer state to outDir as one save: all three are written to temporary
   * files first and renamed into place only when all are written (a failure while writing leaves the
   * previous save whole), and each carries the save's id, so that resume() refuses a directory whose
   * files come from two saves (a crash between the renames).
   */
  async save(dir = this.opts.outDir): Promise<void> {
    this.alive('save');
    if (!dir) throw new ArgumentError('Trainer.save: no directory (set outDir)');
    mkdirSync(dir, { recursive: true });
    const id = { [SAVE_ID_KEY]: `step ${this.step} (${randomBytes(6).toString('hex')})` };
    const files: [string, Uint8Array][] = [[join(dir, 'model.safetensors'), this.model.checkpointBytes(id)]];
    if (this.policy) files.push([join(dir, 'policy.safetensors'), this.policy.checkpointBytes(id)]);
    const state = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [tag, opt] of [['backbone', this.backboneOpt], ['policy', this.policyOpt]] as const) {
      if (!opt) continue;
      for (const [name, s] of opt.stateByName(tag === 'backbone' ? this.model.namedParameters() : this.policy!.namedParameters())) {
        state.set(`${tag}.${name}.m`, { shape: s.shape, data: s.m });
        state.set(`${tag}.${name}.v`, { shape: s.shape, data: s.v });
      }
    }
    files.push([join(dir, 'trainer-state.safetensors'), checkpointBytes(state, {
      ...id,
      'vitrim.trainer': JSON.stringify({ epoch: this.epoch, step: this.step, backboneT: this.backboneOpt?.t ?? 0, policyT: this.policyOpt?.t ?? 0 }),
    })]);
    await writeFilesAtomic(files);
  }

  /**
   * Restores model, policy and optimizer state from outDir. All files are read and checked to come
   * from one save before anything is restored (an IOError otherwise; saves made before save ids
   * existed carry none and are taken as they are).
   */
  async resume(dir = this.opts.outDir): Promise<boolean> {
    this.alive('resume');
    if (!dir || !existsSync(join(dir, 'trainer-state.safetensors'))) return false;
    const names = ['model.safetensors', ...(this.policy ? ['policy.safetensors'] : []), 'trainer-state.safetensors'];
    const read = await Promise.all(names.map((n) => readCheckpoint(join(dir, n))));
    const ids = read.map((r) => r.metadata[SAVE_ID_KEY]);
    if (new Set(ids).size > 1) {
      throw new IOError(`Trainer.resume: ${dir} holds files from different saves (${names.map((n, i) => `${n}: ${ids[i] ?? 'no save id'}`).join(', ')}); `
        + 'a save was interrupted between writing them. Load the model alone (vit.fromFile) or train from scratch');
    }
    const trainer = read[read.length - 1];
    let meta: { epoch?: number; step?: number; backboneT?: number; policyT?: number };
    try {
      meta = JSON.parse(trainer.metadata['vitrim.trainer'] ?? '{}');
    } catch {
      throw new IOError(`Trainer.resume: ${join(dir, 'trainer-state.safetensors')}: its vitrim.trainer metadata is not valid JSON`);
    }
    this.model.loadStateDict(read[0].state);
    if (this.policy) this.policy.loadStateDict(read[1].state);
    this.epoch = meta.epoch ?? 0;
    this.step = meta.step ?? 0;
    if (this.backboneOpt) this.backboneOpt.loadStateByName('backbone', this.model.namedParameters(), trainer.state, meta.backboneT ?? 0);
    if (this.policyOpt && this.policy) this.policyOpt.loadStateByName('policy', this.policy.namedParameters(), trainer.state, meta.policyT ?? 0);
    if (dir === this.opts.outDir) await trimMetrics(join(dir, 'metrics.jsonl'), this.epoch);
    return true;
  }

  /**
   * Frees the optimizer state: the AdamW moments, twice the trained parameters' memory, on their
   * device (otherwise held until the garbage collector finds the Trainer, which does not see device
   * memory). Model, policy and teacher are the caller's and stay. Afterwards fit, trainStep, save
   * and resume throw a DisposedError. Idempotent.
   */
  dispose(): void {
    this.backboneOpt?.dispose();
    this.policyOpt?.dispose();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private alive(op: string): void {
    if (this.disposed) throw new DisposedError(`Trainer.${op}: this Trainer was disposed`);
  }
}

/** Evaluates a model (dense) or model + policy (packed inference) on a dataset. */
export function evaluate(model: VisionTransformer, policy: AdaVitPolicy | null, ds: Dataset, options?: EvalOptions | null): EvalResult {
  if (!(model instanceof VisionTransformer)) throw new ArgumentError(`evaluate: model must be a VisionTransformer, got ${show(model)}`);
  if (policy !== null && !(policy instanceof AdaVitPolicy)) throw new ArgumentError(`evaluate: policy must be an AdaViT policy or null, got ${show(policy)}`);
  if (policy && policy.model !== model) throw new ArgumentError('evaluate: the policy was made for another model (policies.adavit(model) or policies.fromFile(model, ...) with this model)');
  checkData(ds, model, 'evaluate: ds');
  const opts = optsOf(options, 'evaluate');
  const bs = int(opts.batchSize ?? 64, 'batchSize', 'evaluate', 1);
  const precision = checkPrecision(opts.precision, 'evaluate');
  const device = resolveDevice(opts.device, model.device, 'evaluate');
  model.to(device);
  policy?.to(device);
  model.eval();
  let correct = 0;
  let count = 0;
  let lossSum = 0;
  let macs = 0;
  let ms = 0;
  const kept = { patch: 0, head: 0, block: 0 };
  const dense = denseMacs(model.config);
  for (const batch of batches(ds, { batchSize: bs, shuffle: false, limit: opts.limit })) {
    const B = batch.labels.length;
    // x and y are freed when the batch fails too (out of device memory, say): nothing left to the GC
    const x = tensor(batch.images, [B, ...ds.imageShape], { device });
    let y: Tensor | undefined;
    try {
      y = tensor(batch.labels, [B], { device });
      const labels = y;
      tidy(() => noGrad(() => autocast(precision, () => {
        let logits: Tensor;
        if (policy) {
          const r = adavitInfer(policy, x, { threshold: opts.threshold, keepRatio: opts.keepRatio, random: opts.random });
          logits = r.logits;
          macs += r.macs * B;
          ms += r.ms;
          for (const k of ['patch', 'head', 'block'] as const) kept[k] += r.kept[k] * B;
        } else {
          const t0 = performance.now();
          logits = model.forward(x);
          logits.dataSync();
          ms += performance.now() - t0;
          macs += dense * B;
        }
        lossSum += ops.crossEntropy(logits, labels).item() * B;
        const pred = ops.topk(logits, 1).indices.dataSync() as Int32Array;
        for (let i = 0; i < B; i++) if (pred[i] === batch.labels[i]) correct++;
      })));
    } finally {
      x.dispose();
      y?.dispose();
    }
    count += B;
  }
  // NaN figures for nothing evaluated would read as a result
  if (count === 0) throw new ArgumentError(`evaluate: no images to evaluate (${ds.name ?? 'the dataset'} is empty${opts.limit === 0 ? ', or limit is 0' : ''})`);
  const res: EvalResult = { accuracy: correct / count, loss: lossSum / count, count, macs: macs / count, denseMacs: dense, imagesPerSec: (1000 * count) / ms };
  if (policy) res.kept = { patch: kept.patch / count, head: kept.head / count, block: kept.block / count };
  return res;
}

export interface MatchedRandom {
  /** evaluate's `random` option: keep rates of random decisions that cost what the learned ones do. */
  random: { patch: number; head: number; block: number; seed: number };
  /** The learned policy's result on the data (with the same options). */
  learned: EvalResult;
  /** MACs per image of the random decisions at `random`, on the probe images. */
  randomMacs: number;
  /**
   * Whether randomMacs is within 2 % of learned.macs. The patch rate is the only knob: where the
   * learned cost lies outside what random patches can reach with the learned head and sub-layer
   * rates (learned decisions that run heads only where the attention sub-layer runs cost more than
   * independent ones at the same rates), the rate stops at 0 or 1 and this is false.
   */
  matched: boolean;
}

/**
 * The control for a learned policy: random decisions at its cost. The head and sub-layer keep rates
 * are the ones the policy reaches on `ds`; the patch keep rate is bisected (12 steps, on the first
 * `probeImages` images, default 2000) until random decisions cost the policy's MACs (random drops
 * are independent, so equal keep fractions alone would cost less than the learned, correlated ones).
 * `evaluate(model, policy, ds, { random: r.random })` then gives the baseline's accuracy.
 */
export function matchedRandom(model: VisionTransformer, policy: AdaVitPolicy, ds: Dataset,
  options?: (Omit<EvalOptions, 'random'> & { probeImages?: number; seed?: number }) | null): MatchedRandom {
  if (!(policy instanceof AdaVitPolicy)) throw new ArgumentError(`matchedRandom: policy must be an AdaViT policy, got ${show(policy)}`);
  const { probeImages = 2000, seed = 1, ...ev } = optsOf(options, 'matchedRandom');
  int(probeImages, 'probeImages', 'matchedRandom', 1);
  int(seed, 'seed', 'matchedRandom', 0);
  if ((ev as EvalOptions).random !== undefined) throw new ArgumentError('matchedRandom: random is what it computes; do not pass it');
  const learned = evaluate(model, policy, ds, ev);
  const bs = ev.batchSize ?? 64;
  const probe = Math.min(ev.limit ?? Infinity, Math.ceil(probeImages / bs));
  const { threshold: _t, keepRatio: _k, ...rest } = ev; // the learned decisions' knobs; random ones have their own rates
  let lo = 0;
  let hi = 1;
  for (let it = 0; it < 12; it++) {
    const mid = (lo + hi) / 2;
    const r = evaluate(model, policy, ds, { ...rest, limit: probe, random: { ...learned.kept!, patch: mid, seed } });
    if (r.macs < learned.macs) lo = mid;
    else hi = mid;
  }
  const random = { ...learned.kept!, patch: (lo + hi) / 2, seed };
  const randomMacs = evaluate(model, policy, ds, { ...rest, limit: probe, random }).macs;
  return { random, learned, randomMacs, matched: Math.abs(randomMacs - learned.macs) <= 0.02 * learned.macs };
}
