/**
 * A fuzzer over the native surface (lib/native.ts): every op is called with arguments drawn by
 * fast-check — tensors of random shapes (empty ones included), dtypes and devices, sometimes
 * disposed; numbers from the edges (NaN, ±Infinity, -1, 2^31, 2^53, fractions); out-of-range axes,
 * heads, counts and indices; wrong kinds (a string, an object, undefined) in any slot. An op may
 * succeed (its outputs are read back, which surfaces deferred device-side errors, then freed) or
 * throw a typed VitrimError code other than ERR_VITRIM_INTERNAL. Anything else — another error, an
 * internal error, an abort or a crash (which ends the test process) — fails, with the shrunk call.
 *
 * Shapes come from a small pool of dims so that random combinations are often valid enough to reach
 * the kernels, not just the first check. Used by test/fuzz.test.ts (cpu) and test/cuda/fuzz.test.ts.
 * VITRIM_FUZZ_TRACE=1 prints each call before it runs (to find the one that ends a process: a
 * valid 17 GB scatter did, until the tests ran under VITRIM_CPU_MEMORY_LIMIT_MB, vitest.config.ts).
 */
import fc from 'fast-check';
import { native, type Device, type DType, type NativeTensor } from '../lib/native.js';
import { emulated } from './cuda/helpers.js';

/** Codes a bad call may end with; ERR_VITRIM_INTERNAL is a bug. */
export const ACCEPTED = new Set([
  'ERR_VITRIM_ARGUMENT', 'ERR_VITRIM_SHAPE', 'ERR_VITRIM_DTYPE', 'ERR_VITRIM_DEVICE', 'ERR_VITRIM_INDEX',
  'ERR_VITRIM_DISPOSED', 'ERR_VITRIM_MEMORY',
]);

// ---- argument descriptions (plain data: fast-check shrinks them; `make` turns them into values) ----
type TensorDesc = {
  k: 'T'; dtype: DType; device: Device; shape: number[]; seed: number; special: number; disposed: boolean;
  /** int32 values in [0, hi) (special 1: one of them hi, 2: one -1); 'unit': floats in [0, 1) */
  range?: number | 'unit';
};
type Desc =
  | TensorDesc
  | { k: 'ints'; values: number[]; device: Device } // an int32 tensor with these values
  | { k: 'call'; op: string; args: Desc[]; pick: number } // output `pick` of op(args) (a forward's saved tensors)
  | { k: 'null' }
  | { k: 'v'; v: unknown } // a plain value: number, boolean, string, array of numbers, junk
  | { k: 'list'; items: Desc[] }
  | { k: 'data'; type: 'f32' | 'i32' | 'u16'; n: number; seed: number };

const DIMS = [1, 1, 2, 2, 3, 4, 4, 6, 8, 12, 0];
const dimArb = fc.constantFrom(...DIMS);
const EDGE_NUMBERS = [0, 1, -1, 0.5, 2, 3, -0.25, 1e-6, 1e30, Number.NaN, Infinity, -Infinity, 2 ** 31, 2 ** 53, -(2 ** 31), 1.5];
const numArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...EDGE_NUMBERS) },
  { weight: 2, arbitrary: fc.double({ min: -4, max: 4, noNaN: true }) },
);
const intArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -2, max: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom(12, 16, 2 ** 31, 2 ** 31 - 1, 2 ** 53, -(2 ** 31), 1.5, Number.NaN) },
);
const junkArb: fc.Arbitrary<Desc> = fc.constantFrom<unknown>('x', {}, undefined, [1, 2], true, 1n).map((x) => ({ k: 'v', v: x }));

function tensorArb(devices: readonly Device[], dtypes?: readonly DType[]): fc.Arbitrary<Desc> {
  return fc.record({
    k: fc.constant('T' as const),
    dtype: dtypes ? fc.constantFrom(...dtypes) : fc.constantFrom<DType>('float32', 'float32', 'float32', 'bfloat16', 'int32'),
    device: fc.constantFrom(...devices),
    shape: fc.array(dimArb, { minLength: 0, maxLength: 4 }),
    seed: fc.integer({ min: 0, max: 1 << 30 }),
    special: fc.constantFrom(0, 0, 0, 0, 1, 2), // 1: a NaN in it, 2: an Infinity in it
    disposed: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
  });
}
const nullArb: fc.Arbitrary<Desc> = fc.constant({ k: 'null' });
const v = <X>(a: fc.Arbitrary<X>): fc.Arbitrary<Desc> => a.map((x) => ({ k: 'v', v: x }));
/** An argument of kind `a`, or now and then something of the wrong kind. */
const slot = (a: fc.Arbitrary<Desc>): fc.Arbitrary<Desc> => fc.oneof({ weight: 24, arbitrary: a }, { weight: 1, arbitrary: junkArb });
const shapeArb = v(fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.oneof(dimArb, fc.integer({ min: -2, max: 8 })), { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constant([1e9, 1e9, 1e9]) },
  { weight: 1, arbitrary: fc.constant([2 ** 40]) },
));
const axesArb = v(fc.array(fc.integer({ min: -5, max: 5 }), { maxLength: 4 }));
const enumArb = (xs: readonly string[]) => v(fc.constantFrom(...xs, 'bogus'));

