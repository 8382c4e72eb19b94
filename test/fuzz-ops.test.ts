// The public ops (lib/ops, what users call) under random and hostile arguments, fuzzed with
// fast-check, gradients included: tensors of random shapes and dtypes (some requiring grad, some
// disposed), numbers at the edges, wrong kinds in any slot, option objects with random fields, and
// coherent calls (shapes that fit) so that the backward runs too. Each call, and `backward()` of the
// sum of each float output that requires grad, must succeed or throw a typed VitrimError. (Leaks are
// checked by the native fuzzer, test/fuzz-native.ts: here a forward's saved tensors live on until
// the GC collects its graph when backward() was never called, by design.)
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArgumentError, memory, ops, tensor, tidy, Tensor, type DType } from '../lib/index.js';
import { MemoryError } from '../lib/errors.js';
import { expectThrowsLike, isTypedError } from './fuzz-helpers.js';
import { RUN_SEED } from './helpers.js';
import { eachAllocFailing } from './oom-helpers.js';

const RUNS = Number(process.env.VITRIM_FUZZ_RUNS ?? 200);

type TDesc = { k: 'T'; dtype: DType; shape: number[]; grad: boolean; disposed: boolean; seed: number; hi?: number; unit?: boolean };
type D = TDesc | { k: 'v'; v: unknown } | { k: 'list'; items: D[] } | { k: 'obj'; fields: [string, D][] };

const DIMS = [1, 1, 2, 2, 3, 4, 0, 5];
const EDGE = [0, 1, -1, 0.5, 2, 3, 1e-6, Number.NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31), 1.5, 1e30];
const JUNK: unknown[] = ['x', {}, null, undefined, [1], true, 1n];
const V = (v: unknown): D => ({ k: 'v', v });
const tArb = (dtypes: DType[] = ['float32', 'float32', 'float32', 'float32', 'bfloat16', 'int32']) => fc.record({
  k: fc.constant('T' as const),
  dtype: fc.constantFrom(...dtypes),
  shape: fc.array(fc.constantFrom(...DIMS), { maxLength: 4 }),
  grad: fc.boolean(),
  disposed: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
  seed: fc.nat(1 << 20),
});
const junk: fc.Arbitrary<D> = fc.constantFrom(...JUNK).map(V);
const slot = (a: fc.Arbitrary<D>) => fc.oneof({ weight: 20, arbitrary: a }, { weight: 1, arbitrary: junk });
const T = slot(tArb());
const I = slot(tArb(['int32', 'int32', 'int32', 'float32']));
const O = slot(fc.oneof(fc.constant(V(null)), fc.constant(V(undefined)), tArb()));
const n = slot(fc.oneof(fc.constantFrom(...EDGE), fc.double({ min: -3, max: 3, noNaN: true })).map(V));
const i = slot(fc.oneof(fc.integer({ min: -3, max: 6 }), fc.constantFrom(2 ** 31, 1.5, Number.NaN)).map(V));
const b = slot(fc.boolean().map(V));
const ints = slot(fc.array(fc.integer({ min: -3, max: 6 }), { maxLength: 4 }).map(V));
const strs = (xs: string[]) => slot(fc.constantFrom(...xs, 'bogus').map(V));
/** An options object: a random subset of `fields`, each from its arbitrary. */
const opts = (fields: Record<string, fc.Arbitrary<D>>) => slot(
  fc.subarray(Object.keys(fields)).chain((keys) => fc.tuple(...keys.map((k) => fields[k])).map((vals): D => ({ k: 'obj', fields: keys.map((k, j) => [k, vals[j]]) }))),
);
const list = slot(fc.array(tArb(), { maxLength: 3 }).map((items): D => ({ k: 'list', items })));

// Coherent calls (then randomly mutated by the slots above being mixed in per argument).
const F = (shape: number[], o: Partial<TDesc> = {}): TDesc => ({ k: 'T', dtype: 'float32', shape, grad: true, disposed: false, seed: shape.length * 131 + shape.reduce((a, x) => a * 7 + x, 3), ...o });
const dimsArb = fc.record({ A: fc.constantFrom(1, 2, 3), B: fc.constantFrom(1, 2, 4), C: fc.constantFrom(1, 3, 4), H: fc.constantFrom(1, 2), Dh: fc.constantFrom(2, 4) });
type Dims = { A: number; B: number; C: number; H: number; Dh: number };
const co = (f: (d: Dims) => D[]) => dimsArb.map(f);

