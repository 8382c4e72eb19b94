/**
 * Tensor: a typed handle over native storage, with explicit disposal (`dispose()`, idempotent;
 * `tidy(fn)` scopes in the tfjs convention; `Symbol.dispose` for `using`) and the native object's GC
 * finaliser as the backstop. A tensor that an op saved for backward keeps its storage alive through
 * the op's own native handle, so disposing it early never breaks a later `backward()`.
 */
import { ArgumentError, DeviceError, DisposedError, rethrow } from './errors.js';
import { native, type DType, type Device, type NativeTensor, type TypedData } from './native.js';
import { backward, type GradNode } from './autograd.js';

export type { DType, Device } from './native.js';

let scopeStack: Set<Tensor>[] = [];

export class Tensor {
  #h: NativeTensor | null;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  /** Set on leaves whose gradient `backward()` accumulates into `.grad`. */
  requiresGrad = false;
  grad: Tensor | null = null;
  /** The op that produced this tensor (null for leaves and under noGrad). */
  gradFn: GradNode | null = null;

  /** Wraps a native handle (takes ownership). Library code; users call `tensor()` / ops. */
  constructor(h: NativeTensor, track = true) {
    this.#h = h;
    this.shape = Object.freeze(h.shape);
    this.dtype = h.dtype;
    this.device = h.device;
    if (track && scopeStack.length) scopeStack[scopeStack.length - 1].add(this);
  }

  /** The native handle; throws DisposedError after dispose(). */
  get handle(): NativeTensor {
    if (!this.#h) throw new DisposedError(`tensor of shape [${this.shape}] was disposed`);
    return this.#h;
  }
  get isDisposed(): boolean {
    return this.#h === null;
  }
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }

  /** A copy of the data as a typed array (Float32Array, Int32Array; Uint16Array bits for bfloat16). */
  dataSync(): TypedData {
    try {
      return this.handle.read();
    } catch (e) {
      rethrow(e, 'dataSync');
    }
  }
  /** Async readback (resolves at once on the CPU; waits for the device on CUDA). */
  async data(): Promise<TypedData> {
    return this.dataSync();
  }
  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ArgumentError(`item() needs a one-element tensor, got shape [${this.shape}]`);
    return this.dataSync()[0];
  }
  toArray(): number[] {
    return Array.from(this.dataSync());
  }

  /** Frees the storage now (unless an op saved it for backward). Idempotent. */
  dispose(): void {
    if (!this.#h) return;
    this.#h.free();
    this.#h = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    // gradFn stays: the graph holds its own handles, so backward() through a disposed intermediate
    // (the usual tidy(() => forward) then loss.backward() pattern) still works.
  }

  /** Runs backpropagation from this tensor (a scalar, or give the gradient). See autograd.backward. */
  backward(grad?: Tensor, opts?: { retainGraph?: boolean }): void {
    backward(this, grad, opts);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''}${this.isDisposed ? ', disposed' : ''})`;
  }
}

/** Creates a tensor from data. dtype defaults to float32 (int32 for an Int32Array). */
export function tensor(
  data: ArrayLike<number> | Float32Array | Int32Array | Uint16Array,
  shape?: readonly number[],
  opts: { dtype?: DType; device?: Device; requiresGrad?: boolean } = {},
): Tensor {
  const dtype: DType = opts.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32');
  if (opts.device && opts.device !== 'cpu') {
    throw new DeviceError(`tensor: device '${opts.device}' is not available in this build (cpu only; see backends())`);
  }
  const s = shape ? [...shape] : [data.length];
  let typed: TypedData;
  if (dtype === 'float32') typed = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  else if (dtype === 'int32') {
    if (data instanceof Int32Array) typed = data;
    else {
      const arr = data as ArrayLike<number>;
      for (let i = 0; i < arr.length; i++) {
        if (!Number.isInteger(arr[i]) || Math.abs(arr[i]) > 2147483647) throw new ArgumentError(`tensor: int32 data must be integers, got ${arr[i]} at index ${i}`);
      }
      typed = Int32Array.from(arr);
    }
  } else {
    if (!(data instanceof Uint16Array)) throw new ArgumentError('tensor: bfloat16 data is given as a Uint16Array of bits (or make a float32 tensor and cast it)');
    typed = data;
  }
  let h: NativeTensor;
  try {
    h = native.fromArray(typed, s, dtype);
  } catch (e) {
    rethrow(e, 'tensor');
  }
  const t = new Tensor(h);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function full(shape: readonly number[], value: number, dtype: DType = 'float32'): Tensor {
  try {
    return new Tensor(native.full([...shape], value, dtype));
  } catch (e) {
    rethrow(e, 'full');
  }
}
export const zeros = (shape: readonly number[], dtype: DType = 'float32'): Tensor => full(shape, 0, dtype);
export const ones = (shape: readonly number[], dtype: DType = 'float32'): Tensor => full(shape, 1, dtype);

/** Checks that `x` is a live Tensor; returns its handle. */
export function handleOf(x: unknown, what: string, op: string): NativeTensor {
  if (!(x instanceof Tensor)) throw new ArgumentError(`${op}: ${what} must be a Tensor, got ${describe(x)}`);
  if (x.isDisposed) throw new DisposedError(`${op}: ${what} was disposed`);
  return x.handle;
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x === 'object' ? (x as object).constructor?.name ?? 'object' : typeof x;
}

// ---- scopes ----

function collect(v: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 8 || v === null || typeof v !== 'object') return;
  if (v instanceof Tensor) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const e of v) collect(e, out, depth + 1);
  else if (v instanceof Map) for (const e of v.values()) collect(e, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const e of Object.values(v)) collect(e, out, depth + 1);
}

/**
 * Runs fn and disposes every tensor created inside it except those it returns (in a Tensor, array,
 * Map or plain object) and those passed to keep(). Returned tensors move to the enclosing scope.
 * An async fn is not supported (its tensors would outlive the scope): dispose them yourself there.
 */
export function tidy<R>(fn: () => R): R {
  const scope = new Set<Tensor>();
  scopeStack.push(scope);
  let result: R;
  try {
    result = fn();
  } finally {
    scopeStack.pop();
  }
  if (result instanceof Promise) throw new ArgumentError('tidy(fn): fn must be synchronous');
  const keepSet = new Set<Tensor>();
  collect(result, keepSet);
  for (const t of scope) {
    if (keepSet.has(t) || kept.has(t)) {
      if (scopeStack.length) scopeStack[scopeStack.length - 1].add(t);
    } else t.dispose();
  }
  return result;
}

const kept = new WeakSet<Tensor>();
/** Exempts a tensor from disposal by the enclosing tidy() scopes. */
export function keep<T extends Tensor>(t: T): T {
  kept.add(t);
  return t;
}

/** Native memory per device: live tensors, bytes in use, bytes cached. */
export function memory() {
  return native.memory();
}

/** Returns the CPU allocator's cached blocks to the system (memory().bytesCached drops to 0). */
export function emptyCache(): void {
  native.emptyCache();
}

/** Internal: make a Tensor from an op's native result without scope tracking (used for .grad). */
export function untracked(h: NativeTensor): Tensor {
  return new Tensor(h, false);
}