function kinds(devices: readonly Device[]) {
  const T = slot(tensorArb(devices));
  const I = slot(tensorArb(devices, ['int32', 'int32', 'int32', 'float32'])); // index-like tensors
  return {
    T,
    I,
    O: slot(fc.oneof(nullArb, tensorArb(devices))),
    Ts: slot(fc.array(tensorArb(devices), { maxLength: 4 }).map((items): Desc => ({ k: 'list', items }))),
    n: slot(v(numArb)),
    i: slot(v(intArb)),
    b: slot(v(fc.boolean())),
    shape: slot(shapeArb),
    axes: slot(axesArb),
    dtype: slot(enumArb(['float32', 'bfloat16', 'int32'])),
    device: slot(enumArb(['cpu', 'cuda'])),
    data: slot(fc.record({ k: fc.constant('data' as const), type: fc.constantFrom('f32', 'i32', 'u16') as fc.Arbitrary<'f32' | 'i32' | 'u16'>, n: fc.constantFrom(0, 1, 2, 4, 6, 8, 12, 24), seed: fc.integer({ min: 0, max: 1000 }) })),
    enum: (xs: readonly string[]) => slot(enumArb(xs)),
  };
}

/** Every op of the native surface that takes data (global switches and graphs are left out) with its argument kinds. */
function opSpecs(devices: readonly Device[]): Record<string, fc.Arbitrary<Desc>[]> {
  const { T, I, O, Ts, n, i, b, shape, axes, dtype, device, data, enum: e } = kinds(devices);
  const unary = ['neg', 'abs', 'sqr', 'sqrt', 'exp', 'log', 'sigmoid', 'tanh', 'relu', 'gelu'];
  return {
    fromArray: [data, shape, dtype],
    full: [shape, n, dtype, device],
    toDevice: [T, device],
    cast: [T, dtype],
    copy: [T],
    binary: [e(['add', 'sub', 'mul', 'div']), T, T],
    unary: [e(unary), T],
    unaryBackward: [e(unary), T, T, T],
    affine: [T, n, n],
    step: [T, n],
    sumTo: [T, shape],
    reduce: [e(['sum', 'mean', 'max']), T, axes, b],
    sumSquares: [Ts],
    permute: [T, axes],
    slice: [T, i, i, i],
    sliceBackward: [T, shape, i, i],
    concat: [Ts, i],
    matmul: [T, T, b, b],
    linearForward: [T, T, O],
    linearFused: [T, T, O, e(['none', 'gelu']), O],
    linearBackward: [T, T, T, b],
    gemm: [b, b, i, i, i, n, T, T, n, T],
    layernormForward: [T, O, O, n, slot(fc.oneof(nullArb, enumArb(['float32', 'bfloat16'])))],
    layernormBackward: [T, T, O, T, T],
    softmaxForward: [T, b],
    softmaxBackward: [T, T, b],
    attentionForward: [T, i, n, O, O, n],
    attentionBackward: [T, T, i, n, O, O, n, T, T],
    attentionVarlen: [T, I, i, n, O],
    gatherTokens: [T, I],
    scatterTokens: [T, I, i],
    gatherRows: [T, I],
    indexAddRows: [T, I, T],
    crossEntropyForward: [T, I, n],
    crossEntropyBackward: [T, I, n, T, fc.oneof(n, T)],
    topk: [T, i, b],
    random: [shape, e(['uniform', 'normal', 'gumbel', 'logistic']), i, i, device],
    gumbelSigmoid: [T, n, n, b, O, i, i],
    gumbelSigmoidBackward: [T, T, n],
    gumbelSoftmax: [T, n, b, O, i, i],
    gumbelSoftmaxBackward: [T, T, n],
    patchify: [T, i],
    unpatchify: [T, shape, i],
    adamwStep: [T, T, T, T, n, n, n, n, n, i],
    adamwStepMulti: [Ts, Ts, Ts, Ts, n, n, n, n, n, i, O],
    'tensor.write': [T, fc.oneof(data, T)],
    'tensor.reshape': [T, shape],
    'tensor.read': [T],
  };
}