const unary = ['neg', 'abs', 'square', 'sqrt', 'exp', 'log', 'sigmoid', 'tanh', 'relu', 'gelu', 'softmax', 'logSoftmax'];
const SPECS: Record<string, { random: fc.Arbitrary<D>[]; coherent?: fc.Arbitrary<D[]> }> = {
  ...Object.fromEntries(['add', 'sub', 'mul', 'div'].map((o) => [o, {
    random: [fc.oneof(T, n), fc.oneof(T, n)],
    coherent: co((d) => [F([d.A, d.B]), F([d.B])]),
  }])),
  ...Object.fromEntries(unary.map((o) => [o, { random: [T], coherent: co((d) => [F([d.A, d.B], { unit: o === 'log' || o === 'sqrt' })]) }])),
  affine: { random: [T, n, n], coherent: co((d) => [F([d.A, d.B]), V(2), V(1)]) },
  scale: { random: [T, n] },
  step: { random: [T, n] },
  sumTo: { random: [T, ints], coherent: co((d) => [F([d.A, d.B]), V([1, d.B])]) },
  reshape: { random: [T, ints], coherent: co((d) => [F([d.A, d.B]), V([d.B, d.A])]) },
  permute: { random: [T, ints], coherent: co((d) => [F([d.A, d.B, d.C]), V([2, 0, 1])]) },
  transpose: { random: [T, i, i] },
  slice: { random: [T, i, i, i], coherent: co((d) => [F([d.A, d.B + 1]), V(1), V(1), V(d.B + 1)]) },
  concat: { random: [list, i], coherent: co((d) => [{ k: 'list', items: [F([d.A, d.B]), F([d.A, d.C])] }, V(1)]) },
  matmul: { random: [T, T, opts({ transA: b, transB: b })], coherent: co((d) => [F([d.A, d.B, d.C]), F([d.C, d.H]), V(undefined)]) },
  linear: { random: [T, T, O], coherent: co((d) => [F([d.A, d.B]), F([d.C, d.B]), F([d.C])]) },
  linearFused: { random: [T, T, O, opts({ activation: strs(['none', 'gelu']), residual: O })], coherent: co((d) => [F([d.A, d.B]), F([d.C, d.B]), F([d.C]), { k: 'obj', fields: [['activation', V('gelu')], ['residual', F([d.A, d.C])]] }]) },
  layerNorm: { random: [T, O, O, n, opts({ dtype: strs(['float32', 'bfloat16']) })], coherent: co((d) => [F([d.A, d.C]), F([d.C]), F([d.C]), V(1e-6), V(undefined)]) },
  attention: {
    random: [T, opts({ numHeads: i, scale: n, keep: O, headGate: O, eps: n })],
    coherent: co((d) => [F([d.A, d.B, 3 * d.H * d.Dh]), { k: 'obj', fields: [['numHeads', V(d.H)], ['keep', F([d.A, d.B], { unit: true })], ['headGate', F([d.A, d.H], { unit: true })]] }]),
  },
  gatherTokens: { random: [T, I], coherent: co((d) => [F([d.A, d.B + 1, d.C]), { k: 'T', dtype: 'int32', shape: [d.A, d.B], grad: false, disposed: false, seed: 9, hi: d.B + 1 }]) },
  scatterTokens: { random: [T, I, i], coherent: co((d) => [F([d.A, d.B, d.C]), { k: 'T', dtype: 'int32', shape: [d.A, d.B], grad: false, disposed: false, seed: 9, hi: d.B + 1 }, V(d.B + 1)]) },
  crossEntropy: { random: [T, I, opts({ labelSmoothing: n })], coherent: co((d) => [F([d.A, d.C]), { k: 'T', dtype: 'int32', shape: [d.A], grad: false, disposed: false, seed: 5, hi: d.C }, { k: 'obj', fields: [['labelSmoothing', V(0.1)]] }]) },
  topk: { random: [T, i, opts({ largest: b })], coherent: co((d) => [F([d.A, d.C]), V(Math.min(2, d.C)), V(undefined)]) },
  random: { random: [ints, strs(['uniform', 'normal', 'gumbel', 'logistic']), opts({ seed: i, offset: i, device: strs(['cpu', 'cuda']) })] },
  gumbelSigmoid: { random: [T, opts({ tau: n, threshold: n, hard: b, seed: i, offset: i, noise: O })], coherent: co((d) => [F([d.A, d.B]), { k: 'obj', fields: [['tau', V(1)], ['hard', V(true)], ['seed', V(3)]] }]) },
  gumbelSoftmax: { random: [T, opts({ tau: n, hard: b, seed: i, offset: i, noise: O })], coherent: co((d) => [F([d.A, d.B]), { k: 'obj', fields: [['tau', V(0.5)], ['seed', V(4)]] }]) },
  patchify: { random: [T, i], coherent: co((d) => [F([d.A, 3, 2 * d.B, 2 * d.B]), V(2)]) },
  patchEmbed: { random: [T, T, O, i], coherent: co((d) => [F([d.A, 3, 2 * d.B, 2 * d.B]), F([d.C, 3, 2, 2]), F([d.C]), V(2)]) },
  sum: { random: [T, fc.oneof(i, ints), b], coherent: co((d) => [F([d.A, d.B]), V([0]), V(true)]) },
  mean: { random: [T, fc.oneof(i, ints), b], coherent: co((d) => [F([d.A, d.B]), V(1), V(false)]) },
  max: { random: [T, fc.oneof(i, ints), b], coherent: co((d) => [F([d.A, d.B]), V(1), V(false)]) },
  cast: { random: [T, strs(['float32', 'bfloat16', 'int32'])], coherent: co((d) => [F([d.A, d.B]), V('bfloat16')]) },
  toDevice: { random: [T, strs(['cpu', 'cuda'])] },
};

