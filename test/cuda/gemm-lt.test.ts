// lt_gemm's fallbacks (native/cuda/gemm.cu) for problems cuBLASLt has no algorithm for, under the
// emulated cuBLASLt's knobs (a GPU ignores them: emulation only): no BIAS-epilogue kernel, no
// kernel that writes out of place, none for a strided batch, each answered as the library does
// (CUBLAS_STATUS_NOT_SUPPORTED) or the other documented way. Fresh random inputs against the CPU's
// op; each path told apart by the nodes and kernels of a recorded graph. Kept out of gemm.test.ts so
// that the default emulated set (CI) runs it: it takes well under a second.
import { beforeAll, expect, it } from 'vitest';
import { withCublasLt, withEnv } from '../../bench/env.js';
import { captureGraph } from '../../lib/infer/plan.js';
import { native, type NativeTensor } from '../../lib/native.js';
import { RUN_SEED, nt, randn } from '../helpers.js';
import { FLOAT_DTYPES, TOL, cudaAs, describeCuda, emulated, expectRel, roundTo } from './helpers.js';

const r = (shape: number[], seed: number, scale = 1) => nt(randn(shape, RUN_SEED + seed, scale), shape);
const lt = withCublasLt;

/** The graph of one call: its result (copied out of the graph's pool), nodes and kernels. */
function recorded(call: () => NativeTensor): { y: NativeTensor; nodes: number; kernels: number } {
  const { graph, result: y } = captureGraph(call);
  const { nodes, kernels } = graph.stats();
  graph.replay();
  const copy = native.copy(y);
  graph.dispose();
  return { y: copy, nodes, kernels };
}