// ---- coherent calls: shapes that fit together (then, now and then, one thing broken) ----
// Random shapes rarely fit a multi-tensor op, so most of the calls above stop at the first check.
// These build calls whose tensors agree (a qkv and its numHeads, a weight and its input, indices
// in range, a backward's saved tensors from its own forward), so the kernels run on edge-case data:
// empty and one-sized dims, NaN and Inf entries, bfloat16, and near-valid variants made by one
// mutation (a dim off by one or zeroed, a dim dropped, the other float dtype, a disposed tensor,
// an index out of range, a flag flipped, a number at an edge, a tensor on the other device).
interface Ctx { dev: Device; dt: DType; seed: number; flags: number }
const ctxArb = (devices: readonly Device[], dtypes: readonly DType[]) => fc.record({
  dev: fc.constantFrom(...devices),
  dt: fc.constantFrom(...dtypes),
  seed: fc.integer({ min: 0, max: 1 << 30 }),
  flags: fc.nat(1 << 16),
});
const small = fc.constantFrom(1, 2, 3, 4, 5, 8, 0);
const pos = fc.constantFrom(1, 2, 3, 4, 5, 8);
const bit = (c: Ctx, i: number) => ((c.flags >> i) & 1) === 1;
let serial = 0;
function Tn(c: Ctx, shape: number[], o: Partial<TensorDesc> = {}): TensorDesc {
  return { k: 'T', dtype: c.dt, device: c.dev, shape, seed: c.seed + 7919 * ++serial, special: 0, disposed: false, ...o };
}
const Ti = (c: Ctx, shape: number[], hi: number) => Tn(c, shape, { dtype: 'int32', range: hi });
const V = (x: unknown): Desc => ({ k: 'v', v: x });
const N = (): Desc => ({ k: 'null' });
const maybe = (c: Ctx, i: number, d: Desc): Desc => (bit(c, i) ? d : N());
const C = (op: string, args: Desc[], pick: number): Desc => ({ k: 'call', op, args, pick });
function cum(lens: number[]): number[] {
  const out = [0];
  for (const l of lens) out.push(out[out.length - 1] + l);
  return out;
}

