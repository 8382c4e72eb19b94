/**
 * Float64 reference implementations for the elementwise / reduce / layout tests: plain index
 * arithmetic over row-major shapes, written independently of the native kernels (no coalescing, no
 * blocking), so a kernel bug cannot be mirrored here.
 */
export function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function stridesOf(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Multi-index of flat position i in shape. */
export function unravel(i: number, shape: number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** numpy broadcast of two shapes, or null when incompatible. */
export function broadcastShapes(a: number[], b: number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = i - (n - a.length) >= 0 ? a[i - (n - a.length)] : 1;
    const db = i - (n - b.length) >= 0 ? b[i - (n - b.length)] : 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Flat index into `shape` of the element an output multi-index `oidx` broadcasts from. */
function bcastIndex(oidx: number[], shape: number[]): number {
  const off = oidx.length - shape.length;
  let k = 0;
  for (let d = 0; d < shape.length; d++) k = k * shape[d] + (shape[d] === 1 ? 0 : oidx[off + d]);
  return k;
}

/** Broadcast data of `shape` up to `out` (float64). */
export function broadcastTo(x: ArrayLike<number>, shape: number[], out: number[]): Float64Array {
  const n = size(out);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = x[bcastIndex(unravel(i, out), shape)];
  return r;
}

export type BinOp = 'add' | 'sub' | 'mul' | 'div';
export function binaryRef(op: BinOp, a: ArrayLike<number>, as: number[], b: ArrayLike<number>, bs: number[]) {
  const os = broadcastShapes(as, bs);
  if (!os) throw new Error('not broadcastable');
  const n = size(os);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const oi = unravel(i, os);
    const x = a[bcastIndex(oi, as)];
    const y = b[bcastIndex(oi, bs)];
    out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : x / y;
  }
  return { shape: os, data: out };
}

/** Sum/mean/max over `axes` (normalised, may be empty = none here), keepDims. */
export function reduceRef(
  op: 'sum' | 'mean' | 'max',
  x: ArrayLike<number>,
  shape: number[],
  axes: number[],
  keepDims: boolean,
): { shape: number[]; data: Float64Array } {
  const red = shape.map((_, i) => axes.includes(i));
  const keptShape = shape.map((d, i) => (red[i] ? 1 : d));
  const outShape = keepDims ? keptShape : shape.filter((_, i) => !red[i]);
  const no = size(keptShape);
  const acc = new Float64Array(no).fill(op === 'max' ? -Infinity : 0);
  const cnt = size(shape.filter((_, i) => red[i]));
  const n = size(shape);
  const ks = stridesOf(keptShape);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    let o = 0;
    for (let d = 0; d < shape.length; d++) if (!red[d]) o += idx[d] * ks[d];
    const v = x[i];
    if (op !== 'max') acc[o] += v;
    else if (!Number.isNaN(acc[o]) && (Number.isNaN(v) || v > acc[o])) acc[o] = v; // NaN wins, as PyTorch
  }
  if (op === 'mean') for (let i = 0; i < no; i++) acc[i] /= cnt;
  return { shape: outShape, data: acc };
}

export function permuteRef(x: ArrayLike<number>, shape: number[], perm: number[]) {
  const r = shape.length;
  const p = perm.map((a) => (a < 0 ? a + r : a));
  const os = p.map((a) => shape[a]);
  const is = stridesOf(shape);
  const n = size(os);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const oi = unravel(i, os);
    let k = 0;
    for (let d = 0; d < r; d++) k += oi[d] * is[p[d]];
    out[i] = x[k];
  }
  return { shape: os, data: out };
}

export function sliceRef(x: ArrayLike<number>, shape: number[], axis: number, start: number, end: number) {
  const a = axis < 0 ? axis + shape.length : axis;
  const os = shape.slice();
  os[a] = end - start;
  const is = stridesOf(shape);
  const n = size(os);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const oi = unravel(i, os);
    oi[a] += start;
    let k = 0;
    for (let d = 0; d < shape.length; d++) k += oi[d] * is[d];
    out[i] = x[k];
  }
  return { shape: os, data: out };
}

/** All permutations of [0, n). */
export function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  const out: number[][] = [];
  for (const p of permutations(n - 1))
    for (let i = 0; i <= p.length; i++) out.push([...p.slice(0, i), n - 1, ...p.slice(i)]);
  return out;
}

/** All subsets of [0, n). */
export function subsets(n: number): number[][] {
  const out: number[][] = [];
  for (let m = 0; m < 1 << n; m++) out.push(Array.from({ length: n }, (_, i) => i).filter((i) => (m >> i) & 1));
  return out;
}

/** Exact equality of two float arrays, NaN equal to NaN; throws naming the first difference. */
export function expectExact(a: ArrayLike<number>, b: ArrayLike<number>, what = ''): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (!(x === y || (Number.isNaN(x) && Number.isNaN(y))))
      throw new Error(`${what}: element ${i} is ${x}, expected ${y}`);
  }
}
