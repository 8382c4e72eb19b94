/**
 * Helpers for the CUDA tests: every test in test/cuda/ runs a CUDA op and the CPU op on the same
 * fresh random inputs and compares (fp32 ‖a−b‖/‖b‖ ≤ 1e-5 with TF32 off, bf16 ≤ 1e-2). Without a
 * visible GPU (or without libvitrim_cuda) the suites are skipped, and reported as skipped by
 * .ci/run, never as passed.
 */
import { describe } from 'vitest';
import { native, type DType, type NativeTensor } from '../../lib/native.js';
import { relErr } from '../helpers.js';

export const cudaStatus = native.backends().find((b) => b.device === 'cuda')!;
export const hasCuda = cudaStatus.available;
/**
 * True when the backend is the CPU emulation (native/cuda/emu): kernels run as fibers, thousands of
 * times slower than a GPU, so tests may shrink their largest shapes there (never their logic).
 */
export const emulated = hasCuda && cudaStatus.detail.includes('emulation');
/** describe() that runs only where the CUDA backend loaded. */
export const describeCuda: typeof describe = describe.skipIf(!hasCuda) as typeof describe;

/** ‖a−b‖/‖b‖ bounds against the CPU op, by the dtype the CUDA op ran in. */
export const TOL: Record<'float32' | 'bfloat16', number> = { float32: 1e-5, bfloat16: 1e-2 };
export const FLOAT_DTYPES = ['float32', 'bfloat16'] as const;

export function toCuda(t: NativeTensor): NativeTensor {
  return native.toDevice(t, 'cuda');
}

/** A cpu float32 tensor rounded through `dtype` (so the CPU reference sees the same inputs). */
export function roundTo(t: NativeTensor, dtype: DType): NativeTensor {
  if (dtype === 'float32' || t.dtype !== 'float32') return t;
  return native.cast(native.cast(t, dtype), 'float32');
}

/** The cuda copy of cpu float32 `t`, stored as `dtype`. */
export function cudaAs(t: NativeTensor, dtype: DType): NativeTensor {
  const c = t.dtype === dtype ? t : native.cast(t, dtype);
  return native.toDevice(c, 'cuda');
}

/** The values of a tensor on any device as float32 (bf16 widened; int32 converted). */
export function values(t: NativeTensor): Float32Array {
  const c = t.device === 'cpu' ? t : native.toDevice(t, 'cpu');
  if (c.dtype === 'float32') return c.read() as Float32Array;
  if (c.dtype === 'bfloat16') return native.cast(c, 'float32').read() as Float32Array;
  return Float32Array.from(c.read() as Int32Array);
}

/** The raw bits of a tensor on any device (float32 as Uint32Array, so NaN payloads compare). */
export function bits(t: NativeTensor): Uint32Array | Uint16Array | Int32Array {
  const c = t.device === 'cpu' ? t : native.toDevice(t, 'cpu');
  const d = c.read();
  if (d instanceof Float32Array) return new Uint32Array(d.buffer, d.byteOffset, d.length);
  return d as Uint16Array | Int32Array;
}

/** Asserts ‖got − want‖/‖want‖ ≤ tol, with a message naming what was compared. */
export function expectRel(got: NativeTensor | ArrayLike<number>, want: NativeTensor | ArrayLike<number>, tol: number,
  what: string): number {
  const g = isTensor(got) ? values(got) : got;
  const w = isTensor(want) ? values(want) : want;
  if (g.length !== w.length) throw new Error(`${what}: ${g.length} values vs ${w.length}`);
  let norm = 0;
  for (let i = 0; i < w.length; i++) norm += w[i] * w[i];
  if (norm === 0) throw new Error(`${what}: the reference is all zeros; the test would be vacuous`);
  const e = relErr(g, w);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(3)} > ${tol}`);
  return e;
}

function isTensor(x: unknown): x is NativeTensor {
  return typeof x === 'object' && x !== null && 'device' in x && 'dtype' in x && 'read' in x;
}