type Gen = fc.Arbitrary<Desc[]>;
function coherentSpecs(devices: readonly Device[], dtypes: readonly DType[] = ['float32', 'float32', 'bfloat16']): Record<string, Gen> {
  const X = ctxArb(devices, dtypes);
  const g = <R>(a: fc.Arbitrary<R>, f: (c: Ctx, r: R) => Desc[]): Gen => fc.tuple(X, a).map(([c, r]) => f(c, r));
  const unary = ['neg', 'abs', 'sqr', 'sqrt', 'exp', 'log', 'sigmoid', 'tanh', 'relu', 'gelu'];
  const ab = fc.tuple(small, small);
  const lnArgs = (c: Ctx, R: number, Cc: number): Desc[] => [Tn(c, [R, Cc], { dtype: 'float32' }), Tn(c, [Cc], { dtype: 'float32' }), Tn(c, [Cc], { dtype: 'float32' }), V(1e-5)];
  const attn = fc.record({ B: pos, N: fc.constantFrom(1, 2, 3, 5, 8, 17), H: fc.constantFrom(1, 2, 3), D: fc.constantFrom(2, 4, 8, 16, 32, 64) });
  const attnArgs = (c: Ctx, r: { B: number; N: number; H: number; D: number }): Desc[] => [
    Tn(c, [r.B, r.N, 3 * r.H * r.D]), V(r.H), V(1 / Math.sqrt(r.D)),
    maybe(c, 1, Tn(c, [r.B, r.N], { dtype: 'float32', range: 'unit' })), maybe(c, 2, Tn(c, [r.B, r.H], { dtype: 'float32', range: 'unit' })),
    V(bit(c, 3) ? 1e-6 : 0),
  ];
  const ceArgs = (c: Ctx, R: number, K: number): Desc[] => [Tn(c, [R, K]), Ti(c, [R], K), V(bit(c, 1) ? 0.1 : 0)];
  const adam = (c: Ctx, sh: number[]): Desc[] => [Tn(c, sh, { dtype: 'float32' }), Tn(c, sh, { dtype: 'float32' }), Tn(c, sh, { dtype: 'float32' }), Tn(c, sh, { dtype: 'float32', range: 'unit' })];
  return {
    fromArray: fc.tuple(ab, fc.integer({ min: 0, max: 1000 })).map(([[a, b], seed]): Desc[] => [{ k: 'data', type: 'f32', n: a * b, seed }, V([a, b]), V('float32')]),
    full: g(ab, (c, [a, b]) => [V([a, b]), V(1.5), V(c.dt), V(c.dev)]),
    toDevice: g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(bit(c, 0) ? 'cpu' : devices[devices.length - 1])]),
    cast: g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(bit(c, 0) ? 'float32' : 'bfloat16')]),
    copy: g(ab, (c, [a, b]) => [Tn(c, [a, b])]),
    binary: g(fc.tuple(ab, fc.nat(4)), (c, [[a, b], k]) => [V(['add', 'sub', 'mul', 'div'][c.flags % 4]), Tn(c, [a, b]), Tn(c, [[a, b], [b], [1, b], [a, 1], []][k])]),
    unary: g(ab, (c, [a, b]) => [V(unary[c.flags % unary.length]), Tn(c, [a, b])]),
    unaryBackward: g(ab, (c, [a, b]) => [V(unary[c.flags % unary.length]), Tn(c, [a, b]), Tn(c, [a, b]), Tn(c, [a, b])]),
    affine: g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(2), V(-1)]),
    step: g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(0)]),
    sumTo: g(fc.tuple(ab, fc.nat(2)), (c, [[a, b], k]) => [Tn(c, [a, b]), V([[1, b], [b], [a, 1]][k])]),
    reduce: g(fc.tuple(small, small, small, fc.subarray([0, 1, 2])), (c, [a, b, d, axes]) => [V(['sum', 'mean', 'max'][c.flags % 3]), Tn(c, [a, b, d]), V(axes), V(bit(c, 4))]),
    sumSquares: g(fc.array(ab, { minLength: 1, maxLength: 3 }), (c, shapes) => [{ k: 'list', items: shapes.map((sh) => Tn(c, sh)) }]),
    permute: g(fc.tuple(small, small, small, fc.shuffledSubarray([0, 1, 2], { minLength: 3, maxLength: 3 })), (c, [a, b, d, p]) => [Tn(c, [a, b, d]), V(p)]),
    slice: g(fc.tuple(pos, pos, fc.nat(8), fc.nat(8)), (c, [a, b, s0, e0]) => { const st = s0 % (b + 1), en = st + (e0 % (b - st + 1)); return [Tn(c, [a, b]), V(1), V(st), V(en)]; }),
    sliceBackward: g(fc.tuple(pos, pos, fc.nat(8), fc.nat(8)), (c, [a, b, s0, e0]) => { const st = s0 % (b + 1), en = st + (e0 % (b - st + 1)); return [Tn(c, [a, en - st]), V([a, b]), V(1), V(st)]; }),
    concat: g(fc.tuple(small, small, small), (c, [a, b, d]) => [{ k: 'list', items: [Tn(c, [a, b]), Tn(c, [a, d])] }, V(1)]),
    matmul: g(fc.tuple(pos, small, small, small), (c, [A, M, K, Nn]) => [Tn(c, [A, M, K]), Tn(c, bit(c, 0) ? [K, Nn] : [A, K, Nn]), V(false), V(false)]),
    linearForward: g(fc.tuple(small, small, small), (c, [A, K, Nn]) => [Tn(c, [A, K]), Tn(c, [Nn, K]), maybe(c, 0, Tn(c, [Nn]))]),
    linearFused: g(fc.tuple(small, small, small), (c, [A, K, Nn]) => [Tn(c, [A, K]), Tn(c, [Nn, K]), maybe(c, 0, Tn(c, [Nn])), V(bit(c, 1) ? 'gelu' : 'none'), maybe(c, 2, Tn(c, [A, Nn]))]),
    linearBackward: g(fc.tuple(small, small, small), (c, [A, K, Nn]) => [Tn(c, [A, Nn]), Tn(c, [A, K]), Tn(c, [Nn, K]), V(bit(c, 0))]),
    gemm: g(fc.tuple(small, small, small), (c, [M, Nn, K]) => [V(false), V(false), V(M), V(Nn), V(K), V(1), Tn(c, [M, K], { dtype: 'float32' }), Tn(c, [K, Nn], { dtype: 'float32' }), V(bit(c, 0) ? 0.5 : 0), Tn(c, [M, Nn], { dtype: 'float32' })]),
    layernormForward: g(ab, (c, [R, Cc]) => [Tn(c, [R, Cc]), maybe(c, 0, Tn(c, [Cc])), maybe(c, 1, Tn(c, [Cc])), V(1e-5), bit(c, 2) ? V('bfloat16') : N()]),
    layernormBackward: g(ab, (c, [R, Cc]) => { const f = lnArgs(c, R, Cc); return [Tn(c, [R, Cc], { dtype: 'float32' }), f[0], f[1], C('layernormForward', f, 1), C('layernormForward', f, 2)]; }),
    softmaxForward: g(ab, (c, [R, Cc]) => [Tn(c, [R, Cc]), V(bit(c, 0))]),
    softmaxBackward: g(ab, (c, [R, Cc]) => { const x = Tn(c, [R, Cc]); return [C('softmaxForward', [x, V(bit(c, 0))], 0), Tn(c, [R, Cc]), V(bit(c, 0))]; }),
    attentionForward: g(attn, attnArgs),
    attentionBackward: g(attn, (c, r) => { const f = attnArgs(c, r); return [Tn(c, [r.B, r.N, r.H * r.D]), ...f, C('attentionForward', f, 0), C('attentionForward', f, 1)]; }),
    attentionVarlen: g(fc.record({ lens: fc.array(fc.constantFrom(0, 1, 2, 3, 5, 17), { minLength: 1, maxLength: 4 }), H: fc.constantFrom(1, 2, 3), D: fc.constantFrom(2, 4, 8, 16, 32, 64) }), (c, r) => {
      const cu = cum(r.lens);
      return [Tn(c, [cu[cu.length - 1], 3 * r.H * r.D]), { k: 'ints', values: cu, device: c.dev }, V(r.H), V(1 / Math.sqrt(r.D)), maybe(c, 0, Tn(c, [r.lens.length, r.H], { dtype: 'float32', range: 'unit' }))];
    }),
    gatherTokens: g(fc.tuple(pos, pos, small, small), (c, [B, Nn, M, Cc]) => [Tn(c, [B, Nn, Cc]), Ti(c, [B, M], Nn)]),
    scatterTokens: g(fc.tuple(pos, pos, small, small), (c, [B, Nn, M, Cc]) => [Tn(c, [B, M, Cc]), Ti(c, [B, M], Nn), V(Nn)]),
    gatherRows: g(fc.tuple(pos, small, small), (c, [R0, R, Cc]) => [Tn(c, [R0, Cc]), Ti(c, [R], R0)]),
    indexAddRows: g(fc.tuple(pos, small, fc.nat(1000)), (c, [R0, Cc, k]) => {
      const rows = Array.from({ length: R0 }, (_, i) => (i * 7 + k) % R0).filter((x, i, a) => a.indexOf(x) === i).slice(0, 1 + (k % R0));
      return [Tn(c, [R0, Cc]), { k: 'ints', values: rows, device: c.dev }, Tn(c, [rows.length, Cc])];
    }),
    crossEntropyForward: g(fc.tuple(small, pos), (c, [R, K]) => ceArgs(c, R, K)),
    crossEntropyBackward: g(fc.tuple(small, pos), (c, [R, K]) => { const f = ceArgs(c, R, K); return [...f, C('crossEntropyForward', f, 1), bit(c, 2) ? V(1) : Tn(c, [], { dtype: 'float32' })]; }),
    topk: g(fc.tuple(small, pos, fc.nat(9)), (c, [R, Cc, k]) => [Tn(c, [R, Cc]), V(k % (Cc + 1)), V(bit(c, 0))]),
    random: g(ab, (c, [a, b]) => [V([a, b]), V(['uniform', 'normal', 'gumbel', 'logistic'][c.flags % 4]), V(c.seed), V(c.flags), V(c.dev)]),
    gumbelSigmoid: g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(1), V(0.5), V(bit(c, 0)), maybe(c, 1, Tn(c, [a, b], { range: 'unit' })), V(c.seed), V(3)]),
    gumbelSigmoidBackward: g(ab, (c, [a, b]) => [Tn(c, [a, b], { range: 'unit' }), Tn(c, [a, b]), V(0.7)]),
    gumbelSoftmax: g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(1), V(bit(c, 0)), maybe(c, 1, Tn(c, [a, b], { range: 'unit' })), V(c.seed), V(3)]),
    gumbelSoftmaxBackward: g(ab, (c, [a, b]) => [Tn(c, [a, b], { range: 'unit' }), Tn(c, [a, b]), V(0.7)]),
    patchify: g(fc.tuple(pos, fc.constantFrom(1, 3), pos, pos, pos), (c, [B, Ch, h, w, p]) => [Tn(c, [B, Ch, h * p, w * p]), V(p)]),
    unpatchify: g(fc.tuple(pos, fc.constantFrom(1, 3), pos, pos, pos), (c, [B, Ch, h, w, p]) => [Tn(c, [B, h * w, Ch * p * p]), V([B, Ch, h * p, w * p]), V(p)]),
    adamwStep: g(ab, (c, [a, b]) => [...adam(c, [a, b]), V(1e-3), V(0.9), V(0.999), V(1e-8), V(0.01), V(1 + (c.flags % 3))]),
    adamwStepMulti: g(fc.array(ab, { minLength: 1, maxLength: 3 }), (c, shapes) => {
      const sets = shapes.map((sh) => adam(c, sh));
      const list = (i: number): Desc => ({ k: 'list', items: sets.map((x) => x[i]) });
      return [list(0), list(1), list(2), list(3), V(1e-3), V(0.9), V(0.999), V(1e-8), V(0.01), V(1 + (c.flags % 3)), maybe(c, 0, Tn(c, [1], { dtype: 'float32', range: 'unit' }))];
    }),
    'tensor.write': g(ab, (c, [a, b]) => [Tn(c, [a, b]), bit(c, 0) ? Tn(c, [b, a]) : { k: 'data', type: c.dt === 'bfloat16' ? 'u16' : 'f32', n: a * b, seed: c.seed % 1000 }]),
    'tensor.reshape': g(ab, (c, [a, b]) => [Tn(c, [a, b]), V(bit(c, 0) ? [b, a] : [-1])]),
    'tensor.read': g(ab, (c, [a, b]) => [Tn(c, [a, b])]),
  };
}

