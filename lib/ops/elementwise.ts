/** Elementwise ops with numpy broadcasting; backward reduces gradients back with sumTo. */
import { highIn, promote, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { native, type NativeTensor, type UnaryOp } from '../native.js';
import { full, Tensor } from '../tensor.js';
import { call, free, handleOf, intList, num, out } from './_util.js';

type Operand = Tensor | number;

/** A scalar operand becomes a 0-d tensor on the other operand's device, in its floating dtype. */
function asTensor(x: Operand, op: string, what: string, like: Operand): Tensor {
  if (typeof x === 'number') {
    num(x, what, op);
    const t = like instanceof Tensor ? like : null;
    return full([], x, { device: t?.device ?? 'cpu', dtype: t?.dtype === 'bfloat16' ? 'bfloat16' : 'float32' });
  }
  handleOf(x, what, op);
  return x;
}

function reduceTo(g: NativeTensor, shape: number[]): NativeTensor {
  return g.shape.join() === shape.join() ? native.copy(g) : native.sumTo(g, shape);
}

function binaryOp(kind: 'add' | 'sub' | 'mul' | 'div', a0: Operand, b0: Operand): Tensor {
  // A scalar operand becomes an affine map (no broadcast, no graph edge).
  if (typeof b0 === 'number' && a0 instanceof Tensor && kind !== 'div') {
    if (kind === 'add') return affine(a0, 1, b0);
    if (kind === 'sub') return affine(a0, 1, -b0);
    return affine(a0, b0, 0);
  }
  if (typeof b0 === 'number' && kind === 'div') return affine(a0 as Tensor, 1 / num(b0, 'b', kind, (v) => v !== 0, 'non-zero'), 0);
  const a1 = asTensor(a0, kind, 'a', b0);
  const b1 = asTensor(b0, kind, 'b', a0);
  // float32 with bfloat16: the bfloat16 operand is cast to float32 (type promotion). On cuda the kernel
  // promotes by itself (same bits, one pass instead of a cast and the op), also when a gradient is
  // recorded: the backward below then reads the bfloat16 operand through the same mixed kernel, and
  // backward() rounds a float32 gradient to its tensor's dtype, as the cast's backward would (same
  // bits as the cast path). The CPU kernels are float32-only: there the cast is explicit.
  const temps: Tensor[] = [];
  const inKernel = a1.device === 'cuda' && b1.device === 'cuda';
  const [a, b] = inKernel ? [a1, b1] : promote([a1, b1], temps);
  const ha = a.handle;
  const hb = b.handle;
  const y = out(call(kind, () => native.binary(kind, ha, hb)));
  if (needsGrad(a, b)) {
    const sa = [...a.shape];
    const sb = [...b.shape];
    const keepA = kind === 'mul' || kind === 'div' ? save(ha) : null;
    const keepB = kind === 'mul' || kind === 'div' ? save(hb) : null;
    record(y, kind, [a, b], (g) => {
      switch (kind) {
        case 'add':
          return [reduceTo(g, sa), reduceTo(g, sb)];
        case 'sub': {
          const nb = native.affine(g, -1, 0);
          const r = reduceTo(nb, sb);
          nb.free();
          return [reduceTo(g, sa), r];
        }
        case 'mul': {
          const ga = native.binary('mul', g, keepB!);
          const gb = native.binary('mul', g, keepA!);
          const r = [reduceTo(ga, sa), reduceTo(gb, sb)];
          free(ga, gb);
          return r;
        }
        default: {
          // d(a/b)/da = 1/b ; d(a/b)/db = -a/b²
          const ga = native.binary('div', g, keepB!);
          const q = native.binary('div', ga, keepB!);
          const t = native.binary('mul', q, keepA!);
          const gb = native.affine(t, -1, 0);
          const r = [reduceTo(ga, sa), reduceTo(gb, sb)];
          free(ga, q, t, gb);
          return r;
        }
      }
    }, keepA ? [keepA, keepB!] : []);
  }
  release(temps);
  if (typeof a0 === 'number') a1.dispose();
  if (typeof b0 === 'number') b1.dispose();
  return y;
}

export const add = (a: Operand, b: Operand): Tensor => binaryOp('add', a, b);
export const sub = (a: Operand, b: Operand): Tensor => binaryOp('sub', a, b);
export const mul = (a: Operand, b: Operand): Tensor => binaryOp('mul', a, b);
export const div = (a: Operand, b: Operand): Tensor => binaryOp('div', a, b);

/** Unary ops that autocast runs in float32 (as torch.autocast's float32 list). */
const FP32_UNARY: ReadonlySet<UnaryOp> = new Set<UnaryOp>(['exp', 'log']);

function unaryOp(kind: UnaryOp, x0: Tensor): Tensor {
  handleOf(x0, 'x', kind);
  const temps: Tensor[] = [];
  const x = FP32_UNARY.has(kind) ? highIn(x0, temps) : x0;
  const hx = x.handle;
  const hy = call(kind, () => native.unary(kind, hx));
  const y = out(hy);
  if (needsGrad(x)) {
    const sx = save(hx);
    const sy = save(hy);
    record(y, kind, [x], (g) => [native.unaryBackward(kind, sx, sy, g)], [sx, sy]);
  }
  release(temps);
  return y;
}

export const neg = (x: Tensor): Tensor => unaryOp('neg', x);
export const abs = (x: Tensor): Tensor => unaryOp('abs', x);
export const square = (x: Tensor): Tensor => unaryOp('sqr', x);
export const sqrt = (x: Tensor): Tensor => unaryOp('sqrt', x);
export const exp = (x: Tensor): Tensor => unaryOp('exp', x);
export const log = (x: Tensor): Tensor => unaryOp('log', x);
export const sigmoid = (x: Tensor): Tensor => unaryOp('sigmoid', x);
export const tanh = (x: Tensor): Tensor => unaryOp('tanh', x);
export const relu = (x: Tensor): Tensor => unaryOp('relu', x);
/** Exact GELU: 0.5·x·(1 + erf(x/√2)) (timm / PyTorch default). */
export const gelu = (x: Tensor): Tensor => unaryOp('gelu', x);

/** alpha·x + beta */
export function affine(x: Tensor, alpha: number, beta: number): Tensor {
  const hx = handleOf(x, 'x', 'affine');
  num(alpha, 'alpha', 'affine');
  num(beta, 'beta', 'affine');
  const y = out(call('affine', () => native.affine(hx, alpha, beta)));
  if (needsGrad(x)) record(y, 'affine', [x], (g) => [native.affine(g, alpha, 0)]);
  return y;
}
export const scale = (x: Tensor, alpha: number): Tensor => affine(x, alpha, 0);

/** 1 where x > threshold else 0 (no gradient). */
export function step(x: Tensor, threshold: number): Tensor {
  const hx = handleOf(x, 'x', 'step');
  num(threshold, 'threshold', 'step');
  return out(call('step', () => native.step(hx, threshold)));
}

/** Sums x down to `shape` (the reverse of broadcasting). */
export function sumTo(x: Tensor, shape: readonly number[]): Tensor {
  const hx = handleOf(x, 'x', 'sumTo');
  const s = intList(shape, 'shape', 'sumTo');
  const y = out(call('sumTo', () => native.sumTo(hx, s)));
  if (needsGrad(x)) {
    const xs = [...x.shape];
    record(y, 'sumTo', [x], (g) => {
      const z = native.full(xs, 0, g.dtype, g.device);
      const r = native.binary('add', z, g);
      z.free();
      return [r];
    });
  }
  return y;
}
