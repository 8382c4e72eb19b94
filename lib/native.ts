/**
 * The only file that touches the native addon: it loads `vitrim.node` (a prebuilt binary from
 * `prebuilds/<platform>-<arch>/` first, else the local `build/Release/`) and declares its surface.
 * Every function here validates its arguments natively and throws an Error whose `code` is one of
 * the `ERR_VITRIM_*` codes (mapped to typed error classes in `errors.ts`).
 *
 * Devices: every op runs on the device of its tensor inputs (all must be on one device, else
 * ERR_VITRIM_DEVICE); on cuda floating ops take float32 or bfloat16 (fp32 accumulation), on the cpu
 * float32 (bfloat16 is storage only there).
 *
 * Conventions: tensors are contiguous row-major; float32 unless stated; index tensors are int32;
 * attention's qkv is timm's fused layout [B, N, 3C]; seeds/offsets are integers in [0, 2^53].
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeError } from './errors.js';

export type DType = 'float32' | 'bfloat16' | 'int32';
export type Device = 'cpu' | 'cuda';
export type TypedData = Float32Array | Int32Array | Uint16Array;

/** A native tensor handle. Freed handles throw ERR_VITRIM_DISPOSED on every access but `freed`/`free`. */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: Device;
  readonly nbytes: number;
  readonly freed: boolean;
  /** A copy of the data (Uint16Array holds bfloat16 bits). */
  read(): TypedData;
  /**
   * Overwrites the data: from a typed array of the matching element type and length, or from a
   * tensor of the same dtype and element count on any device (device to device: queued on the
   * stream, no host wait).
   */
  write(data: TypedData | NativeTensor): void;
  /** Drops this handle's reference to the storage (idempotent). */
  free(): void;
  /** A view with another shape sharing storage (one dimension may be -1). */
  reshape(shape: number[]): NativeTensor;
  sameStorage(other: NativeTensor): boolean;
}

export type UnaryOp = 'neg' | 'abs' | 'sqr' | 'sqrt' | 'exp' | 'log' | 'sigmoid' | 'tanh' | 'relu' | 'gelu';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
export type ReduceOp = 'sum' | 'mean' | 'max';
export type Dist = 'uniform' | 'normal' | 'gumbel' | 'logistic';
type T = NativeTensor;
type OptT = NativeTensor | null;

export interface MemoryInfo {
  device: Device;
  liveTensors: number;
  bytesInUse: number;
  bytesCached: number;
  /** Page-locked host memory the device keeps for staging uploads (0 on cpu); emptyCache() frees it. */
  hostPinnedBytes: number;
}

/** One entry of backends(): whether a device can be used and, if not, every reason why. */
export interface BackendInfo {
  device: Device;
  available: boolean;
  /** For an available device: what it is (GPU name, compute capability, memory, versions). */
  detail: string;
  /** For an unavailable device: one line per attempt that failed. */
  reasons: string[];
}

export interface NativeInfo {
  threads: number;
  isa: string;
  napiVersion: number;
  cudaCompiled: boolean;
  compiler: string;
}