function values(count: number, seed: number, t: TDesc): number[] {
  let a = (seed * 2654435761) >>> 0;
  return Array.from({ length: count }, () => {
    a = (Math.imul(a ^ (a >>> 13), 0x5bd1e995) + 0x6d2b79f5) >>> 0;
    const u = a / 4294967296;
    return t.dtype === 'int32' ? (t.hi !== undefined ? Math.floor(u * t.hi) : Math.floor(u * 8) - 2) : t.unit ? 0.05 + 0.9 * u : (u - 0.5) * 4;
  });
}

function make(d: D, made: Tensor[]): unknown {
  switch (d.k) {
    case 'v': return d.v;
    case 'list': return d.items.map((x) => make(x, made));
    case 'obj': return Object.fromEntries(d.fields.map(([k, x]) => [k, make(x, made)]));
    case 'T': {
      const count = d.shape.reduce((a, x) => a * x, 1);
      const data = values(count, d.seed, d);
      const t = d.dtype === 'int32' ? tensor(Int32Array.from(data), d.shape, { dtype: 'int32' }) : tensor(Float32Array.from(data), d.shape, { dtype: d.dtype, requiresGrad: d.grad && d.dtype === 'float32' });
      made.push(t);
      if (d.disposed) t.dispose();
      return t;
    }
  }
}

const show = (d: D): string => {
  switch (d.k) {
    case 'v': return typeof d.v === 'bigint' ? `${d.v}n` : JSON.stringify(d.v) ?? String(d.v);
    case 'list': return `[${d.items.map(show).join(', ')}]`;
    case 'obj': return `{${d.fields.map(([k, x]) => `${k}: ${show(x)}`).join(', ')}}`;
    case 'T': return `${d.dtype}[${d.shape}]${d.grad ? 'g' : ''}${d.disposed ? '(disposed)' : ''}`;
  }
};

/**
 * Calls op; then backward through the sum of each float output that has a graph (an op's output has
 * a gradFn, not requiresGrad, which is a leaf's). Throws only a typed VitrimError.
 */
function run(op: string, args: unknown[]): void {
  const results: Tensor[] = [];
  try {
    const r = (ops as unknown as Record<string, (...a: unknown[]) => unknown>)[op](...args);
    if (r instanceof Tensor) results.push(r);
    else if (r && typeof r === 'object') for (const x of Object.values(r)) if (x instanceof Tensor) results.push(x);
    for (const y of [...results]) {
      y.dataSync();
      if ((y.requiresGrad || y.gradFn) && y.dtype !== 'int32') {
        // bfloat16 is storage only on the cpu: summed as float32 (backward through the cast)
        const f = y.dtype === 'bfloat16' ? ops.cast(y, 'float32') : y;
        if (f !== y) results.push(f);
        const s = ops.sum(f);
        results.push(s);
        s.backward();
      }
    }
  } finally {
    for (const y of results) y.dispose();
  }
}

