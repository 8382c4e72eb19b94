/**
 * Module and Parameter. A Module's parameters and sub-modules are its own properties; their names
 * follow the property path as timm/PyTorch do (`blocks.0.attn.qkv.weight`), so state dicts line up
 * with timm checkpoints without renaming. Arrays of modules are numbered like nn.ModuleList.
 * Tensors held as plain properties (not Parameters) are buffers: `Module.to(device)` moves them too.
 */
import { show } from '../args.js';
import { ArgumentError, rethrow, ShapeError } from '../errors.js';
import { native, type Device, type NativeTensor, type TypedData } from '../native.js';
import { isDevice, Tensor, tensor, untracked } from '../tensor.js';

/** A trainable tensor: requiresGrad, never disposed by tidy(), data replaceable in place. */
export class Parameter extends Tensor {
  constructor(h: NativeTensor) {
    super(h, false);
    this.requiresGrad = true;
  }
  static from(t: Tensor): Parameter {
    if (!(t instanceof Tensor)) throw new ArgumentError(`Parameter.from: expects a Tensor, got ${show(t)}`);
    const p = new Parameter(t.handle.reshape([...t.shape]));
    t.dispose();
    return p;
  }
  /** Overwrites the values in place (same shape and dtype). */
  assign(data: TypedData): void {
    if (!ArrayBuffer.isView(data)) throw new ArgumentError(`Parameter.assign: data must be a typed array, got ${show(data)}`);
    if ((data as TypedData).length !== this.size) throw new ShapeError(`Parameter.assign: expected ${this.size} values for shape [${this.shape}], got ${(data as TypedData).length}`);
    try {
      this.handle.write(data);
    } catch (e) {
      rethrow(e, 'Parameter.assign');
    }
  }
  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
  }
  /**
   * Moves the storage to `device` in place: this object (and so every optimizer's and module's
   * reference to it) stays the same; shape, dtype and values do not change. A gradient moves too.
   * A no-op when already there. On failure (device unavailable, out of memory) nothing changes.
   */
  moveTo(device: Device): this {
    if (!isDevice(device)) throw new ArgumentError(`Parameter.moveTo: unknown device '${String(device)}' (cpu, cuda)`);
    if (this.device === device) return this;
    let h: NativeTensor;
    let g: NativeTensor | null = null;
    try {
      h = native.toDevice(this.handle, device);
      try {
        if (this.grad && !this.grad.isDisposed) g = native.toDevice(this.grad.handle, device);
      } catch (e) {
        h.free();
        throw e;
      }
    } catch (e) {
      rethrow(e, `Parameter.moveTo('${device}')`);
    }
    this.replaceHandle(h);
    if (this.grad) {
      this.grad.dispose();
      this.grad = g ? untracked(g) : null;
    }
    return this;
  }
}

export function parameter(data: Float32Array, shape: readonly number[]): Parameter {
  return Parameter.from(tensor(data, shape));
}

export abstract class Module {
  training = true;

