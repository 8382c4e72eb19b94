/**
 * Fixed-shape inference plans on CUDA: the whole forward of a model recorded once as a CUDA graph
 * and replayed per call, so a batch-1 forward costs one graph launch instead of one launch (and one
 * JS → native call) per op. This is what makes small-batch inference fast: eager DeiT-S at batch 1
 * is bound by launch overhead, not by the GPU.
 *
 * The plan owns its input tensor (written by `run` before each replay) and its output tensor
 * (rewritten by each replay: read it, or copy it, before the next `run`). Everything the forward
 * allocated lives in the graph's private memory pool until `dispose()`. The model's parameters are
 * captured by address: moving or disposing the model invalidates the plan (it checks that the
 * parameters still live on cuda before every run), while in-place updates (an optimizer step)
 * are seen by the next replay. A bfloat16 plan casts the weights once instead of in every replay
 * (`weights: 'snapshot'`, the default: a separate small graph casts them into bfloat16 copies that
 * the forward reads; `refreshWeights()` replays it after the float32 weights changed), or, with
 * `weights: 'live'`, records the casts in the forward like eager autocast (in-place updates seen,
 * about twice the kernels at batch 1).
 *
 * What cannot be captured: ops that synchronise with the host (reading a tensor, uploading host
 * data, device-side index checks). A dense ViT forward has none; the packed adaptive inference
 * (lib/infer/adavit-infer.ts) chooses its shapes from the data and is not a fixed-shape plan.
 */
import { intList, optsOf, refuseAsync, show } from '../args.js';
import { ArgumentError, DeviceError, DisposedError, rethrow } from '../errors.js';
import { autocast, recordCasts, withCastCache, type AutocastDtype } from '../autocast.js';
import { noGrad } from '../autograd.js';
import { native } from '../native.js';
import { Module } from '../nn/module.js';
import { Tensor, cast, full, keep, tidy } from '../tensor.js';

