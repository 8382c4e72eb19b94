/**
 * GEMM family: the in-place sgemm hook (every micro-kernel this CPU runs, pinned with gemmSetIsa),
 * batched matmul and linear forward/backward, all against float64 references computed here from
 * the same fp32 inputs; backward also against central finite differences of the native forward.
 */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { dot, expectClose, expectCloseSum, expectCode, finiteDiff, nt, randn, randu, relErr, rng, RUN_SEED } from './helpers.js';

const ALL_ISAS = ['generic', 'avx2', 'avx512'] as const;
type Isa = (typeof ALL_ISAS)[number];
// Kernels this CPU (as lowered by VITRIM_ISA) can run.
const ISAS: Isa[] = ALL_ISAS.slice(0, ALL_ISAS.indexOf(native.info().isa as Isa) + 1);

afterAll(() => {
  native.gemmSetIsa('auto');
});

/** float64 reference of BLAS sgemm over row-major buffers with leading dimensions. */
function gemmRef(
  ta: boolean, tb: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number,
): Float64Array {
  const out = Float64Array.from(C);
  const a = (i: number, k: number) => (ta ? A[k * lda + i] : A[i * lda + k]);
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const aik = a(i, k);
      if (tb) for (let j = 0; j < N; j++) row[j] += aik * B[j * ldb + k];
      else {
        const o = k * ldb;
        for (let j = 0; j < N; j++) row[j] += aik * B[o + j];
      }
    }
    for (let j = 0; j < N; j++) {
      const c = beta === 0 ? 0 : beta * C[i * ldc + j];
      out[i * ldc + j] = alpha * row[j] + c;
    }
  }
  return out;
}

/** The M x N window of a row-major buffer with leading dimension ld. */
function windowOf(x: ArrayLike<number>, M: number, N: number, ld: number): Float64Array {
  const o = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) o[i * N + j] = x[i * ld + j];
  return o;
}

interface Case {
  M: number; N: number; K: number; ta: boolean; tb: boolean; alpha: number; beta: number;
  /** extra columns on each stored matrix (leading dimension > width) */
  pad?: number;
}

