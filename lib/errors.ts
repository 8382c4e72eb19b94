/**
 * Typed errors. Native failures carry an `ERR_VITRIM_*` code; `rethrow` maps them to these classes so
 * callers can `catch (e) { if (e instanceof ShapeError) ... }` or test `e.code`.
 */
export class VitrimError extends Error {
  readonly code: string;
  constructor(message: string, code = 'ERR_VITRIM_INTERNAL') {
    super(message);
    this.name = 'VitrimError';
    this.code = code;
  }
}
export class ArgumentError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_ARGUMENT'); this.name = 'ArgumentError'; }
}
export class ShapeError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_SHAPE'); this.name = 'ShapeError'; }
}
export class DTypeError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_DTYPE'); this.name = 'DTypeError'; }
}
export class DeviceError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_DEVICE'); this.name = 'DeviceError'; }
}
export class IndexError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_INDEX'); this.name = 'IndexError'; }
}
export class DisposedError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_DISPOSED'); this.name = 'DisposedError'; }
}
export class MemoryError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_MEMORY'); this.name = 'MemoryError'; }
}
export class IOError extends VitrimError {
  constructor(m: string) { super(m, 'ERR_VITRIM_IO'); this.name = 'IOError'; }
}

const BY_CODE: Record<string, new (m: string) => VitrimError> = {
  ERR_VITRIM_ARGUMENT: ArgumentError,
  ERR_VITRIM_SHAPE: ShapeError,
  ERR_VITRIM_DTYPE: DTypeError,
  ERR_VITRIM_DEVICE: DeviceError,
  ERR_VITRIM_INDEX: IndexError,
  ERR_VITRIM_DISPOSED: DisposedError,
  ERR_VITRIM_MEMORY: MemoryError,
  ERR_VITRIM_IO: IOError,
};

// Marks an error made by nativeError (not yet named after the op that raised it: see rethrow).
const FROM_NATIVE = Symbol('vitrim.fromNative');

/**
 * The addon's error factory (native.setErrorFactory): every native failure is made here as the typed
 * class of its code, so that one reaching the user from any native call, also one no `rethrow`
 * wraps (a multi-step composition in a trainer, say), is a MemoryError, ShapeError, ... with the code.
 */
export function nativeError(code: string, message: string): VitrimError {
  const Cls = BY_CODE[code];
  const e = Cls ? new Cls(message) : new VitrimError(message, code);
  Object.defineProperty(e, FROM_NATIVE, { value: true });
  return e;
}

/** Re-throws a native error as the matching typed error, prefixed with the op's name. */
export function rethrow(e: unknown, op: string): never {
  if (e instanceof VitrimError && !(FROM_NATIVE in e)) throw e;
  const err = e as Error & { code?: string };
  const Cls = err?.code ? BY_CODE[err.code] : undefined;
  // native messages mostly name their op already: not twice
  const msg = err?.message?.startsWith(`${op}: `) ? err.message : `${op}: ${err?.message}`;
  if (Cls) throw new Cls(msg);
  if (err?.code === 'ERR_VITRIM_INTERNAL') throw new VitrimError(msg);
  throw e;
}
