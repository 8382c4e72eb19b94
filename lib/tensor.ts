/**
 * Tensor: a typed handle over native storage, with explicit disposal (`dispose()`, idempotent;
 * `tidy(fn)` scopes in the tfjs convention; `Symbol.dispose` for `using`) and the native object's GC
 * finaliser as the backstop. A tensor that an op saved for backward keeps its storage alive through
 * the op's own native handle, so disposing it early never breaks a later `backward()`.
 *
 * Devices: a tensor lives on 'cpu' or 'cuda' (`t.device`); ops run on the device of their inputs
 * (inputs on different devices: DeviceError). `t.to('cuda')` / `t.to('cpu')` copy across devices and
 * `t.to('bfloat16')` / `t.to('float32')` cast; both are differentiable (the gradient goes back to the
 * source device / dtype). Readback (`dataSync()`, `data()`, `toArray()`, `item()`) works on any device.
 */
import { boolOpt, intList, optsOf, refuseAsync, show } from './args.js';
import { ArgumentError, DisposedError, rethrow } from './errors.js';
import { native, type DType, type Device, type NativeTensor, type TypedData } from './native.js';
import { backward, graphMark, needsGrad, record, releaseSince, type GradNode } from './autograd.js';

export type { DType, Device } from './native.js';

let scopeStack: Set<Tensor>[] = [];

export class Tensor {
  #h: NativeTensor | null;
  #device: Device;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Set on leaves whose gradient `backward()` accumulates into `.grad`. */
  requiresGrad = false;
  grad: Tensor | null = null;
  /** The op that produced this tensor (null for leaves and under noGrad). */
  gradFn: GradNode | null = null;

  /** Wraps a native handle (takes ownership). Library code; users call `tensor()` / ops. */
  constructor(h: NativeTensor, track = true) {
    // `new Parameter(t)` / `new Tensor(t)` with a Tensor made an object whose every use failed later
    if (h instanceof Tensor) throw new ArgumentError(`new ${new.target.name}(h) takes a native handle, got a Tensor: use Parameter.from(t), parameter(data, shape) or tensor(data, shape)`);
    this.#h = h;
    this.shape = Object.freeze(h.shape);
    this.dtype = h.dtype;
    this.#device = h.device;
    if (track && scopeStack.length) scopeStack[scopeStack.length - 1].add(this);
  }

  /** 'cpu' or 'cuda'. Fixed for a tensor's life, except for a Parameter moved by `Module.to()`. */
  get device(): Device {
    return this.#device;
  }

  /**
   * Library internal (Parameter.moveTo): takes `h` (same shape and dtype, any device) as this
   * tensor's storage and frees the old handle. The object stays the same.
   */
  protected replaceHandle(h: NativeTensor): void {
    if (h.shape.join() !== this.shape.join() || h.dtype !== this.dtype) {
      throw new ArgumentError(`replaceHandle: [${h.shape}] ${h.dtype} does not match [${this.shape}] ${this.dtype}`);
    }
    const old = this.handle;
    this.#h = h;
    this.#device = h.device;
    old.free();
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

  /**
   * A copy of the data on the host as a typed array: Float32Array, Int32Array, or Uint16Array holding
   * the raw bits for bfloat16 (`toArray()` / `item()` / `values()` give numbers). On cuda the copy
   * waits for the work queued on the device.
   */
  dataSync(): TypedData {
    try {
      return this.handle.read();
    } catch (e) {
      rethrow(e, 'dataSync');
    }
  }
  /**
   * Readback as a Promise (same result as dataSync()). On cuda the wait for the queued work runs on
   * a worker thread (synchronizeAsync), so the event loop keeps running while the GPU computes; the
   * copy itself then happens on this thread. Rejects with the errors dataSync() would throw.
   */
  async data(): Promise<TypedData> {
    if (this.device === 'cuda') {
      try {
        await native.synchronizeAsync('cuda');
      } catch (e) {
        rethrow(e, 'data');
      }
    }
    return this.dataSync();
  }
  /** The values as float32 numbers (bfloat16 widened exactly; int32 converted). */
  values(): Float32Array {
    const d = this.dataSync();
    if (d instanceof Float32Array) return d;
    if (d instanceof Uint16Array) return bf16BitsToFloat32(d);
    return Float32Array.from(d);
  }
  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ArgumentError(`item() needs a one-element tensor, got shape [${this.shape}]`);
    return this.dtype === 'bfloat16' ? this.values()[0] : this.dataSync()[0];
  }
  /** The values as plain numbers (bfloat16 widened, not its bits). */
  toArray(): number[] {
    return Array.from(this.dtype === 'bfloat16' ? this.values() : this.dataSync());
  }

