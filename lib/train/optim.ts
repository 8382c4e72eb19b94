/**
 * Optimisers over Parameters. AdamW is the fused native update (PyTorch's torch.optim.AdamW
 * semantics), run on the device of each parameter; its moments (float32) live there too and follow a
 * parameter that `Module.to()` moved. Parameters and gradients are float32 (the master weights of
 * mixed precision: autocast's casts give float32 gradients). A step is one multi-tensor native call
 * per device (adamwStepMulti: a few kernel launches on cuda for a whole model, as PyTorch's foreach
 * AdamW), with the same arithmetic as the per-parameter adamwStep.
 */
import { num, optsOf, show } from '../args.js';
import { ArgumentError } from '../errors.js';
import { freeOnThrow } from '../handles.js';
import { native, type Device, type NativeTensor } from '../native.js';
import type { Parameter } from '../nn/module.js';
import { Tensor, untracked } from '../tensor.js';
import { clipCoef } from './device-stats.js';

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** A cpu handle moved to `device` (freed when copied). */
function onDevice(h: NativeTensor, device: Device): NativeTensor {
  if (device === 'cpu') return h;
  try {
    return native.toDevice(h, device);
  } finally {
    h.free();
  }
}

export class AdamW {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  /** Number of updates taken (the bias-correction step). */
  t = 0;
  private state = new Map<Parameter, { m: NativeTensor; v: NativeTensor }>();

  constructor(readonly params: Parameter[], opts0: AdamWOptions | null = {}) {
    const opts = optsOf(opts0, 'AdamW');
    if (!Array.isArray(params) || params.some((p) => !(p instanceof Tensor))) throw new ArgumentError('AdamW: params must be an array of Parameters');
    this.lr = num(opts.lr ?? 1e-3, 'lr', 'AdamW', (v) => v >= 0 && v < Infinity, 'finite and ≥ 0');
    const betas = opts.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw new ArgumentError(`AdamW: betas must be [beta1, beta2], got ${show(betas)}`);
    this.betas = [
      num(betas[0], 'betas[0]', 'AdamW', (v) => v >= 0 && v < 1, 'in [0, 1)'),
      num(betas[1], 'betas[1]', 'AdamW', (v) => v >= 0 && v < 1, 'in [0, 1)'),
    ];
    this.eps = num(opts.eps ?? 1e-8, 'eps', 'AdamW', (v) => v > 0 && v < Infinity, 'finite and > 0');
    this.weightDecay = num(opts.weightDecay ?? 0.01, 'weightDecay', 'AdamW', (v) => v >= 0 && v < Infinity, 'finite and ≥ 0');
    if (new Set(params).size !== params.length) throw new ArgumentError('AdamW: a parameter appears more than once in the list');
  }

