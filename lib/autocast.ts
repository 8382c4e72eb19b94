/**
 * Mixed precision in PyTorch's `torch.autocast` style, for bfloat16 on CUDA with float32 master
 * weights.
 *
 *   const loss = autocast('bfloat16', () => ops.crossEntropy(model.forward(x), labels));
 *   loss.backward();            // parameters and their .grad stay float32
 *
 * Inside an `autocast('bfloat16', fn)` scope, for tensors on cuda:
 * - lower-precision ops — matmul, linear, linearFused (so every Linear, the patch embedding, the
 *   attention qkv/proj and the MLP) and attention — cast their float32 floating inputs (weights and
 *   biases included) to bfloat16 with a differentiable cast whose backward casts the gradient back to
 *   float32, and compute in bfloat16 (fp32 accumulation); their outputs are bfloat16. What runs on
 *   those outputs runs in bfloat16 too (the GELU between the MLP's linears). Attention's keep mask
 *   and head gate are left in float32 (masks, not activations).
 * - float32 ops — layerNorm, softmax, logSoftmax, crossEntropy, sum/mean, exp/log, the Gumbel
 *   samplers — cast bfloat16 inputs to float32 and compute in float32.
 * - everything else (add, mul, concat, ...) runs in the widest floating dtype of its inputs (type
 *   promotion: float32 + bfloat16 → float32; this holds outside autocast too), so a ViT's residual
 *   stream stays float32.
 * `autocast('float32', fn)` turns autocast off inside fn (PyTorch's `enabled=False`).
 *
 * On the CPU autocast is a no-op: the CPU kernels compute in float32 only (bfloat16 is a storage
 * format there), so ops on cpu tensors inside a bfloat16 scope run exactly as outside it.
 * The scope is dynamic and synchronous, like tidy(): an async fn is rejected (its later ops would
 * run outside the scope). Casts of the same weight are not cached across uses (each use casts),
 * except inside withCastCache (no gradient recorded; inference plans use it for their weights).
 */
import { isGradEnabled } from './autograd.js';
import { refuseAsync } from './args.js';
import { ArgumentError } from './errors.js';
import { cast, type Tensor } from './tensor.js';

export type AutocastDtype = 'bfloat16' | 'float32';

let current: AutocastDtype = 'float32';

/** Runs fn with autocast to `dtype` ('bfloat16' on, 'float32' off); restores the previous state. */
export function autocast<R>(dtype: AutocastDtype, fn: () => R): R {
  if (dtype !== 'bfloat16' && dtype !== 'float32') throw new ArgumentError(`autocast: dtype must be 'bfloat16' or 'float32', got '${String(dtype)}'`);
  if (typeof fn !== 'function') throw new ArgumentError('autocast: fn must be a function');
  const prev = current;
  current = dtype;
  let r: R;
  try {
    r = fn();
  } finally {
    current = prev;
  }
  refuseAsync(r, 'autocast(dtype, fn)', 'what runs after its first await would not be autocast');
  return r;
}

/** The autocast dtype in effect ('float32' when off). */
export function autocastDtype(): AutocastDtype {
  return current;
}

/** True when a lower-precision op on a tensor of this device runs in bfloat16. */
export function lowersOn(device: string): boolean {
  return current === 'bfloat16' && device === 'cuda';
}

/**
 * The dtype for a float32 op's output that only a lower-precision op reads (a ViT's LayerNorm before
 * its qkv or fc1 Linear): 'bfloat16' when autocast lowers ops on this device (the consumer would
 * cast to it anyway; producing it directly saves the cast pass), else undefined (the op's default).
 */
export function lowOutDtype(device: string): 'bfloat16' | undefined {
  return lowersOn(device) ? 'bfloat16' : undefined;
}

let castCache: { map: ReadonlyMap<Tensor, Tensor>; hits: number } | null = null;
let castRecord: Set<Tensor> | null = null;

/**
 * Runs fn with ready bfloat16 copies of float32 tensors (typically a model's weights): inside, a
 * lower-precision op that would cast a tensor found in `cache` uses its copy instead, launching no
 * cast. Only where no gradient is recorded (the cast is what carries the gradient to the float32
 * tensor). The copies must be current: inference plans keep them so (createInferencePlan).
 * Returns fn's result and how many casts the cache replaced.
 */
export function withCastCache<R>(cache: ReadonlyMap<Tensor, Tensor>, fn: () => R): { result: R; hits: number } {
  const prev = castCache;
  const mine = { map: cache, hits: 0 };
  castCache = mine;
  try {
    return { result: fn(), hits: mine.hits };
  } finally {
    castCache = prev;
  }
}

/**
 * Runs fn and returns, with its result, the float32 tensors that lower-precision ops inside it cast
 * to bfloat16 (each once, in first-cast order; a tensor served by withCastCache is not cast, so not
 * listed). Inference plans use it to snapshot only the weights the forward really casts.
 */
export function recordCasts<R>(fn: () => R): { result: R; cast: Tensor[] } {
  const prev = castRecord;
  const mine = new Set<Tensor>();
  castRecord = mine;
  try {
    return { result: fn(), cast: [...mine] };
  } finally {
    castRecord = prev;
    if (prev) for (const t of mine) prev.add(t);
  }
}

/**
 * Input of a lower-precision op: a float32 cuda tensor cast to bfloat16 when autocast is on (the cast
 * is pushed on `temps` so the caller can dispose it after the op); anything else unchanged.
 */
export function lowIn<T extends Tensor | null | undefined>(x: T, temps: Tensor[]): T {
  if (!x || current !== 'bfloat16' || x.device !== 'cuda' || x.dtype !== 'float32') return x;
  const hit = castCache && !isGradEnabled() ? castCache.map.get(x) : undefined;
  if (hit) {
    castCache!.hits++;
    return hit as T;
  }
  const c = cast(x, 'bfloat16');
  temps.push(c);
  castRecord?.add(x);
  return c as T;
}

/** Input of a float32 op: a bfloat16 tensor cast to float32 when autocast is on; else unchanged. */
export function highIn<T extends Tensor | null | undefined>(x: T, temps: Tensor[]): T {
  if (!x || current !== 'bfloat16' || x.dtype !== 'bfloat16') return x;
  const c = cast(x, 'float32');
  temps.push(c);
  return c as T;
}

/**
 * Type promotion for ops that combine floating tensors (binary ops, concat): when float32 and
 * bfloat16 meet, the bfloat16 ones are cast to float32 (differentiably). Always on, not only under
 * autocast. Casts made are pushed on `temps`.
 */
export function promote(xs: readonly Tensor[], temps: Tensor[]): Tensor[] {
  let f32 = false;
  let bf16 = false;
  for (const x of xs) {
    if (x.dtype === 'float32') f32 = true;
    else if (x.dtype === 'bfloat16') bf16 = true;
  }
  if (!(f32 && bf16)) return [...xs];
  return xs.map((x) => {
    if (x.dtype !== 'bfloat16') return x;
    const c = cast(x, 'float32');
    temps.push(c);
    return c;
  });
}

/** Disposes the casts an op made for its inputs. */
export function release(temps: Tensor[]): void {
  for (const t of temps) t.dispose();
}