  /**
   * This tensor on another device and/or as another dtype: `t.to('cuda')`, `t.to('cpu')`,
   * `t.to('bfloat16')`, `t.to({ device: 'cuda', dtype: 'bfloat16' })`. Differentiable: the gradient
   * is copied back to the source device and cast back to the source dtype (float dtypes; a cast to
   * or from int32 carries no gradient). When nothing changes it returns this same tensor (as
   * PyTorch's `Tensor.to`), not a copy: dispose the result only if it is not `this`.
   * Without a usable CUDA backend, `to('cuda')` throws DeviceError naming every reason.
   */
  to(target: Device | DType | { device?: Device; dtype?: DType }): Tensor {
    let o: { device?: Device; dtype?: DType };
    if (typeof target === 'string') {
      if (isDevice(target)) o = { device: target };
      else if (isDType(target)) o = { dtype: target };
      else throw new ArgumentError(`to: expected a device ('cpu' | 'cuda') or a dtype ('float32' | 'bfloat16' | 'int32'), got '${target}'`);
    } else if (target && typeof target === 'object') o = target;
    else throw new ArgumentError(`to: expected a device, a dtype or { device, dtype }, got ${String(target)}`);
    if (o.device !== undefined && !isDevice(o.device)) throw new ArgumentError(`to: unknown device '${String(o.device)}' (cpu, cuda)`);
    if (o.dtype !== undefined && !isDType(o.dtype)) throw new ArgumentError(`to: unknown dtype '${String(o.dtype)}' (float32, bfloat16, int32)`);
    // Cast first, on the source device: a narrowing cast then moves half the bytes.
    const c = o.dtype ? cast(this, o.dtype) : this;
    if (!o.device || o.device === c.device) return c;
    try {
      return toDevice(c, o.device);
    } finally {
      if (c !== this) c.dispose();
    }
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
  backward(grad?: Tensor | null, opts?: { retainGraph?: boolean } | null): void {
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
  opts0: { dtype?: DType; device?: Device; requiresGrad?: boolean } | null = {},
): Tensor {
  const opts = optsOf(opts0, 'tensor');
  const isTyped = ArrayBuffer.isView(data) && !(data instanceof DataView) && !(data instanceof BigInt64Array) && !(data instanceof BigUint64Array);
  if (!isTyped && !Array.isArray(data)) throw new ArgumentError(`tensor: data must be an array of numbers or a typed array (Float32Array, Int32Array, ...), got ${show(data)}`);
  if (shape !== undefined && shape !== null) intList(shape, 'shape', 'tensor');
  const dtype: DType = opts.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32');
  if (!isDType(dtype)) throw new ArgumentError(`tensor: unknown dtype '${String(dtype)}' (float32, bfloat16, int32)`);
  const device = opts.device ?? 'cpu';
  if (!isDevice(device)) throw new ArgumentError(`tensor: unknown device '${String(device)}' (cpu, cuda)`);
  const s = shape ? [...shape] : [data.length];
  if (!isTyped) for (let i = 0; i < data.length; i++) if (typeof data[i] !== 'number') throw new ArgumentError(`tensor: data must hold numbers, got ${show(data[i])} at index ${i}`);
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
  } else if (data instanceof Uint16Array) {
    typed = data; // bfloat16 bits
  } else {
    typed = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>); // values, rounded below
  }
  let h: NativeTensor | null = null;
  try {
    h = native.fromArray(typed, s, typed instanceof Float32Array ? 'float32' : dtype);
    if (h.dtype !== dtype) h = replace(h, native.cast(h, dtype));
    if (device !== 'cpu') h = replace(h, native.toDevice(h, device));
  } catch (e) {
    h?.free(); // the host copy when the cast or the upload failed
    rethrow(e, 'tensor');
  }
  const t = new Tensor(h);
  if (boolOpt(opts.requiresGrad, false, 'requiresGrad', 'tensor')) t.requiresGrad = true;
  return t;
}

/** Frees `old` (the handle `next` was made from) and returns `next`. */
function replace(old: NativeTensor, next: NativeTensor): NativeTensor {
  old.free();
  return next;
}

/** Where and how full() / zeros() / ones() create a tensor: a dtype, or { dtype, device }. */
export type CreateOptions = DType | { dtype?: DType; device?: Device };

function createOpts(o: CreateOptions | undefined, op: string): { dtype: DType; device: Device } {
  const r = typeof o === 'string' || o === undefined || o === null ? { dtype: o ?? 'float32', device: 'cpu' as Device }
    : typeof o === 'object' ? { dtype: o.dtype ?? 'float32', device: o.device ?? 'cpu' } : { dtype: o as unknown as DType, device: 'cpu' as Device };
  if (!isDType(r.dtype)) throw new ArgumentError(`${op}: unknown dtype '${String(r.dtype)}' (float32, bfloat16, int32)`);
  if (!isDevice(r.device)) throw new ArgumentError(`${op}: unknown device '${String(r.device)}' (cpu, cuda)`);
  return r;
}

/** A tensor filled with `value`: full([2, 3], 1), full(s, 0, 'int32'), full(s, 0, { device: 'cuda' }). */
export function full(shape: readonly number[], value: number, opts?: CreateOptions): Tensor {
  const { dtype, device } = createOpts(opts, 'full');
  const s = intList(shape, 'shape', 'full');
  try {
    return new Tensor(native.full(s, value, dtype, device));
  } catch (e) {
    rethrow(e, 'full');
  }
}
export const zeros = (shape: readonly number[], opts?: CreateOptions): Tensor => full(shape, 0, opts);
export const ones = (shape: readonly number[], opts?: CreateOptions): Tensor => full(shape, 1, opts);

