/**
 * Module and Parameter. A Module's parameters and sub-modules are its own properties; their names
 * follow the property path as timm/PyTorch do (`blocks.0.attn.qkv.weight`), so state dicts line up
 * with timm checkpoints without renaming. Arrays of modules are numbered like nn.ModuleList.
 */
import { ArgumentError, ShapeError } from '../errors.js';
import type { NativeTensor, TypedData } from '../native.js';
import { Tensor, tensor } from '../tensor.js';

/** A trainable tensor: requiresGrad, never disposed by tidy(), data replaceable in place. */
export class Parameter extends Tensor {
  constructor(h: NativeTensor) {
    super(h, false);
    this.requiresGrad = true;
  }
  static from(t: Tensor): Parameter {
    const p = new Parameter(t.handle.reshape([...t.shape]));
    t.dispose();
    return p;
  }
  /** Overwrites the values in place (same shape and dtype). */
  assign(data: TypedData): void {
    if (data.length !== this.size) throw new ShapeError(`Parameter.assign: expected ${this.size} values for shape [${this.shape}], got ${data.length}`);
    this.handle.write(data);
  }
  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
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
  /** Copies values into parameters by name. strict: every name must match both ways. */
  loadStateDict(state: Map<string, { shape: readonly number[]; data: Float32Array }>, strict = true): void {
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