  /** (name, parameter) pairs in definition order, with timm-style dotted names. */
  *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    for (const [key, v] of Object.entries(this)) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (v instanceof Parameter) yield [name, v];
      else if (v instanceof Module) yield* v.namedParameters(name);
      else if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          if (v[i] instanceof Module) yield* (v[i] as Module).namedParameters(`${name}.${i}`);
          else if (v[i] instanceof Parameter) yield [`${name}.${i}`, v[i] as Parameter];
        }
      }
    }
  }
  parameters(): Parameter[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }
  *modules(): Generator<Module> {
    yield this;
    for (const v of Object.values(this)) {
      if (v instanceof Module) yield* v.modules();
      else if (Array.isArray(v)) for (const m of v) if (m instanceof Module) yield* m.modules();
    }
  }
  train(on = true): this {
    for (const m of this.modules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }
  /** Number of scalar parameters. */
  numParams(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }
  /** Frees every parameter's storage. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }

  /**
   * The device of the parameters ('cpu' for a module without any). Mixed devices (a half-finished
   * manual move) throw ArgumentError.
   */
  get device(): Device {
    let d: Device | null = null;
    for (const [name, p] of this.namedParameters()) {
      if (p.isDisposed) continue;
      if (d && p.device !== d) throw new ArgumentError(`Module.device: parameters on several devices ('${d}', and '${p.device}' for ${name})`);
      d = p.device;
    }
    return d ?? 'cpu';
  }

  /**
   * Moves every parameter (in place: the Parameter objects stay the same, so optimizers keep their
   * references; gradients move with them) and every buffer (plain Tensor properties, replaced by
   * their copies) to `device`. Returns this. All or nothing: if a move fails (the device is not
   * available, out of memory) the parameters already moved go back and the error is rethrown.
   * Which parameters move is `parameters()` (a policy moves its own gates, not its backbone).
   */
  to(device: Device): this {
    if (!isDevice(device)) throw new ArgumentError(`Module.to: unknown device '${String(device)}' (cpu, cuda)`);
    const moved: [Parameter, Device][] = [];
    try {
      for (const p of this.parameters()) {
        if (p.isDisposed || p.device === device) continue;
        const from = p.device;
        p.moveTo(device);
        moved.push([p, from]);
      }
      this.moveBuffers(device);
    } catch (e) {
      for (const [p, from] of moved.reverse()) {
        try {
          p.moveTo(from);
        } catch {
          // best effort: the original error is the one to report
        }
      }
      throw e;
    }
    return this;
  }

  /**
   * Names of properties that refer to modules this one does not own (a policy's backbone): to()
   * leaves their buffers alone. Parameters follow parameters(), which such a module overrides.
   */
  protected referencedKeys(): readonly string[] {
    return [];
  }

  /** Replaces each buffer (a non-Parameter Tensor property, also in arrays) by its copy on `device`. */
  protected moveBuffers(device: Device): void {
    const self = this as unknown as Record<string, unknown>;
    const move = (t: Tensor): Tensor => {
      if (t.isDisposed || t.device === device) return t;
      const c = untracked(native.toDevice(t.handle, device));
      t.dispose();
      return c;
    };
    const skip = this.referencedKeys();
    for (const [key, v] of Object.entries(this)) {
      if (skip.includes(key)) continue;
      if (v instanceof Tensor && !(v instanceof Parameter)) self[key] = move(v);
      else if (v instanceof Module) v.moveBuffers(device);
      else if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          if (v[i] instanceof Tensor && !(v[i] instanceof Parameter)) v[i] = move(v[i] as Tensor);
          else if (v[i] instanceof Module) (v[i] as Module).moveBuffers(device);
        }
      }
    }
  }
  /** Copies of every parameter (float32 host arrays), by name: what loadStateDict takes back. */
  stateDict(): Map<string, { shape: number[]; data: Float32Array }> {
    const m = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, p] of this.namedParameters()) m.set(name, { shape: [...p.shape], data: p.dataSync() as Float32Array });
    return m;
  }
  /** Copies values into parameters by name. strict: every name must match both ways. */
  loadStateDict(state: Map<string, { shape: readonly number[]; data: Float32Array }>, strict = true): void {
    if (!(state instanceof Map)) throw new ArgumentError(`loadStateDict: state must be a Map from names to { shape, data }, got ${show(state)}`);
    for (const [k, e] of state) {
      if (!e || !Array.isArray(e.shape) || !(e.data instanceof Float32Array) || e.data.length !== e.shape.reduce((a: number, b: number) => a * b, 1)) {
        throw new ArgumentError(`loadStateDict: ${String(k)} must be { shape: number[], data: Float32Array } with shape's element count`);
      }
    }
    const own = new Map(this.namedParameters());
    const missing = [...own.keys()].filter((k) => !state.has(k));
    const unexpected = [...state.keys()].filter((k) => !own.has(k));
    const mismatched: string[] = [];
    for (const [k, p] of own) {
      const s = state.get(k);
      if (s && s.shape.join() !== p.shape.join()) mismatched.push(`${k}: checkpoint [${s.shape}] vs model [${p.shape}]`);
    }
    if (mismatched.length || (strict && (missing.length || unexpected.length))) {
      const parts = [];
      if (missing.length) parts.push(`missing: ${missing.join(', ')}`);
      if (unexpected.length) parts.push(`unexpected: ${unexpected.join(', ')}`);
      if (mismatched.length) parts.push(`shape mismatch: ${mismatched.join('; ')}`);
      throw new ArgumentError(`loadStateDict: ${parts.join(' | ')}`);
    }
    for (const [k, p] of own) {
      const s = state.get(k);
      if (s) p.assign(s.data);
    }
  }
}