export interface Addon {
  NativeTensor: unknown;
  // ---- core (napi/core.cpp) ----
  fromArray(data: TypedData, shape: number[], dtype: DType): T;
  full(shape: number[], value: number, dtype: DType, device?: Device): T;
  /** A copy of x on `device` (always a new tensor, also when x is already there). */
  toDevice(x: T, device: Device): T;
  /** cpu and cuda, with why cuda is unavailable; the first call tries to load libvitrim_cuda. */
  backends(): BackendInfo[];
  /** Waits for queued work on the device (default cuda; a no-op where nothing was loaded). */
  synchronize(device?: Device): void;
  /**
   * synchronize() without blocking the event loop: waits on a worker thread for the work queued
   * before the call, then rejects with the error synchronize() would throw (a device error, a
   * deferred device-side check). Resolves at once on the cpu; throws during a graph capture.
   */
  synchronizeAsync(device?: Device): Promise<void>;
  /** TF32 tensor cores for float32 GEMMs on cuda (off by default). ERR_VITRIM_DEVICE without cuda. */
  setAllowTf32(allow: boolean): void;
  /**
   * When cuda ops that validate device-resident indices or labels (gather, scatter, gatherRows,
   * crossEntropy, casts to int32) report bad values: 'immediate' (default; one host sync per such
   * op, the error is thrown by the op) or 'deferred' (no sync; the error is thrown by the next call
   * that synchronises: a read, synchronize(), a copy to the cpu). Graph replays always defer.
   */
  setDeviceChecks(mode: 'immediate' | 'deferred'): void;
  /** Sets the function that makes the error objects native failures throw (lib/errors.ts's nativeError). */
  setErrorFactory(factory: (code: string, message: string) => Error): void;
  /**
   * Tracking scopes: every handle made while one is open (by any op, reshape included) is recorded.
   * trackBegin() opens one and returns its depth; trackEnd(depth, free) closes the innermost (depth
   * must match, else ERR_VITRIM_ARGUMENT) and, when `free`, frees every handle made inside it, so that
   * a composition of native calls that throws midway (a backward node out of device memory) leaves
   * nothing to the GC. Open one only around synchronous code, and always close it (try/finally).
   */
  trackBegin(): number;
  trackEnd(scope: number, free: boolean): void;
  /**
   * Test hook (fault injection): `n` > 0 makes the n-th tensor allocation on `device` from now and
   * every later one fail with ERR_VITRIM_MEMORY; 0 disarms. Returns the allocations on that device
   * counted since the previous call (so: call with 0, run, call with 0 again to count a run's).
   */
  allocFaults(device: Device, n: number): number;
  /**
   * CUDA graphs. graphBegin() starts recording the ops issued next (they are recorded, not run);
   * graphEnd() instantiates them and returns a graph id; graphReplay(id) re-runs the recorded work
   * on the same memory (write new inputs into the captured input tensors first; keep the inputs
   * and outputs alive). An op that synchronises with the host cannot be recorded: it throws, and
   * graphAbort() then ends the capture. graphDestroy(id) frees the graph's private memory pool
   * (idempotent). graphStats(id) says what a replay runs: the graph's nodes and, of those, its
   * kernels (launches). All of them need the cuda backend (ERR_VITRIM_DEVICE otherwise).
   */
  graphBegin(): void;
  graphEnd(): number;
  graphAbort(): void;
  graphReplay(graph: number): void;
  graphDestroy(graph: number): void;
  graphStats(graph: number): { nodes: number; kernels: number };
  cast(x: T, dtype: DType): T;
  copy(x: T): T;
  /** One entry per device in use (cuda only once its backend is loaded). */
  memory(): MemoryInfo[];
  /** Frees the allocators' cached blocks (cpu and cuda) and linearFused's packed weights. */
  emptyCache(): void;
  /**
   * The packed weight copies linearFused keeps (valid while a weight is not written in place;
   * dropped by emptyCache, bounded by VITRIM_PACK_CACHE_MB, default 1024, 0 disables).
   */
  linearCacheStats(): { entries: number; bytes: number };
  info(): NativeInfo;
  setNumThreads(n: number): void;
  // ---- elementwise (cpu/elementwise.cpp): binary ops broadcast numpy-style ----
  binary(op: BinaryOp, a: T, b: T): T;
  unary(op: UnaryOp, x: T): T;
  /** dL/dx of y = unary(op, x), from x, y and dL/dy. */
  unaryBackward(op: UnaryOp, x: T, y: T, gy: T): T;
  /** alpha * x + beta */
  affine(x: T, alpha: number, beta: number): T;
  /** 1 where x > threshold, else 0 (float32) */
  step(x: T, threshold: number): T;
  /** Sums x down to `shape` (the reverse of broadcasting). */
  sumTo(x: T, shape: number[]): T;
  // ---- reductions (cpu/reduce.cpp) ----
  reduce(op: ReduceOp, x: T, axes: number[], keepDims: boolean): T;
  /** Σ over the tensors of Σ x², float32 [1] on their device (accumulated in double; no read-back). */
  sumSquares(xs: T[]): T;
  // ---- layout (cpu/layout.cpp) ----
  permute(x: T, perm: number[]): T;
  slice(x: T, axis: number, start: number, end: number): T;
  sliceBackward(gy: T, shape: number[], axis: number, start: number): T;
  concat(xs: T[], axis: number): T;
  // ---- gemm (cpu/gemm.cpp) ----
  /** [.., M, K] x [.., K, N] (with optional transposes); b may be 2-D and shared across the batch. */
  matmul(a: T, b: T, transA: boolean, transB: boolean): T;
  /** y = x W^T + b over the last axis of x; W is [N, K]. */
  linearForward(x: T, w: T, b: OptT): T;
  /**
   * Inference-only fused linear (no backward): y = act(x W^T + b) (+ residual, shaped like y), the
   * activation and the residual add done in the GEMM's store epilogue (y written once).
   */
  linearFused(x: T, w: T, b: OptT, activation: 'none' | 'gelu', residual: OptT): T;
  /** [gx, gw, gb | null] */
  linearBackward(gy: T, x: T, w: T, needBias: boolean): [T, T, OptT];
  /**
   * In place: c = alpha·op(a)·op(b) + beta·c over the top-left windows op(a)[M, K], op(b)[K, N],
   * c[M, N] (BLAS sgemm; the leading dimensions are the tensors' row lengths). beta = 0 never reads c.
   */
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, a: T, b: T,
    beta: number, c: T): void;
  /**
   * Test/bench hook: pins the GEMM micro-kernel ('generic' | 'avx2' | 'avx512', only ones this CPU
   * runs; ERR_VITRIM_ARGUMENT otherwise) or returns to the CPUID choice ('auto'). Returns gemmIsa().
   */
  gemmSetIsa(isa: 'generic' | 'avx2' | 'avx512' | 'auto'): string;
  // ---- layernorm (cpu/layernorm.cpp) ----
  /** [y, mean, rstd]; y has outDtype (float32 or bfloat16; x's when absent), rounded once. */
  layernormForward(x: T, w: OptT, b: OptT, eps: number, outDtype?: DType | null): [T, T, T];
  /** [gx, gw | null, gb | null] */
  layernormBackward(gy: T, x: T, w: OptT, mean: T, rstd: T): [T, OptT, OptT];
  // ---- softmax (cpu/softmax.cpp), last axis ----
  softmaxForward(x: T, log: boolean): T;
  softmaxBackward(y: T, gy: T, log: boolean): T;
  // ---- attention (cpu/attention.cpp) ----
  /** [out [B,N,C], stats]; keep [B,N] is DynamicViT's key mask, headGate [B,H] scales head outputs. */
  attentionForward(qkv: T, numHeads: number, scale: number, keep: OptT, headGate: OptT, eps: number): [T, T];
  /** [gqkv, gkeep | null, gheadGate | null] */
  attentionBackward(
    gout: T, qkv: T, numHeads: number, scale: number, keep: OptT, headGate: OptT, eps: number, out: T, stats: T,
  ): [T, OptT, OptT];
  /** Varlen attention over packed sequences: qkv [R, 3C], cuSeqlens [S+1] int32, headGate [S, H] (0 = skip). */
  attentionVarlen(qkv: T, cuSeqlens: T, numHeads: number, scale: number, headGate: OptT): T;
  // ---- gather (cpu/gather.cpp) ----
  gatherTokens(x: T, idx: T): T;
  scatterTokens(g: T, idx: T, n: number): T;
  // ---- pack (cpu/pack.cpp): inference on packed kept rows ----
  /** x [R0, C], rows [R] int32 → [R, C] */
  gatherRows(x: T, rows: T): T;
  /** dst[rows[i]] += src[i] in place (rows distinct). */
  indexAddRows(dst: T, rows: T, src: T): void;
  // ---- loss (cpu/loss.cpp) ----
  /** [loss (scalar, mean over rows), lse [R]] */
  crossEntropyForward(logits: T, labels: T, smoothing: number): [T, T];
  crossEntropyBackward(logits: T, labels: T, smoothing: number, lse: T, gloss: number | T): T;
  // ---- topk (cpu/topk.cpp) ----
  /** [values, indices (int32)] along the last axis, sorted */
  topk(x: T, k: number, largest: boolean): [T, T];
  // ---- sampling (cpu/sample.cpp) ----
  random(shape: number[], dist: Dist, seed: number, offset: number, device?: Device): T;
  /** [y, ySoft] */
  gumbelSigmoid(logits: T, tau: number, threshold: number, hard: boolean, noise: OptT, seed: number, offset: number): [T, T];
  gumbelSigmoidBackward(ySoft: T, gy: T, tau: number): T;
  /** [y, ySoft] */
  gumbelSoftmax(logits: T, tau: number, hard: boolean, noise: OptT, seed: number, offset: number): [T, T];
  gumbelSoftmaxBackward(ySoft: T, gy: T, tau: number): T;
  // ---- patch (cpu/patch.cpp) ----
  patchify(x: T, p: number): T;
  unpatchify(g: T, imageShape: number[], p: number): T;
  // ---- optim (cpu/optim.cpp) ----
  /** In place on param, m and v. */
  adamwStep(param: T, grad: T, m: T, v: T, lr: number, beta1: number, beta2: number, eps: number,
    weightDecay: number, step: number): void;
  /**
   * adamwStep for a list of parameters sharing the hyper-parameters (one launch per up to 32 tensors
   * on cuda; the same bits as adamwStep per entry). All entries on one device; no two params/m/v
   * may share storage. gradScale (float32, one element, same device) multiplies every gradient
   * element first: a clipping factor computed on the device.
   */
  adamwStepMulti(params: T[], grads: T[], m: T[], v: T[], lr: number, beta1: number, beta2: number, eps: number,
    weightDecay: number, step: number, gradScale?: OptT): void;
  /** Name of the GEMM micro-kernel chosen at run time. */
  gemmIsa(): string;
}

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

function load(): Addon {
  const require = createRequire(import.meta.url);
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => Addon;
  try {
    // VITRIM_ADDON: a development build elsewhere (scripts/test-cpu-asan.sh's sanitizer build)
    if (process.env.VITRIM_ADDON) return require(process.env.VITRIM_ADDON) as Addon;
    return nodeGypBuild(root);
  } catch (e) {
    const err = new Error(
      `vitrim: the native addon could not be loaded (${(e as Error).message}). ` +
        'Run `npm install` (it builds from source with cmake-js when no prebuilt binary matches) ' +
        'or `npm run build`. Where vitrim is a dependency, npm 12 skips its install script unless ' +
        'package.json allows it: `npm install-scripts approve vitrim`, then `npm rebuild vitrim` ' +
        '(pnpm 10: `pnpm approve-builds`, then `pnpm rebuild vitrim`).',
    );
    (err as Error & { cause?: unknown }).cause = e;
    throw err;
  }
}

export const native: Addon = load();
// native failures are thrown as errors.ts's typed classes (MemoryError, ShapeError, ...)
native.setErrorFactory(nativeError);