let caseSeed = 1000;
/** Runs one sgemm case through native.gemm and checks it against the float64 reference. */
function checkGemm(c: Case, what: string): void {
  const { M, N, K, ta, tb, alpha, beta } = c;
  const pad = c.pad ?? 0;
  const [ar, ac] = ta ? [K, M] : [M, K];
  const [br, bc] = tb ? [N, K] : [K, N];
  const lda = Math.max(1, ac + pad), ldb = Math.max(1, bc + pad), ldc = Math.max(1, N + pad);
  const A = randn([ar, lda], caseSeed++);
  const B = randn([br, ldb], caseSeed++);
  // beta == 0 must not read C: fill it with NaN garbage then.
  const C0 = beta === 0 ? new Float32Array(M * ldc).fill(Number.NaN) : randn([M, ldc], caseSeed++);
  const a = nt(A, [ar, lda]), b = nt(B, [br, ldb]), cT = nt(C0, [M, ldc]);
  native.gemm(ta, tb, M, N, K, alpha, a, b, beta, cT);
  const got = cT.read() as Float32Array;
  const ref = gemmRef(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
  const abs = (x: Float32Array) => x.map(Math.abs);
  const mag = gemmRef(ta, tb, M, N, K, Math.abs(alpha), abs(A), lda, abs(B), ldb, Math.abs(beta), abs(C0), ldc);
  const g = windowOf(got, M, N, ldc), r = windowOf(ref, M, N, ldc);
  for (let i = 0; i < g.length; i++) {
    if (!Number.isFinite(g[i])) throw new Error(`${what}: non-finite output at ${i} (seed ${RUN_SEED})`);
  }
  expectCloseSum(g, r, windowOf(mag, M, N, ldc), 1e-5, what);
  // Padding columns of C are outside the window and must be untouched (bitwise; NaN stays NaN).
  for (let i = 0; i < M; i++) {
    for (let j = N; j < ldc; j++) {
      if (!Object.is(got[i * ldc + j], C0[i * ldc + j])) throw new Error(`${what}: wrote outside the window at (${i}, ${j})`);
    }
  }
  a.free(); b.free(); cT.free();
}

const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe('sgemm (native.gemm) on every micro-kernel', () => {
  for (const isa of ISAS) {
    it(`${isa}: odd shapes x all transposes x alpha/beta (incl. beta = 0 over NaN C)`, () => {
      expect(native.gemmSetIsa(isa)).toBe(isa);
      expect(native.gemmIsa()).toBe(isa);
      const shapes: [number, number, number][] = [
        [1, 1, 1], [1, 17, 3], [3, 1, 17], [17, 3, 1], [5, 33, 16], [13, 31, 29],
        [197, 64, 65], [64, 197, 33], [37, 385, 41], [385, 19, 23],
        [5, 800, 1100], // few rows, much work: the column-split path, several K blocks
        [130, 100, 770], // several K blocks with beta applied once
      ];
      // plus a few drawn per run (the seed is printed on failure)
      const r = rng(4242 + ISAS.indexOf(isa));
      for (let i = 0; i < 4; i++) shapes.push([1 + Math.floor(r() * 300), 1 + Math.floor(r() * 300), 1 + Math.floor(r() * 600)]);
      const coefs: [number, number][] = [[1, 0], [-0.75, 1], [1.5, -0.5], [0.3, 0]];
      let n = 0;
      for (const [M, N, K] of shapes) {
        for (const [ta, tb] of TRANS) {
          const [alpha, beta] = coefs[n++ % coefs.length];
          checkGemm({ M, N, K, ta, tb, alpha, beta }, `${isa} ${M}x${N}x${K} tA=${ta} tB=${tb} a=${alpha} b=${beta}`);
        }
      }
    });

    it(`${isa}: leading dimensions larger than the width, and edges of every tile size`, () => {
      native.gemmSetIsa(isa);
      // M, N around the register tiles (4, 6, 12 rows; 16, 32 columns) and their multiples.
      const dims = [1, 4, 5, 6, 7, 11, 12, 13, 15, 16, 17, 31, 32, 33, 48, 49];
      let n = 0;
      for (const M of dims) {
        for (const N of [dims[(n * 7) % dims.length], dims[(n * 5 + 3) % dims.length]]) {
          const [ta, tb] = TRANS[n % 4];
          const K = 1 + ((n * 13) % 40);
          checkGemm({ M, N, K, ta, tb, alpha: 0.5 + (n % 3), beta: n % 2 ? 0 : 0.25, pad: 1 + (n % 5) },
            `${isa} ld ${M}x${N}x${K} tA=${ta} tB=${tb}`);
          n++;
        }
      }
    });

    it(`${isa}: large shapes spanning several M/N/K cache blocks, threaded`, () => {
      native.gemmSetIsa(isa);
      checkGemm({ M: 421, N: 300, K: 1537, ta: false, tb: true, alpha: 1, beta: 0 }, `${isa} big NT`);
      checkGemm({ M: 260, N: 4133, K: 9, ta: true, tb: false, alpha: -1, beta: 2 }, `${isa} wide (N > NC)`);
    });
  }

  it('K = 0 scales C by beta; M = 0 or N = 0 leave C alone; alpha = 0 skips the product', () => {
    const C0 = randn([4, 5], 7);
    const c = nt(C0, [4, 5]);
    const a = nt(randn([4, 3], 8), [4, 3]), b = nt(randn([3, 5], 9), [3, 5]);
    native.gemm(false, false, 4, 5, 0, 1, a, b, 0.5, c);
    expectClose(c.read(), Array.from(C0, (v) => 0.5 * v), 0, 'K=0');
    c.write(new Float32Array(20).fill(Number.NaN));
    native.gemm(false, false, 4, 5, 0, 1, a, b, 0, c);
    expect(Array.from(c.read())).toEqual(new Array(20).fill(0));
    c.write(C0);
    native.gemm(false, false, 0, 5, 3, 1, a, b, 0, c);
    native.gemm(false, false, 4, 0, 3, 1, a, b, 0, c);
    expect(Array.from(c.read())).toEqual(Array.from(C0));
    native.gemm(false, false, 4, 5, 3, 0, a, b, -2, c);
    expectClose(c.read(), Array.from(C0, (v) => -2 * v), 0, 'alpha=0');
  });

  it('gives bitwise the same result on 1 thread and on the pool, and inside a batched parallel_for', () => {
    native.gemmSetIsa('auto');
    const threads = native.info().threads;
    const [M, N, K] = [150, 170, 700];
    const a = nt(randn([M, K], 21), [M, K]), b = nt(randn([K, N], 22), [K, N]);
    const c1 = native.full([M, N], 0, 'float32');
    native.gemm(false, false, M, N, K, 1, a, b, 0, c1);
    try {
      native.setNumThreads(1);
      const c2 = native.full([M, N], 0, 'float32');
      native.gemm(false, false, M, N, K, 1, a, b, 0, c2);
      expect(relErr(c2.read(), c1.read())).toBe(0);
    } finally {
      native.setNumThreads(threads);
    }
    // matmul over 16 copies runs one serial sgemm per task (nested inside parallel_for).
    const nb = 16;
    const A = new Float32Array(nb * M * K);
    for (let i = 0; i < nb; i++) A.set(a.read() as Float32Array, i * M * K);
    const y = native.matmul(nt(A, [nb, M, K]), b, false, false).read();
    const ref = c1.read();
    for (let i = 0; i < nb; i++) expect(relErr(y.subarray(i * M * N, (i + 1) * M * N), ref)).toBe(0);
  });

  it('reports the kernel and honours VITRIM_ISA in a fresh process', () => {
    native.gemmSetIsa('auto');
    expect(native.gemmIsa()).toBe(native.info().isa);
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    const script = "process.stdout.write(require('node-gyp-build')(process.argv[1]).gemmIsa())";
    for (const isa of ['generic', 'avx2'] as const) {
      if (!ISAS.includes(isa)) continue;
      const out = execFileSync(process.execPath, ['-e', script, root], {
        env: { ...process.env, VITRIM_ISA: isa }, encoding: 'utf8',
      });
      expect(out).toBe(isa);
    }
  });

  it('rejects bad input with typed errors and keeps working', () => {
    const a = nt(randn([4, 3], 1), [4, 3]), b = nt(randn([3, 5], 2), [3, 5]), c = nt(randn([4, 5], 3), [4, 5]);
    expectCode(() => native.gemm(false, false, 5, 5, 3, 1, a, b, 0, c), 'ERR_VITRIM_SHAPE'); // a too small
    expectCode(() => native.gemm(false, false, 4, 6, 3, 1, a, b, 0, c), 'ERR_VITRIM_SHAPE'); // b too small
    expectCode(() => native.gemm(true, false, 4, 5, 3, 1, a, b, 0, c), 'ERR_VITRIM_SHAPE'); // op(a) is 3x4
    expectCode(() => native.gemm(false, false, -1, 5, 3, 1, a, b, 0, c), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gemm(false, false, 4, 5, 3, Number.NaN, a, b, 0, c), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, a, b, Number.POSITIVE_INFINITY, c), 'ERR_VITRIM_ARGUMENT');
    const big = nt(randn([4, 5], 5), [4, 5]); // op(A) = its 4x3 window, C = all of it: aliasing
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, big, b, 0, big), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, a, b, 0, b.reshape([3, 5])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, a.reshape([12]), b, 0, c), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, nt(new Int32Array(12), [4, 3]), b, 0, c), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, a, {} as never, 0, c), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gemm(false, false, 4.5, 5, 3, 1, a, b, 0, c), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.gemmSetIsa('sse9' as never), 'ERR_VITRIM_ARGUMENT');
    const d = nt(randn([4, 5], 4), [4, 5]);
    d.free();
    expectCode(() => native.gemm(false, false, 4, 5, 3, 1, a, b, 0, d), 'ERR_VITRIM_DISPOSED');
    native.gemm(false, false, 4, 5, 3, 1, a, b, 0, c);
    expectClose(c.read(), gemmRef(false, false, 4, 5, 3, 1, a.read() as Float32Array, 3,
      b.read() as Float32Array, 5, 0, new Float32Array(20), 5), 1e-6, 'after errors');
  });
});