describeCuda('cuda gemm: cuBLASLt fallbacks', () => {
  beforeAll(() => native.setAllowTf32(false));

  // cuBLASLt may have no BIAS-epilogue algorithm for a problem (some alignments and dtypes): lt_gemm
  // then runs the plain GEMM (with the residual as C) and adds the bias in a pass of its own
  // (gemm.cu's add_bias_kernel). The emulated cuBLASLt refuses every BIAS epilogue under
  // VITRIM_EMU_LT_NO_BIAS: with CUBLAS_STATUS_NOT_SUPPORTED (=1, what cuBLASLt returns) or with
  // success and no algorithm (=count). lt_gemm caches the heuristic's answer per problem, so each call here
  // has a problem shape of its own, and is recorded in a graph to count its kernels: 2 for the
  // fallback (the GEMM, then the bias pass), 1 for the same call without the knob on another shape
  // (so the count tells the paths apart). A GPU ignores the knob: emulation only
  // (scripts/launch-check.mjs listed the fallback's kernels as never launched).
  it.skipIf(!emulated)('linearFused when cuBLASLt has no BIAS epilogue: the GEMM, then a bias pass', () => {
    let M = 61;
    for (const dtype of FLOAT_DTYPES) {
      for (const withRes of [false, true]) {
        for (const knob of ['1', 'count', undefined]) {
          const [K, N] = [384, 136];
          M += 1; // a problem of its own: lt_gemm's cache has not seen it
          const x = roundTo(r([M, K], 61 + M), dtype), w = roundTo(r([N, K], 62 + M, 0.2), dtype);
          const b = roundTo(r([N], 63 + M), dtype), res = roundTo(r([M, N], 64 + M), dtype);
          const [xc, wc, bc, rc] = [x, w, b, res].map((t) => cudaAs(t, dtype));
          const what = `${dtype} residual=${withRes} no-bias=${knob ?? 'unset'} ${M},${K},${N}`;
          const { y, kernels } = lt(() => withEnv('VITRIM_EMU_LT_NO_BIAS', knob, () =>
            recorded(() => native.linearFused(xc, wc, bc, 'none', withRes ? rc : null))));
          expect(kernels, what).toBe(knob ? 2 : 1);
          expect(y.dtype).toBe(dtype);
          expectRel(y, native.linearFused(x, w, b, 'none', withRes ? res : null), TOL[dtype], what);
        }
      }
    }
  });

  // A residual linear writes out of place (C = the residual, D = y). Not every cuBLASLt algorithm
  // can: the heuristic may say so (NOT_SUPPORTED), or cublasLtMatmul may refuse the algorithm it
  // gave. lt_gemm then copies the residual into y and runs the GEMM in place (C == D); with no BIAS
  // epilogue either, the bias follows in a pass of its own. The emulated cuBLASLt refuses out of
  // place under VITRIM_EMU_LT_IN_PLACE_ONLY=heuristic|matmul. Counted in a recorded graph: the
  // copy is a node of its own, the bias pass a kernel of its own (the direct call: 1 node).
  it.skipIf(!emulated)('linearFused with a residual when cuBLASLt cannot write out of place: copy, then in place', () => {
    let M = 161;
    for (const dtype of FLOAT_DTYPES) {
      for (const where of ['heuristic', 'matmul', undefined]) {
        for (const noBias of [undefined, '1']) {
          const [K, N] = [96, 40];
          M += 1; // a problem of its own for lt_gemm's caches
          const x = roundTo(r([M, K], 71 + M), dtype), w = roundTo(r([N, K], 72 + M, 0.2), dtype);
          const b = roundTo(r([N], 73 + M), dtype), res = roundTo(r([M, N], 74 + M), dtype);
          const [xc, wc, bc, rc] = [x, w, b, res].map((t) => cudaAs(t, dtype));
          const what = `${dtype} in-place-only=${where ?? 'unset'} no-bias=${noBias ?? 'unset'} ${M},${K},${N}`;
          const { y, nodes, kernels } = lt(() => withEnv('VITRIM_EMU_LT_IN_PLACE_ONLY', where, () =>
            withEnv('VITRIM_EMU_LT_NO_BIAS', noBias, () => recorded(() => native.linearFused(xc, wc, bc, 'none', rc)))));
          expect([nodes, kernels], what).toEqual([1 + (where ? 1 : 0) + (noBias ? 1 : 0), noBias ? 2 : 1]);
          expectRel(y, native.linearFused(x, w, b, 'none', res), TOL[dtype], what);
          expectRel(rc, res, 0, `${what}: the residual is untouched`);
        }
      }
    }
  });

  // A batched matmul is one strided-batch cuBLASLt call (matmul's shared B with transA: a B stride of
  // 0; a shared B without transA folds the batch into M and is not batched at all). With no
  // algorithm for the batch, lt_gemm runs its problems one at a time: a GEMM per problem. The
  // emulated cuBLASLt refuses a batch under VITRIM_EMU_LT_NO_BATCH=1 (any) or =shared (a stride of
  // 0). Counted in a recorded graph: nb kernels for the fallback, 1 otherwise.
  it.skipIf(!emulated)('matmul when cuBLASLt has no algorithm for the batch: one problem at a time', () => {
    let M = 21;
    const [nb, K, N] = [3, 24, 10];
    for (const dtype of FLOAT_DTYPES) {
      for (const shared of [false, true]) {
        for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
          for (const knob of ['1', 'shared', undefined]) {
            M += 1; // a problem of its own for lt_gemm's caches
            const aShape = tA ? [nb, K, M] : [nb, M, K];
            const bShape = (tB ? [N, K] : [K, N]);
            const a = roundTo(r(aShape, 81 + M), dtype);
            const b = roundTo(r(shared ? bShape : [nb, ...bShape], 82 + M, 0.3), dtype);
            const [ac, bc] = [a, b].map((t) => cudaAs(t, dtype));
            const what = `${dtype} shared=${shared} transA=${tA} transB=${tB} no-batch=${knob ?? 'unset'} M=${M}`;
            const { y, kernels } = lt(() => withEnv('VITRIM_EMU_LT_NO_BATCH', knob, () =>
              recorded(() => native.matmul(ac, bc, tA, tB))));
            const batched = !(shared && !tA);
            const refused = batched && (knob === '1' || (knob === 'shared' && shared));
            expect(kernels, what).toBe(refused ? nb : 1);
            expect(y.shape).toEqual([nb, M, N]);
            expectRel(y, native.matmul(a, b, tA, tB), TOL[dtype], what);
          }
        }
      }
    }
  });
});