describe('fuzzing the public ops (cpu), with gradients', () => {
  for (const [k, op] of Object.keys(SPECS).entries()) {
    it(op, () => {
      const spec = SPECS[op];
      const arb = spec.coherent
        ? fc.oneof({ weight: 1, arbitrary: fc.tuple(...spec.random) }, { weight: 2, arbitrary: spec.coherent })
        : fc.tuple(...spec.random);
      fc.assert(
        fc.property(arb, (descs) => {
          const made: Tensor[] = [];
          try {
            const args = descs.map((d) => make(d, made));
            try {
              run(op, args);
            } catch (e) {
              if (!isTypedError(e)) {
                throw new Error(`ops.${op}(${descs.map(show).join(', ')}) threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
              }
            }
          } finally {
            for (const t of made) {
              t.grad?.dispose();
              t.dispose();
            }
          }
        }),
        { numRuns: RUNS, seed: RUN_SEED + 77 * k },
      );
    });
  }
});

// Out of memory at each allocation of each op's coherent call and its backward in turn (injected:
// native.allocFaults('cpu', k) fails the k-th CPU allocation on): a MemoryError, and nothing left
// allocated once the call's tidy scope is closed and the inputs' gradients dropped (a native
// temporary of a failed composition would be, until the GC).
describe('ops out of memory at every allocation: typed, nothing left behind', () => {
  const live = () => memory().find((d) => d.device === 'cpu')!.liveTensors;
  for (const [k, op] of Object.keys(SPECS).entries()) {
    const spec = SPECS[op];
    if (!spec.coherent) continue;
    it(op, async () => {
      for (const descs of fc.sample(spec.coherent!, { numRuns: 3, seed: RUN_SEED + 31 * k })) {
        const made: Tensor[] = [];
        try {
          const args = descs.map((d) => make(d, made));
          const once = () => {
            try {
              tidy(() => run(op, args));
            } finally {
              for (const t of made) {
                t.grad?.dispose();
                t.grad = null;
              }
            }
          };
          const before = live();
          await eachAllocFailing(once, {
            plain: () => expect(live()).toBe(before),
            failed: (err, at) => {
              const what = `ops.${op}(${descs.map(show).join(', ')}) ${at}`;
              expect(err, `${what}: ${String(err)}`).toBeInstanceOf(MemoryError);
              expect(live(), what).toBe(before);
            },
          });
        } finally {
          for (const t of made) t.dispose();
        }
      }
    });
  }
});

// What the fuzzer found (each threw a TypeError, or, for matmul's transA: 'yes', ran silently
// transposed), pinned down.
describe('ops: wrong-kind arguments are ArgumentErrors; null options mean the defaults', () => {
  const x = tensor(Float32Array.from({ length: 6 }, (_, k) => k - 2.5), [2, 3]);
  const w = tensor(Float32Array.from({ length: 12 }, (_, k) => (k % 5) - 2), [4, 3]);
  const bad = (f: () => unknown, msg: RegExp) => expectThrowsLike(f, ArgumentError, msg);
  it('shapes, axes and permutations must be arrays of integers', () => {
    bad(() => ops.reshape(x, undefined as never), /reshape: shape must be an array of integers, got undefined/);
    bad(() => ops.reshape(x, [3, 2.5]), /shape must hold integers, got 2.5/);
    bad(() => ops.sumTo(x, true as never), /sumTo: shape must be an array/);
    bad(() => ops.permute(x, null as never), /permute: perm must be an array/);
    bad(() => ops.sum(x, true as never), /sum: axes must be an array/);
    bad(() => ops.mean(x, {} as never), /mean: axes must be an array/);
    bad(() => ops.max(x, 1n as never), /max: axes must be an array/);
    bad(() => ops.random(undefined as never, 'uniform'), /random: shape must be an array/);
    bad(() => ops.transpose(undefined as never), /transpose: x must be a Tensor/);
    bad(() => ops.transpose(x, 0.5), /transpose: a must be an integer/);
    // null axes: all of them, as undefined
    expect(ops.sum(x, null as never).item()).toBeCloseTo(0, 6);
  });
  it('options: null is none, a non-object or a non-boolean flag is refused', () => {
    const wt = ops.transpose(w);
    const y1 = ops.matmul(x, wt, null).toArray();
    expect(ops.matmul(x, wt, {}).toArray()).toEqual(y1);
    expect(ops.matmul(x, w, { transB: true }).toArray()).toEqual(y1);
    bad(() => ops.matmul(x, wt, { transA: 'yes' as never }), /matmul: transA must be a boolean, got yes/);
    bad(() => ops.matmul(x, wt, 3 as never), /matmul: options must be an object, got 3/);
    expect(ops.linearFused(x, w, null, null).toArray()).toEqual(ops.linear(x, w).toArray());
    expect(ops.topk(x, 2, null).values.shape).toEqual([2, 2]);
    bad(() => ops.topk(x, 2, { largest: 1 as never }), /topk: largest must be a boolean/);
    expect(ops.gumbelSoftmax(x, null).shape).toEqual([2, 3]);
    expect(ops.gumbelSigmoid(x, null).shape).toEqual([2, 3]);
    expect(ops.random([2], 'uniform', null).shape).toEqual([2]);
    bad(() => ops.crossEntropy(x, tensor(new Int32Array([0, 1]), [2], { dtype: 'int32' }), 'smooth' as never), /crossEntropy: options must be an object/);
    bad(() => ops.attention(tensor(new Float32Array(6), [1, 1, 6]), null as never), /attention: numHeads must be an integer/);
  });
});