/** A recorded CUDA graph (see native.graphBegin). */
export class CudaGraph {
  #id: number | null;
  constructor(id: number) {
    this.#id = id;
  }
  /** Re-runs the recorded work (asynchronous: a read or synchronize() waits for it). */
  replay(): void {
    if (this.#id === null) throw new ArgumentError('CudaGraph: replay after dispose()');
    native.graphReplay(this.#id);
  }
  /** The graph's nodes and, of those, its kernels: the launches one replay makes. */
  stats(): { nodes: number; kernels: number } {
    if (this.#id === null) throw new ArgumentError('CudaGraph: stats after dispose()');
    return native.graphStats(this.#id);
  }
  /** Frees the graph and its memory pool (idempotent). */
  dispose(): void {
    if (this.#id !== null) native.graphDestroy(this.#id);
    this.#id = null;
  }
}

/**
 * Records `fn` (its ops are recorded, not run) and returns the graph with fn's result, whose tensors
 * each replay rewrites. On an error the capture is abandoned and the error rethrown.
 */
export function captureGraph<R>(fn: () => R): { graph: CudaGraph; result: R } {
  if (typeof fn !== 'function') throw new ArgumentError(`captureGraph: fn must be a function, got ${show(fn)}`);
  try {
    native.graphBegin();
  } catch (e) {
    rethrow(e, 'captureGraph');
  }
  let result: R;
  try {
    result = fn();
  } catch (e) {
    native.graphAbort();
    throw e;
  }
  if (result instanceof Promise) native.graphAbort(); // nothing recorded: the graph would lack what follows an await
  refuseAsync(result, 'captureGraph(fn)', 'only its part before the first await would be recorded');
  try {
    return { graph: new CudaGraph(native.graphEnd()), result };
  } catch (e) {
    rethrow(e, 'captureGraph');
  }
}

export interface PlanOptions {
  /** Batch size the plan is recorded for (default 1). */
  batch?: number;
  /** 'float32' (default) or 'bfloat16' (autocast: GEMMs and attention in bf16, as in training). */
  precision?: AutocastDtype;
  /**
   * bfloat16 only: 'snapshot' (default) casts the float32 weights to bfloat16 once, outside the
   * forward's graph (call `refreshWeights()` after changing them); 'live' casts them in every
   * replay, as eager autocast does, so in-place updates are seen at once.
   */
  weights?: 'snapshot' | 'live';
}

export interface InferencePlan {
  readonly input: Tensor;
  readonly output: Tensor;
  /**
   * Writes `x` into the input and replays: host data, or a tensor of the input's shape (a float32
   * cuda tensor is copied on the device, without a round trip through the host).
   */
  run(x: Float32Array | Tensor): Tensor;
  /** What one replay runs: the recorded graph's nodes and kernel launches. */
  readonly graphStats: { nodes: number; kernels: number };
  /** bfloat16 snapshot plans: how many parameters are held as bfloat16 copies (those the forward casts); else 0. */
  readonly weightCopies: number;
  /** bfloat16 snapshot plans: re-casts the weights (after they changed); otherwise nothing to do. */
  refreshWeights(): void;
  dispose(): void;
}

/**
 * Records `model.forward` on a [batch, ...inputShape] cuda input as a CUDA graph. The model must be
 * on cuda (Module.to('cuda')); the forward runs once eagerly first (warm-up: GEMM heuristics and
 * allocator blocks), then once under capture.
 */
export function createInferencePlan(
  model: Module & { forward(x: Tensor): Tensor },
  inputShape: readonly number[],
  options?: PlanOptions | null,
): InferencePlan {
  if (!(model instanceof Module) || typeof model.forward !== 'function') {
    throw new ArgumentError(`createInferencePlan: model must be a Module with a forward(x) method, got ${show(model)}`);
  }
  intList(inputShape, 'inputShape', 'createInferencePlan');
  const opts = optsOf(options, 'createInferencePlan');
  const batch = opts.batch ?? 1;
  if (!Number.isInteger(batch) || batch < 1) throw new ArgumentError(`createInferencePlan: batch must be a positive integer, got ${batch}`);
  const params = model.parameters();
  const onCuda = () => params.every((p) => !p.isDisposed && p.device === 'cuda');
  if (!onCuda()) throw new DeviceError('createInferencePlan: move the model to cuda first (model.to("cuda"))');
  const precision = opts.precision ?? 'float32';
  if (precision !== 'float32' && precision !== 'bfloat16') throw new ArgumentError(`createInferencePlan: precision must be 'float32' or 'bfloat16', got ${show(precision)}`);
  const weights = opts.weights ?? 'snapshot';
  if (weights !== 'snapshot' && weights !== 'live') throw new ArgumentError(`createInferencePlan: weights must be 'snapshot' or 'live', got ${String(weights)}`);
  const cache = new Map<Tensor, Tensor>();
  let refresh: CudaGraph | null = null;
  const input = full([batch, ...inputShape], 0, { device: 'cuda' });
  const forward = () => noGrad(() => (precision === 'bfloat16'
    ? autocast('bfloat16', () => withCastCache(cache, () => model.forward(input)).result)
    : model.forward(input)));
  let captured: { graph: CudaGraph; result: Tensor };
  try {
    // Warm-up, eager. For a bfloat16 snapshot plan it also records which parameters the forward
    // casts (the Linear weights and the biases that go to a bfloat16 GEMM; not LayerNorm's, nor the
    // tokens): one small graph then casts just those into bfloat16 copies (its replay refreshes
    // them in place), and the captured forward reads the copies instead of casting.
    let casts: Tensor[] = [];
    tidy(() => {
      casts = recordCasts(() => {
        forward();
      }).cast;
    });
    if (precision === 'bfloat16' && weights === 'snapshot') {
      const mine = new Set<Tensor>(params);
      const ps = casts.filter((t) => mine.has(t));
      const r = captureGraph(() => noGrad(() => ps.map((p) => keep(cast(p, 'bfloat16')))));
      refresh = r.graph;
      r.result.forEach((c, i) => cache.set(ps[i], c));
      refresh.replay();
    }
    native.synchronize('cuda');
    captured = captureGraph(() => tidy(() => keep(forward())));
  } catch (e) {
    refresh?.dispose();
    for (const c of cache.values()) c.dispose();
    input.dispose();
    throw e;
  }
  const { graph, result: output } = captured;
  let disposed = false;
  const graphStats = graph.stats();
  return {
    input,
    output,
    graphStats,
    weightCopies: cache.size,
    run(x: Float32Array | Tensor): Tensor {
      if (disposed) throw new ArgumentError('InferencePlan: run after dispose()');
      if (!onCuda()) throw new DeviceError('InferencePlan: the model was moved off cuda or disposed after the plan was made');
      if (x instanceof Tensor) {
        if (x.shape.join() !== input.shape.join()) {
          throw new ArgumentError(`InferencePlan: input must have shape [${input.shape}], got [${x.shape}]`);
        }
        if (x.isDisposed) throw new DisposedError('InferencePlan: the input tensor was disposed');
        // float32 from any device: copied as it is (on the device from cuda); other dtypes as float32 values
        input.handle.write(x.dtype === 'float32' ? x.handle : x.values());
      } else {
        input.handle.write(x);
      }
      graph.replay();
      return output;
    },
    refreshWeights(): void {
      if (disposed) throw new ArgumentError('InferencePlan: refreshWeights after dispose()');
      if (!onCuda()) throw new DeviceError('InferencePlan: the model was moved off cuda or disposed after the plan was made');
      refresh?.replay();
    },
    dispose(): void {
      if (disposed) return;
      disposed = true;
      graph.dispose();
      refresh?.dispose();
      for (const c of cache.values()) c.dispose();
      output.dispose();
      input.dispose();
    },
  };
}