/** One change to a coherent call: the near-valid neighbours of a valid call. */
function mutate(descs: Desc[], m: { slot: number; kind: number; j: number }, devices: readonly Device[]): Desc[] {
  const out = descs.slice();
  const i = m.slot % out.length;
  const d = out[i];
  if (d.k === 'T') {
    const t: TensorDesc = { ...d, shape: d.shape.slice() };
    const j = d.shape.length ? m.j % d.shape.length : 0;
    switch (m.kind % 8) {
      case 0: if (t.shape.length) t.shape[j] += 1; else t.shape.push(2); break;
      case 1: if (t.shape.length) t.shape[j] = 0; break;
      case 2: t.shape.splice(j, 1); break;
      case 3: t.dtype = t.dtype === 'float32' ? 'bfloat16' : t.dtype === 'bfloat16' ? 'int32' : 'float32'; break;
      case 4: t.disposed = true; break;
      case 5: t.special = 1 + (m.j % 2); break;
      case 6: t.device = devices[(devices.indexOf(t.device) + 1) % devices.length]; break;
      default: t.shape.push(1);
    }
    out[i] = t;
  } else if (d.k === 'v') {
    if (typeof d.v === 'boolean') out[i] = V(!d.v);
    else if (typeof d.v === 'number') out[i] = V(EDGE_NUMBERS[m.j % EDGE_NUMBERS.length]);
    else if (Array.isArray(d.v)) {
      const xs = d.v as number[];
      out[i] = V(xs.length ? xs.map((x, k) => (k === m.j % xs.length ? x + 1 : x)) : [1]);
    }
    else out[i] = V(undefined);
  } else if (d.k === 'ints') {
    const vals = d.values.slice();
    if (vals.length) vals[m.j % vals.length] += m.kind % 2 ? 1 : -1;
    out[i] = { ...d, values: vals };
  } else if (d.k === 'null') {
    out[i] = V(0);
  }
  return out;
}