  /**
   * One update of every parameter that has a gradient (one multi-tensor call per device). gradScale,
   * a one-element float32 tensor (e.g. a clipping factor computed on the device), multiplies every
   * gradient inside the update; it must be on the parameters' device.
   */
  step(gradScale?: Tensor | null): void {
    if (gradScale !== undefined && gradScale !== null && !(gradScale instanceof Tensor)) {
      throw new ArgumentError('AdamW.step: gradScale must be a Tensor (one float32 element) or null');
    }
    const groups = new Map<Device, { p: NativeTensor[]; g: NativeTensor[]; m: NativeTensor[]; v: NativeTensor[] }>();
    for (const p of this.params) {
      if (!p.grad || p.isDisposed) continue;
      let s = this.state.get(p);
      // a moment pair is made whole or not at all (out of memory at v frees m at once)
      if (!s) {
        s = freeOnThrow(() => ({ m: native.full([...p.shape], 0, 'float32', p.device), v: native.full([...p.shape], 0, 'float32', p.device) }));
        this.state.set(p, s);
      } else if (s.m.device !== p.device) {
        // the parameter moved (Module.to): its moments follow
        const old = s;
        s = freeOnThrow(() => ({ m: native.toDevice(old.m, p.device), v: native.toDevice(old.v, p.device) }));
        old.m.free();
        old.v.free();
        this.state.set(p, s);
      }
      let grp = groups.get(p.device);
      if (!grp) groups.set(p.device, (grp = { p: [], g: [], m: [], v: [] }));
      grp.p.push(p.handle);
      grp.g.push(p.grad.handle);
      grp.m.push(s.m);
      grp.v.push(s.v);
    }
    // counted once the moments are in place: a step that failed before any update leaves t (and so
    // the next step's bias correction) as it was
    this.t++;
    for (const grp of groups.values()) {
      native.adamwStepMulti(grp.p, grp.g, grp.m, grp.v, this.lr, this.betas[0], this.betas[1], this.eps,
        this.weightDecay, this.t, gradScale ? gradScale.handle : null);
    }
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** Moments of the parameters that have state, by name (for checkpoints). */
  *stateByName(named: Iterable<[string, Parameter]>): Generator<[string, { shape: number[]; m: Float32Array; v: Float32Array }]> {
    for (const [name, p] of named) {
      const s = this.state.get(p);
      if (s) yield [name, { shape: [...p.shape], m: s.m.read() as Float32Array, v: s.v.read() as Float32Array }];
    }
  }

  /** Restores moments saved by stateByName under `${tag}.${name}.m|v`, and the step count t. */
  loadStateByName(tag: string, named: Iterable<[string, Parameter]>, state: Map<string, { shape: number[]; data: Float32Array }>, t: number): void {
    if (typeof tag !== 'string' || !named || typeof (named as Iterable<unknown>)[Symbol.iterator] !== 'function' || !(state instanceof Map) || !Number.isInteger(t) || t < 0) {
      throw new ArgumentError('AdamW.loadStateByName: expects (tag: string, named parameters: Iterable<[name, Parameter]>, state: Map, t: integer ≥ 0)');
    }
    for (const [name, p] of named) {
      const m = state.get(`${tag}.${name}.m`);
      const v = state.get(`${tag}.${name}.v`);
      if (!m || !v) continue;
      if (m.data.length !== p.size || v.data.length !== p.size) throw new ArgumentError(`AdamW: saved state of '${name}' does not match its shape [${p.shape}]`);
      this.state.get(p)?.m.free();
      this.state.get(p)?.v.free();
      this.state.set(p, { m: onDevice(native.fromArray(m.data, [...p.shape], 'float32'), p.device), v: onDevice(native.fromArray(v.data, [...p.shape], 'float32'), p.device) });
    }
    this.t = t;
  }

  dispose(): void {
    for (const s of this.state.values()) {
      s.m.free();
      s.v.free();
    }
    this.state.clear();
  }
}

/**
 * Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ computes it, without a read-back:
 * returns the total L2 norm of the parameters' gradients and the factor min(1, maxNorm / (norm +
 * 1e-6)), both one-element float32 tensors on the gradients' device. Pass `factor` to
 * `AdamW.step(factor)`, which applies it inside its update (no extra pass over the gradients); the
 * gradients themselves are left as they are. Null when no parameter has a gradient.
 */
export function clipGradNorm(params: Parameter[], maxNorm: number): { norm: Tensor; factor: Tensor } | null {
  if (!(typeof maxNorm === 'number' && maxNorm > 0 && Number.isFinite(maxNorm))) {
    throw new ArgumentError(`clipGradNorm: maxNorm must be a positive finite number, got ${String(maxNorm)}`);
  }
  if (!Array.isArray(params) || params.some((p) => !(p instanceof Tensor))) throw new ArgumentError('clipGradNorm: params must be an array of Parameters');
  const grads = params.filter((p) => p.grad && !p.isDisposed).map((p) => p.grad!.handle);
  if (!grads.length) return null;
  const { coef, norm } = clipCoef(grads, maxNorm);
  return { norm: untracked(norm), factor: untracked(coef) };
}