const DEVICES: readonly string[] = ['cpu', 'cuda'];
const DTYPES: readonly string[] = ['float32', 'bfloat16', 'int32'];
export function isDevice(d: unknown): d is Device {
  return typeof d === 'string' && DEVICES.includes(d);
}
export function isDType(d: unknown): d is DType {
  return typeof d === 'string' && DTYPES.includes(d);
}
const isFloat = (d: DType): boolean => d === 'float32' || d === 'bfloat16';

/** bfloat16 bits → float32 values (exact: bf16 is the top half of a float32). */
export function bf16BitsToFloat32(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return new Float32Array(u.buffer);
}

/**
 * x on `device` (differentiable: the gradient is copied back to x's device). Returns x itself when it
 * is already there. Throws DeviceError (with every reason) when the device cannot be used.
 */
export function toDevice(x: Tensor, device: Device): Tensor {
  const hx = handleOf(x, 'x', 'to');
  if (!isDevice(device)) throw new ArgumentError(`to: unknown device '${String(device)}' (cpu, cuda)`);
  if (x.device === device) return x;
  let h: NativeTensor;
  try {
    h = native.toDevice(hx, device);
  } catch (e) {
    rethrow(e, `to('${device}')`);
  }
  const y = new Tensor(h);
  if (needsGrad(x)) {
    const src = x.device;
    record(y, 'toDevice', [x], (g) => [g.device === src ? native.copy(g) : native.toDevice(g, src)]);
  }
  return y;
}

/**
 * x as `dtype` (float32 ↔ bfloat16 round to nearest even; to int32 truncates). Differentiable between
 * the float dtypes: the gradient is cast back to x's dtype (so float32 parameters used in bfloat16 get
 * float32 gradients). Returns x itself when it already has the dtype.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  const hx = handleOf(x, 'x', 'cast');
  if (!isDType(dtype)) throw new ArgumentError(`cast: unknown dtype '${String(dtype)}' (float32, bfloat16, int32)`);
  if (x.dtype === dtype) return x;
  let h: NativeTensor;
  try {
    h = native.cast(hx, dtype);
  } catch (e) {
    rethrow(e, `to('${dtype}')`);
  }
  const y = new Tensor(h);
  if (isFloat(x.dtype) && isFloat(dtype) && needsGrad(x)) {
    const src = x.dtype;
    record(y, 'cast', [x], (g) => [g.dtype === src ? native.copy(g) : native.cast(g, src)]);
  }
  return y;
}

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
 * When fn throws, its tensors are disposed all the same (keep()'s excepted), the graph recorded
 * inside it is freed (autograd's releaseSince; not what a kept tensor reaches) and the error goes
 * on: a failed step (out of memory, a bad input) leaves no device memory waiting for the GC.
 * An async fn is not supported (its tensors would outlive the scope): dispose them yourself there.
 */
export function tidy<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw new ArgumentError(`tidy: fn must be a function, got ${show(fn)}`);
  const scope = new Set<Tensor>();
  const mark = graphMark();
  scopeStack.push(scope);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    scopeStack.pop();
    releaseSince(mark, scope, [...scope].filter((t) => kept.has(t)));
    closeScope(scope, new Set());
    throw e;
  }
  scopeStack.pop();
  refuseAsync(result, 'tidy(fn)', "its tensors would outlive the scope");
  const keepSet = new Set<Tensor>();
  collect(result, keepSet);
  closeScope(scope, keepSet);
  return result;
}

/** Disposes a closed scope's tensors but those returned or kept, which move to the enclosing scope. */
function closeScope(scope: Set<Tensor>, returned: Set<Tensor>): void {
  for (const t of scope) {
    if (returned.has(t) || kept.has(t)) {
      if (scopeStack.length) scopeStack[scopeStack.length - 1].add(t);
    } else t.dispose();
  }
}

const kept = new WeakSet<Tensor>();
/** Exempts a tensor from disposal by the enclosing tidy() scopes. */
export function keep<T extends Tensor>(t: T): T {
  if (!(t instanceof Tensor)) throw new ArgumentError(`keep: expects a Tensor, got ${show(t)}`);
  kept.add(t);
  return t;
}

/**
 * Native memory per device: live tensors, bytes in use, bytes cached. The cpu entry comes first; a
 * cuda entry follows once the CUDA backend is loaded (by backends() or the first cuda tensor).
 */
export function memory() {
  return native.memory();
}

/** Returns the allocators' cached blocks (cpu, and cuda when loaded) and cuda's pinned upload staging to the system / driver. */
export function emptyCache(): void {
  native.emptyCache();
}

/** Internal: make a Tensor from an op's native result without scope tracking (used for .grad). */
export function untracked(h: NativeTensor): Tensor {
  return new Tensor(h, false);
}