// ---- materialising a description ----
function values(n: number, seed: number, int: boolean, special: number, range?: number | 'unit'): number[] {
  let a = seed >>> 0;
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    a = (Math.imul(a ^ (a >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    const u = a / 4294967296;
    if (typeof range === 'number') out.push(Math.floor(u * range));
    else if (range === 'unit') out.push(u);
    else out.push(int ? Math.floor(u * 9) - 2 : (u - 0.5) * 4);
  }
  if (!n || !special) return out;
  if (int) out[seed % n] = typeof range === 'number' && special === 1 ? range : -1;
  else out[seed % n] = special === 1 ? Number.NaN : Infinity;
  return out;
}

/** The case is not a case (a derived tensor's forward refused its inputs): skip it. */
class Skip extends Error {}

/** Outputs whose layout is private to a device (attention's saved stats): compared by no one. */
const OPAQUE: Record<string, number[]> = { attentionForward: [1] };

class Materialised {
  readonly made: NativeTensor[] = [];
  readonly opaque = new Set<NativeTensor>();
  make(d: Desc): unknown {
    switch (d.k) {
      case 'null': return null;
      case 'v': return d.v;
      case 'list': return d.items.map((x) => this.make(x));
      case 'data': {
        const xs = values(d.n, d.seed, d.type !== 'f32', 0);
        return d.type === 'f32' ? Float32Array.from(xs) : d.type === 'i32' ? Int32Array.from(xs) : Uint16Array.from(xs, (x) => (x + 2) * 4000);
      }
      case 'ints': {
        const t = native.fromArray(Int32Array.from(d.values), [d.values.length], 'int32');
        return this.place(t, d.device, false);
      }
      case 'call': {
        const args = d.args.map((x) => this.make(x));
        let r: unknown;
        try {
          r = call(d.op, args);
        } catch (e) {
          const code = (e as { code?: unknown })?.code;
          if (typeof code === 'string' && ACCEPTED.has(code)) throw new Skip();
          throw e;
        }
        const outs = (Array.isArray(r) ? r : [r]) as NativeTensor[];
        for (const o of outs) if (o) this.made.push(o);
        for (const i of OPAQUE[d.op] ?? []) if (outs[i]) this.opaque.add(outs[i]);
        return outs[d.pick];
      }
      case 'T': {
        const numel = d.shape.reduce((p, x) => p * x, 1);
        const xs = values(numel, d.seed, d.dtype === 'int32', d.special, d.range);
        const host = d.dtype === 'int32' ? native.fromArray(Int32Array.from(xs), d.shape, 'int32') : native.fromArray(Float32Array.from(xs), d.shape, 'float32');
        const t = d.dtype === 'bfloat16' ? native.cast(host, 'bfloat16') : host;
        if (t !== host) host.free();
        return this.place(t, d.device, d.disposed);
      }
    }
  }
  private place(t: NativeTensor, device: Device, disposed: boolean): NativeTensor {
    if (device !== 'cpu') {
      const c = native.toDevice(t, device);
      t.free();
      t = c;
    }
    this.made.push(t);
    if (disposed) t.free();
    return t;
  }
  /** Every argument made, or null when the case is not a case (a derived input's forward refused it). */
  makeAll(descs: Desc[]): unknown[] | null {
    try {
      return descs.map((d) => this.make(d));
    } catch (e) {
      if (e instanceof Skip) return null;
      throw e;
    }
  }
  free(): void {
    for (const t of this.made) t.free();
  }
}

function describe(d: Desc): string {
  switch (d.k) {
    case 'null': return 'null';
    case 'v': return typeof d.v === 'string' ? `'${d.v}'` : Array.isArray(d.v) ? `[${d.v.join(',')}]` : typeof d.v === 'bigint' ? `${d.v}n` : d.v !== null && typeof d.v === 'object' ? '{}' : String(d.v);
    case 'list': return `[${d.items.map(describe).join(', ')}]`;
    case 'data': return `${d.type}[${d.n}]`;
    case 'ints': return `int32${d.device === 'cpu' ? '' : `@${d.device}`}{${d.values.join(',')}}`;
    case 'call': return `${d.op}(${d.args.map(describe).join(', ')})[${d.pick}]`;
    case 'T': return `${d.dtype}${d.device === 'cpu' ? '' : `@${d.device}`}[${d.shape.join(',')}]` +
      `${d.range === undefined ? '' : d.range === 'unit' ? '(0..1)' : `(<${d.range})`}` +
      `${d.special ? (d.special === 1 ? '+special' : '+special2') : ''}${d.disposed ? ' (disposed)' : ''}`;
  }
}

/** Frees (after reading back) whatever an op returned: a tensor, a tuple of tensors or nulls, or nothing. */
function consume(r: unknown, made: Set<unknown>): void {
  const ts = (Array.isArray(r) ? r : [r]).filter((x): x is NativeTensor => !!x && typeof x === 'object' && 'free' in x);
  try {
    for (const t of ts) if (!t.freed && !made.has(t)) t.read();
  } finally {
    for (const t of ts) if (!made.has(t)) t.free();
  }
}

function call(op: string, args: unknown[]): unknown {
  if (op.startsWith('tensor.')) {
    const [t, ...rest] = args as [NativeTensor, ...unknown[]];
    if (!t || typeof t !== 'object' || !('read' in t)) return undefined; // junk in the receiver slot: no method to call
    const m = op.slice(7) as 'write' | 'reshape' | 'read';
    return (t[m] as (...a: unknown[]) => unknown).apply(t, rest);
  }
  return (native as unknown as Record<string, (...a: unknown[]) => unknown>)[op](...args);
}

export interface FuzzStats { calls: number; ok: number; skipped: number; rejected: Record<string, number> }

// Under the CUDA emulation (native/cuda/emu) kernels run as fibers, about a million threads a
// second. A valid scatter of non-empty rows to n = 2^31 tokens (one warp per output row) takes a
// GPU a fraction of a second and the emulation hours (seed 31337 drew one). Such calls are counted
// as skipped there, and only there: the CPU fuzzers run them, and so does a real GPU.
const EMU_MAX_ROWS = 1 << 16;
function tooSlowToEmulate(op: string, args: unknown[]): boolean {
  if (!emulated || op !== 'scatterTokens') return false;
  const [g, , n] = args;
  if (typeof n !== 'number' || !(n > EMU_MAX_ROWS)) return false;
  if (!g || typeof g !== 'object' || !('free' in g)) return false;
  const t = g as NativeTensor;
  return !t.freed && t.device === 'cuda' && t.shape.length === 3 && t.shape[0] * t.shape[2] > 0;
}

/**
 * Runs `runs` random calls of `op` on `devices`; throws (fast-check's shrunk counterexample) when a
 * call ends other than by returning or by an accepted typed error. Returns what happened.
 */
export function fuzzOp(op: string, devices: readonly Device[], runs: number, seed: number): FuzzStats {
  const spec = opSpecs(devices)[op];
  const coherent = coherentSpecs(devices)[op];
  if (!spec || !coherent) throw new Error(`fuzzOp: no spec for ${op}`);
  const mutation = fc.option(fc.record({ slot: fc.nat(), kind: fc.nat(), j: fc.nat() }), { freq: 2 });
  const arb = fc.oneof(
    { weight: 1, arbitrary: fc.tuple(...spec) },
    { weight: 2, arbitrary: fc.tuple(coherent, mutation).map(([d, m]) => (m ? mutate(d, m, devices) : d)) },
  );
  const stats: FuzzStats = { calls: 0, ok: 0, skipped: 0, rejected: {} };
  fc.assert(
    fc.property(arb, (descs) => {
      const m = new Materialised();
      try {
        const args = m.makeAll(descs);
        if (!args || tooSlowToEmulate(op, args)) {
          stats.skipped++;
          return;
        }
        stats.calls++;
        if (process.env.VITRIM_FUZZ_TRACE) process.stderr.write(`${op}(${descs.map(describe).join(', ')})\n`);
        try {
          consume(call(op, args), new Set(m.made));
          stats.ok++;
        } catch (e) {
          const code = (e as { code?: unknown })?.code;
          if (typeof code !== 'string' || !ACCEPTED.has(code)) {
            throw new Error(`${op}(${descs.map(describe).join(', ')}) threw ${String(code ?? '')} ${(e as Error)?.name}: ${(e as Error)?.message}`);
          }
          stats.rejected[code] = (stats.rejected[code] ?? 0) + 1;
        }
      } finally {
        m.free();
      }
    }),
    { numRuns: runs, seed, endOnFailure: false },
  );
  return stats;
}

/** The fuzzed ops, in a stable order. */
export function fuzzedOps(): string[] {
  return Object.keys(opSpecs(['cpu']));
}

// ---- differential: the same valid call on cuda and on the cpu ----
interface Outcome { code: string | null; tensors: { shape: number[]; dtype: DType; data: number[] }[] }

function readAll(t: NativeTensor): number[] {
  const d = t.read();
  if (t.dtype !== 'bfloat16') return Array.from(d);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return Array.from(d, (b) => ((u[0] = b << 16), f[0]));
}

/** Runs op on the materialised descs: its code, or its outputs followed by every input tensor (in-place ops). */
function outcome(op: string, descs: Desc[]): Outcome | 'skip' {
  const m = new Materialised();
  try {
    const args = m.makeAll(descs);
    if (!args) return 'skip';
    let r: unknown;
    try {
      r = call(op, args);
    } catch (e) {
      const code = (e as { code?: unknown })?.code;
      if (typeof code === 'string' && ACCEPTED.has(code)) return { code, tensors: [] };
      throw e;
    }
    const made = new Set<unknown>(m.made);
    const outs = (Array.isArray(r) ? r : [r]).filter((x): x is NativeTensor => !!x && typeof x === 'object' && 'free' in x && !made.has(x));
    try {
      const compared = outs.filter((_, i) => !OPAQUE[op]?.includes(i));
      const all = [...compared, ...m.made.filter((t) => !t.freed && !m.opaque.has(t))];
      return { code: null, tensors: all.map((t) => ({ shape: t.shape, dtype: t.dtype, data: readAll(t) })) };
    } finally {
      for (const t of outs) t.free();
    }
  } finally {
    m.free();
  }
}

function onCpu(d: Desc): Desc {
  switch (d.k) {
    case 'T': case 'ints': return { ...d, device: 'cpu' };
    case 'list': return { ...d, items: d.items.map(onCpu) };
    case 'call': return { ...d, args: d.args.map(onCpu) };
    case 'v': return d.v === 'cuda' ? { k: 'v', v: 'cpu' } : d;
    default: return d;
  }
}

/**
 * Where cuda and the cpu disagree, in words; null when they agree: NaN and Inf at the same places,
 * int32 equal, float parts within tol (relative to max(‖b‖, √n)).
 */
export function disagreement(a: Outcome, b: Outcome, tol: number): string | null {
  if (a.code !== b.code) return `cuda ${a.code ?? 'returned'}, cpu ${b.code ?? 'returned'}`;
  if (a.tensors.length !== b.tensors.length) return `${a.tensors.length} tensors on cuda, ${b.tensors.length} on the cpu`;
  for (const [i, x] of a.tensors.entries()) {
    const y = b.tensors[i];
    if (x.shape.join() !== y.shape.join() || x.dtype !== y.dtype) return `tensor ${i}: ${x.dtype}[${x.shape}] on cuda, ${y.dtype}[${y.shape}] on the cpu`;
    let num = 0;
    let den = 0;
    for (let k = 0; k < x.data.length; k++) {
      const p = x.data[k];
      const q = y.data[k];
      if (Number.isNaN(p) !== Number.isNaN(q) || (!Number.isFinite(q) && !Number.isNaN(q) && p !== q) || (!Number.isFinite(p) && !Number.isNaN(p) && p !== q)) {
        return `tensor ${i}[${k}]: ${p} on cuda, ${q} on the cpu`;
      }
      if (!Number.isFinite(q)) continue;
      if (x.dtype === 'int32' && p !== q) return `tensor ${i}[${k}]: ${p} on cuda, ${q} on the cpu`;
      num += (p - q) ** 2;
      den += q * q;
    }
    // Against max(‖b‖, √n): the inputs are O(1), so an output that cancels to near zero (the mean of
    // random values) is held to tol per element in absolute terms, not to tol of its own tiny size.
    const rel = Math.sqrt(num / Math.max(den, x.data.length));
    // A bfloat16 output (float32 inputs, a bf16 out dtype) rounds the same float32 value on both
    // sides, but float32 results that differ in their last bits can round to neighbouring bf16 values
    // (one bf16 ulp, 2^-8 relative: seed 50505, layernormForward to bf16 at 1.02e-5): bf16's 1e-2.
    const t = x.dtype === 'bfloat16' ? Math.max(tol, 1e-2) : tol;
    if (rel > t) return `tensor ${i}: difference ${rel.toExponential(2)} (relative to max(‖b‖, √n)) > ${t}`;
  }
  return null;
}

/**
 * Coherent float32 calls of `op` run on cuda and on the cpu must end alike: the same error code, or
 * outputs (and in-place inputs) of the same shapes that agree (see disagreement), NaN and Inf included.
 */
export function diffOp(op: string, runs: number, seed: number, tol = 1e-5): { calls: number; ok: number; rejected: number; skipped: number } {
  const gen = coherentSpecs(['cuda'], ['float32'])[op];
  if (!gen) throw new Error(`diffOp: no spec for ${op}`);
  const stats = { calls: 0, ok: 0, rejected: 0, skipped: 0 };
  fc.assert(
    fc.property(gen, (descs) => {
      const gpu = outcome(op, descs);
      const cpu = outcome(op, descs.map(onCpu));
      if (gpu === 'skip' || cpu === 'skip') {
        if (gpu !== cpu) throw new Error(`${op}: a derived input was refused on ${gpu === 'skip' ? 'cuda' : 'the cpu'} only: ${descs.map(describe).join(', ')}`);
        stats.skipped++;
        return;
      }
      stats.calls++;
      const why = disagreement(gpu, cpu, tol);
      if (why) throw new Error(`${op}(${descs.map(describe).join(', ')}): ${why}`);
      if (gpu.code) stats.rejected++;
      else stats.ok++;
    }),
    { numRuns: runs, seed, endOnFailure: false },
  );
  return stats;
}
