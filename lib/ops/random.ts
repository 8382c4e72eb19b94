/**
 * Randomness is data: every sampler takes an explicit `noise` tensor (tests feed PyTorch's) or a
 * (seed, offset) for the counter-based Philox stream shared by CPU and CUDA, keyed by the logical
 * element index — a seed gives the same draws on any device and for any launch shape.
 */
import { needsGrad, record } from '../autograd.js';
import { ArgumentError } from '../errors.js';
import { native, type Dist } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, free, handleOf, int, num, optHandle, out } from './_util.js';

export interface SampleOptions {
  /** Philox seed (integer, 0..2^53). */
  seed?: number;
  /** Stream offset: advance it per call so successive draws differ. */
  offset?: number;
  /** Explicit noise of the logits' shape instead of Philox draws. */
  noise?: Tensor | null;
}

function seedOf(o: SampleOptions, op: string): [number, number] {
  const seed = o.seed ?? 0;
  const offset = o.offset ?? 0;
  int(seed, 'seed', op, 0);
  int(offset, 'offset', op, 0);
  return [seed, offset];
}

/** Fresh random values: 'uniform' (0,1), 'normal', 'gumbel', 'logistic'. */
export function random(shape: readonly number[], dist: Dist, opts: { seed?: number; offset?: number } = {}): Tensor {
  const [seed, offset] = seedOf(opts, 'random');
  if (!['uniform', 'normal', 'gumbel', 'logistic'].includes(dist)) throw new ArgumentError(`random: unknown distribution '${dist}'`);
  return out(call('random', () => native.random([...shape], dist, seed, offset)));
}

/**
 * Gumbel-sigmoid (AdaViT): y_soft = σ((z + noise)/τ), noise ~ Logistic; `hard` gives the forward
 * value 1[y_soft > threshold] with the straight-through gradient of y_soft.
 */
export function gumbelSigmoid(logits: Tensor, opts: SampleOptions & { tau?: number; threshold?: number; hard?: boolean } = {}): Tensor {
  const op = 'gumbelSigmoid';
  const hz = handleOf(logits, 'logits', op);
  const tau = num(opts.tau ?? 1, 'tau', op, (v) => v > 0, '> 0');
  const threshold = num(opts.threshold ?? 0.5, 'threshold', op, (v) => v > 0 && v < 1, 'in (0, 1)');
  const hard = opts.hard ?? true;
  const hn = optHandle(opts.noise, 'noise', op);
  const [seed, offset] = seedOf(opts, op);
  const [hy, hs] = call(op, () => native.gumbelSigmoid(hz, tau, threshold, hard, hn, seed, offset));
  const y = out(hy);
  if (needsGrad(logits)) record(y, op, [logits], (g) => [native.gumbelSigmoidBackward(hs, g, tau)], [hs]);
  else free(hs);
  return y;
}

/** Gumbel-softmax over the last axis (DynamicViT); `hard` gives one-hot forward values, straight-through. */
export function gumbelSoftmax(logits: Tensor, opts: SampleOptions & { tau?: number; hard?: boolean } = {}): Tensor {
  const op = 'gumbelSoftmax';
  const hz = handleOf(logits, 'logits', op);
  const tau = num(opts.tau ?? 1, 'tau', op, (v) => v > 0, '> 0');
  const hard = opts.hard ?? true;
  const hn = optHandle(opts.noise, 'noise', op);
  const [seed, offset] = seedOf(opts, op);
  const [hy, hs] = call(op, () => native.gumbelSoftmax(hz, tau, hard, hn, seed, offset));
  const y = out(hy);
  if (needsGrad(logits)) record(y, op, [logits], (g) => [native.gumbelSoftmaxBackward(hs, g, tau)], [hs]);
  else free(hs);
  return y;
}