/** float64 batched matmul reference over contiguous [nb, r, c] buffers. */
function matmulRef(A: Float32Array, aShape: number[], B: Float32Array, bShape: number[], ta: boolean, tb: boolean): Float64Array {
  const [ar, ac] = aShape.slice(-2), [br, bc] = bShape.slice(-2);
  const M = ta ? ac : ar, K = ta ? ar : ac, N = tb ? br : bc;
  const nb = aShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const shared = bShape.length === 2;
  const out = new Float64Array(nb * M * N);
  for (let i = 0; i < nb; i++) {
    const Ai = A.subarray(i * ar * ac, (i + 1) * ar * ac);
    const Bi = shared ? B : B.subarray(i * br * bc, (i + 1) * br * bc);
    const r = gemmRef(ta, tb, M, N, K, 1, Ai, ac, Bi, bc, 0, new Float32Array(M * N), N);
    out.set(r, i * M * N);
  }
  return out;
}

describe('matmul', () => {
  it('batched [2, 3, ...] and shared-b, all transposes, odd sizes', () => {
    let s = 50;
    for (const [M, N, K] of [[17, 3, 1], [1, 19, 33], [65, 31, 17]] as const) {
      for (const [ta, tb] of TRANS) {
        const aS = ta ? [2, 3, K, M] : [2, 3, M, K];
        const bS = tb ? [2, 3, N, K] : [2, 3, K, N];
        const A = randn(aS, s++), B = randn(bS, s++);
        const y = native.matmul(nt(A, aS), nt(B, bS), ta, tb);
        expect(y.shape).toEqual([2, 3, M, N]);
        expectClose(y.read(), matmulRef(A, aS, B, bS, ta, tb), 1e-5, `batched ${M}x${N}x${K} ${ta} ${tb}`);
        const b2 = tb ? [N, K] : [K, N];
        const B2 = randn(b2, s++);
        const y2 = native.matmul(nt(A, aS), nt(B2, b2), ta, tb);
        expectClose(y2.read(), matmulRef(A, aS, B2, b2, ta, tb), 1e-5, `shared ${M}x${N}x${K} ${ta} ${tb}`);
      }
    }
  });

  it('many small GEMMs (attention-like [B*H, N, D]) and a plain 2-D product', () => {
    const aS = [12, 197, 64], bS = [12, 197, 64];
    const A = randn(aS, 71), B = randn(bS, 72);
    const y = native.matmul(nt(A, aS), nt(B, bS), false, true);
    expect(y.shape).toEqual([12, 197, 197]);
    expectClose(y.read(), matmulRef(A, aS, B, bS, false, true), 1e-5, 'q k^T');
    const A2 = randn([33, 40], 73), B2 = randn([40, 7], 74);
    expectClose(native.matmul(nt(A2, [33, 40]), nt(B2, [40, 7]), false, false).read(),
      matmulRef(A2, [33, 40], B2, [40, 7], false, false), 1e-5, '2-D');
  });

  it('a few large GEMMs run one after the other, each threaded', () => {
    const aS = [3, 260, 300], bS = [3, 300, 141];
    const A = randn(aS, 81), B = randn(bS, 82);
    expectClose(native.matmul(nt(A, aS), nt(B, bS), false, false).read(), matmulRef(A, aS, B, bS, false, false), 1e-5, 'few large');
    // shared b with a transposed a is not one tall GEMM: per-batch calls
    const aT = [3, 300, 70];
    const AT = randn(aT, 83), B2 = randn([300, 90], 84);
    expectClose(native.matmul(nt(AT, aT), nt(B2, [300, 90]), true, false).read(), matmulRef(AT, aT, B2, [300, 90], true, false), 1e-5, 'shared, tA');
  });

  it('handles empty batches and K = 0', () => {
    expect(native.matmul(nt([], [0, 3, 4]), nt([], [0, 4, 2]), false, false).shape).toEqual([0, 3, 2]);
    const y = native.matmul(nt([], [3, 0]), nt([], [0, 2]), false, false);
    expect(Array.from(y.read())).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('rejects bad input', () => {
    const a = nt(randn([2, 3, 4], 1), [2, 3, 4]), b = nt(randn([2, 4, 5], 2), [2, 4, 5]);
    expectCode(() => native.matmul(a, nt(randn([2, 3, 5], 3), [2, 3, 5]), false, false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.matmul(a, nt(randn([3, 4, 5], 3), [3, 4, 5]), false, false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.matmul(a, nt(randn([4], 3), [4]), false, false), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.matmul(nt(new Int32Array(24), [2, 3, 4]), b, false, false), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.matmul(a, null as never, false, false), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.matmul(a, b, 1 as never, false), 'ERR_VITRIM_ARGUMENT');
    const f = nt(randn([2, 4, 5], 4), [2, 4, 5]);
    f.free();
    expectCode(() => native.matmul(a, f, false, false), 'ERR_VITRIM_DISPOSED');
    expect(native.matmul(a, b, false, false).shape).toEqual([2, 3, 5]);
  });
});

/** float64 reference of y = x W^T + b. */
function linearRef(X: Float32Array, M: number, K: number, W: Float32Array, N: number, bias?: Float32Array): Float64Array {
  const y = gemmRef(false, true, M, N, K, 1, X, K, W, K, 0, new Float32Array(M * N), N);
  if (bias) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) y[i * N + j] += bias[j];
  return y;
}

describe('linear', () => {
  it('forward with and without bias, odd sizes, vs float64', () => {
    let s = 300;
    for (const [lead, K, N] of [[[1], 1, 1], [[2, 17], 33, 19], [[197], 385, 3], [[3, 5], 64, 97]] as const) {
      const M = (lead as readonly number[]).reduce((x, y) => x * y, 1);
      const X = randn([M, K], s++), W = randn([N, K], s++, 0.2), bias = randn([N], s++);
      const xs = [...lead, K];
      const y = native.linearForward(nt(X, xs), nt(W, [N, K]), nt(bias, [N]));
      expect(y.shape).toEqual([...lead, N]);
      const abs = (x: Float32Array) => x.map(Math.abs);
      const mag = linearRef(abs(X), M, K, abs(W), N, abs(bias));
      expectCloseSum(y.read(), linearRef(X, M, K, W, N, bias), mag, 1e-5, `linear ${M}x${K}->${N}`);
      const y0 = native.linearForward(nt(X, xs), nt(W, [N, K]), null);
      expectCloseSum(y0.read(), linearRef(X, M, K, W, N), linearRef(abs(X), M, K, abs(W), N), 1e-5, `linear nobias ${M}x${K}->${N}`);
    }
  });

  it('on every micro-kernel (bias folded into the kernel store)', () => {
    const [M, K, N] = [131, 47, 45];
    const X = randn([M, K], 401), W = randn([N, K], 402), bias = randn([N], 403);
    for (const isa of ISAS) {
      native.gemmSetIsa(isa);
      const y = native.linearForward(nt(X, [M, K]), nt(W, [N, K]), nt(bias, [N]));
      expectClose(y.read(), linearRef(X, M, K, W, N, bias), 1e-5, `linear ${isa}`);
    }
    native.gemmSetIsa('auto');
  });

  it('backward vs the float64 analytic gradient and finite differences', () => {
    let s = 500;
    for (const [lead, K, N] of [[[1], 1, 1], [[2, 17], 33, 19], [[197], 20, 3], [[3, 70], 45, 385]] as const) {
      const M = (lead as readonly number[]).reduce((x, y) => x * y, 1);
      const X = randn([M, K], s++), W = randn([N, K], s++, 0.3), bias = randn([N], s++);
      const GY = randn([M, N], s++);
      const xs = [...lead, K], ys = [...lead, N];
      const [gx, gw, gb] = native.linearBackward(nt(GY, ys), nt(X, xs), nt(W, [N, K]), true);
      expect(gx.shape).toEqual(xs);
      expect(gw.shape).toEqual([N, K]);
      // gx = gy W, gw = gy^T x, gb = sum over rows of gy
      expectClose(gx.read(), gemmRef(false, false, M, K, N, 1, GY, N, W, K, 0, new Float32Array(M * K), K), 1e-5, 'gx');
      expectClose(gw.read(), gemmRef(true, false, N, K, M, 1, GY, N, X, K, 0, new Float32Array(N * K), K), 1e-5, 'gw');
      const gbRef = new Float64Array(N);
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) gbRef[j] += GY[i * N + j];
      expect(gb).not.toBeNull();
      expectClose(gb!.read(), gbRef, 1e-5, 'gb');
      const [, , none] = native.linearBackward(nt(GY, ys), nt(X, xs), nt(W, [N, K]), false);
      expect(none).toBeNull();

      // Finite differences of L = sum(y * GY) through the native forward, on a few entries each. L is
      // linear in every parameter, so a large step has no truncation error and keeps the fp32
      // rounding of y (divided by 2h) small next to tiny gradients.
      const loss = (x: Float32Array, w: Float32Array, b: Float32Array) =>
        dot(native.linearForward(nt(x, xs), nt(w, [N, K]), nt(b, [N])).read(), GY);
      const pick = (n: number, seed: number) => {
        const r = randu([Math.min(n, 12)], seed);
        return Array.from(r, (v) => Math.floor(v * n));
      };
      const ix = pick(M * K, s++), iw = pick(N * K, s++), ib = pick(N, s++);
      const fx = finiteDiff((x) => loss(x, W, bias), X, 0.1, ix);
      const fw = finiteDiff((w) => loss(X, w, bias), W, 0.1, iw);
      const fb = finiteDiff((b) => loss(X, W, b), bias, 0.1, ib);
      const gxv = gx.read(), gwv = gw.read(), gbv = gb!.read();
      expectClose(ix.map((i) => gxv[i]), fx, 5e-3, 'gx fd');
      expectClose(iw.map((i) => gwv[i]), fw, 5e-3, 'gw fd');
      expectClose(ib.map((i) => gbv[i]), fb, 5e-3, 'gb fd');
    }
  });

  it('bias gradient over many rows stays accurate (float64 accumulation)', () => {
    const [M, N] = [20000, 5];
    const GY = randn([M, N], 601, 1);
    for (let i = 0; i < GY.length; i++) GY[i] += 3; // a large mean makes fp32 running sums drift
    const [, , gb] = native.linearBackward(nt(GY, [M, N]), nt(randn([M, 2], 602), [M, 2]), nt(randn([N, 2], 603), [N, 2]), true);
    const ref = new Float64Array(N);
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) ref[j] += GY[i * N + j];
    expectClose(gb!.read(), ref, 1e-6, 'gb long');
  });

  it('rejects bad input', () => {
    const x = nt(randn([3, 4], 1), [3, 4]), w = nt(randn([5, 4], 2), [5, 4]), b = nt(randn([5], 3), [5]);
    const gy = nt(randn([3, 5], 4), [3, 5]);
    expectCode(() => native.linearForward(x, nt(randn([5, 3], 5), [5, 3]), b), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearForward(x, w, nt(randn([4], 6), [4])), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearForward(x, nt(randn([4], 7), [4]), null), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearForward(nt(new Int32Array(12), [3, 4]), w, b), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearForward(x, w, nt(new Int32Array(5), [5])), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.linearForward(x, 'w' as never, b), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.linearBackward(nt(randn([3, 4], 8), [3, 4]), x, w, true), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.linearBackward(gy, x, w, 'yes' as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.linearBackward(gy, nt(new Int32Array(12), [3, 4]), w, true), 'ERR_VITRIM_DTYPE');
    const f = nt(randn([5, 4], 9), [5, 4]);
    f.free();
    expectCode(() => native.linearForward(x, f, b), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.linearBackward(gy, x, f, true), 'ERR_VITRIM_DISPOSED');
    const y = native.linearForward(x, w, b);
    expectClose(y.read(), linearRef(x.read() as Float32Array, 3, 4, w.read() as Float32Array, 5, b.read() as Float32Array), 1e-5, 'after');
  });
});
