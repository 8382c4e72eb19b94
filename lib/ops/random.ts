/**
 * Randomness is data: every sampler takes an explicit `noise` tensor (tests feed PyTorch's) or a
 * (seed, offset) for the counter-based Philox stream shared by CPU and CUDA, keyed by the logical
 * element index — a seed gives the same draws on any device and for any launch shape.
 */
import { highIn, release } from '../autocast.js';
import { needsGrad, record } from '../autograd.js';
import { ArgumentError } from '../errors.js';
import { native, type Device, type Dist } from '../native.js';
import { isDevice, type Tensor } from '../tensor.js';
import { call, free, handleOf, int, intList, num, optHandle, optsOf, out } from './_util.js';

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
  int(seed, 'seed', op, 0, Number.MAX_SAFE_INTEGER);
  int(offset, 'offset', op, 0, Number.MAX_SAFE_INTEGER);
  return [seed, offset];
}

/**
 * Fresh random values: 'uniform' (0,1), 'normal', 'gumbel', 'logistic', float32, on `device` (default
 * cpu). The same (seed, offset) gives the same values on every device.
 */
export function random(shape: readonly number[], dist: Dist, opts0: { seed?: number; offset?: number; device?: Device } | null = {}): Tensor {
  const opts = optsOf(opts0, 'random');
  const s = intList(shape, 'shape', 'random');
  const [seed, offset] = seedOf(opts, 'random');
  if (!['uniform', 'normal', 'gumbel', 'logistic'].includes(dist)) throw new ArgumentError(`random: unknown distribution '${dist}'`);
  const device = opts.device ?? 'cpu';
  if (!isDevice(device)) throw new ArgumentError(`random: unknown device '${String(device)}' (cpu, cuda)`);
  return out(call('random', () => native.random(s, dist, seed, offset, device)));
}

/**
 * Gumbel-sigmoid (AdaViT): y_soft = σ((z + noise)/τ), noise ~ Logistic; `hard` gives the forward
 * value 1[y_soft > threshold] with the straight-through gradient of y_soft. Runs on the logits'
 * device (an explicit noise tensor must be there too); float32 under autocast('bfloat16').
 */
export function gumbelSigmoid(logits0: Tensor, opts0: SampleOptions & { tau?: number; threshold?: number; hard?: boolean } | null = {}): Tensor {
  const op = 'gumbelSigmoid';
  const opts = optsOf(opts0, op);
  handleOf(logits0, 'logits', op);
  const temps: Tensor[] = [];
  const logits = highIn(logits0, temps);
  const hz = logits.handle;
  const tau = num(opts.tau ?? 1, 'tau', op, (v) => v > 0, '> 0');
  const threshold = num(opts.threshold ?? 0.5, 'threshold', op, (v) => v > 0 && v < 1, 'in (0, 1)');
  const hard = opts.hard ?? true;
  const hn = optHandle(opts.noise, 'noise', op);
  const [seed, offset] = seedOf(opts, op);
  const [hy, hs] = call(op, () => native.gumbelSigmoid(hz, tau, threshold, hard, hn, seed, offset));
  const y = out(hy);
  if (needsGrad(logits)) record(y, op, [logits], (g) => [native.gumbelSigmoidBackward(hs, g, tau)], [hs]);
  else free(hs);
  release(temps);
  return y;
}

/**
 * Gumbel-softmax over the last axis (DynamicViT); `hard` gives one-hot forward values, straight-through.
 * Runs on the logits' device; float32 under autocast('bfloat16').
 */
export function gumbelSoftmax(logits0: Tensor, opts0: SampleOptions & { tau?: number; hard?: boolean } | null = {}): Tensor {
  const op = 'gumbelSoftmax';
  const opts = optsOf(opts0, op);
  handleOf(logits0, 'logits', op);
  const temps: Tensor[] = [];
  const logits = highIn(logits0, temps);
  const hz = logits.handle;
  const tau = num(opts.tau ?? 1, 'tau', op, (v) => v > 0, '> 0');
  const hard = opts.hard ?? true;
  const hn = optHandle(opts.noise, 'noise', op);
  const [seed, offset] = seedOf(opts, op);
  const [hy, hs] = call(op, () => native.gumbelSoftmax(hz, tau, hard, hn, seed, offset));
  const y = out(hy);
  if (needsGrad(logits)) record(y, op, [logits], (g) => [native.gumbelSoftmaxBackward(hs, g, tau)], [hs]);
  else free(hs);
  release(temps);
  return y;
}

