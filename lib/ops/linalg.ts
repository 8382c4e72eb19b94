/**
 * matmul and linear (y = x Wᵀ + b, timm's nn.Linear layout W [out, in]). All three are autocast's
 * lower-precision ops: under autocast('bfloat16') their float32 cuda inputs (weights included) are
 * cast to bfloat16 differentiably and the result is bfloat16 (see autocast.ts).
 */
import { lowersOn, lowIn, promote, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { boolOpt, call, handleOf, optHandle, optsOf, out } from './_util.js';
import { add, gelu } from './elementwise.js';

/** [.., M, K] × [.., K, N] with optional transposes; b may be 2-D (shared across the batch). */
export function matmul(a0: Tensor, b0: Tensor, opts0: { transA?: boolean; transB?: boolean } | null = {}): Tensor {
  handleOf(a0, 'a', 'matmul');
  handleOf(b0, 'b', 'matmul');
  const opts = optsOf(opts0, 'matmul');
  const ta = boolOpt(opts.transA, false, 'transA', 'matmul');
  const tb = boolOpt(opts.transB, false, 'transB', 'matmul');
  const temps: Tensor[] = [];
  const [a, b] = promote([lowIn(a0, temps), lowIn(b0, temps)], temps);
  const ha = a.handle;
  const hb = b.handle;
  const y = out(call('matmul', () => native.matmul(ha, hb, ta, tb)));
  if (needsGrad(a, b)) {
    const sa = save(ha);
    const sb = save(hb);
    const batchAxes = a.shape.slice(0, -2).map((_, i) => i);
    const sharedB = b.rank === 2 && batchAxes.length > 0;
    record(y, 'matmul', [a, b], (g) => {
      // C = op(A)·op(B):  d op(A) = G·op(B)ᵀ,  d op(B) = op(A)ᵀ·G; then undo the transposes.
      const gopA = native.matmul(g, sb, false, !tb);
      let ga = gopA;
      if (ta) {
        const r = gopA.shape.length;
        const perm = gopA.shape.map((_, i) => i);
        [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
        ga = native.permute(gopA, perm);
        gopA.free();
      }
      const gbFull = tb ? native.matmul(g, sa, true, ta) : native.matmul(sa, g, !ta, false);
      if (!sharedB) return [ga, gbFull];
      const gb = native.reduce('sum', gbFull, batchAxes, false);
      gbFull.free();
      return [ga, gb];
    }, [sa, sb]);
  }
  release(temps); // after save(): disposing a cast frees its handle
  return y;
}

/** y = x Wᵀ + b over the last axis of x. */
export function linear(x0: Tensor, weight0: Tensor, bias0?: Tensor | null): Tensor {
  handleOf(x0, 'x', 'linear');
  handleOf(weight0, 'weight', 'linear');
  optHandle(bias0, 'bias', 'linear');
  const temps: Tensor[] = [];
  const x = lowIn(x0, temps);
  const weight = lowIn(weight0, temps);
  const bias = lowIn(bias0, temps);
  const hx = x.handle;
  const hw = weight.handle;
  const hb = bias ? bias.handle : null;
  const y = out(call('linear', () => native.linearForward(hx, hw, hb)));
  if (needsGrad(x, weight, bias)) {
    const sx = save(hx);
    const sw = save(hw);
    const needBias = !!bias && !!(bias.requiresGrad || bias.gradFn);
    record(y, 'linear', [x, weight, bias ?? null], (g) => native.linearBackward(g, sx, sw, needBias), [sx, sw]);
  }
  release(temps);
  return y;
}

/**
 * y = act(x Wᵀ + b) (+ residual): a linear layer with an optional GELU (exact erf) and residual add,
 * residual shaped like y. When no gradient is recorded (noGrad, or no input requires one) this is a
 * single fused native call: the activation and the add run in the GEMM's store, so y is written
 * once (the ViT inference path). Otherwise it is the recorded composition linear → gelu → add.
 * Under autocast('bfloat16') without gradient, a float32 residual makes y float32, formed in fp32
 * from the bf16 product in the GEMM's epilogue (never rounded to bfloat16: within one bf16
 * rounding of the recorded composition, which rounds the linear's output first).
 */
export function linearFused(
  x: Tensor, weight: Tensor, bias?: Tensor | null,
  opts0: { activation?: 'none' | 'gelu'; residual?: Tensor | null } | null = {},
): Tensor {
  const opts = optsOf(opts0, 'linearFused');
  const act = opts.activation ?? 'none';
  if (act !== 'none' && act !== 'gelu') throw new ArgumentError(`linearFused: activation must be 'none' or 'gelu', got ${String(act)}`);
  const residual = opts.residual ?? null;
  if (needsGrad(x, weight, bias, residual)) {
    const h = linear(x, weight, bias);
    const a = act === 'gelu' ? gelu(h) : h;
    if (a !== h) h.dispose();
    if (!residual) return a;
    const y = add(residual, a);
    a.dispose();
    return y;
  }
  handleOf(x, 'x', 'linearFused');
  handleOf(weight, 'weight', 'linearFused');
  optHandle(bias, 'bias', 'linearFused');
  optHandle(residual, 'residual', 'linearFused');
  if (lowersOn(x.device)) {
    // Autocast: the GEMM (and its GELU) in bfloat16 operands. A float32 residual (the residual stream)
    // rides in the GEMM as its float32 C: y = residual + x wᵀ + b accumulated in fp32 and rounded once
    // to float32 (eager autocast would round x wᵀ + b to bfloat16, then add in a second pass), with
    // the float32 bias as it is (no cast).
    const temps: Tensor[] = [];
    try {
      const xl = lowIn(x, temps);
      const wl = lowIn(weight, temps);
      const f32Res = residual !== null && residual.dtype === 'float32';
      const bl = f32Res ? bias : lowIn(bias, temps);
      const hr = residual ? residual.handle : null;
      return out(call('linearFused', () => native.linearFused(xl.handle, wl.handle, bl ? bl.handle : null, act, hr)));
    } finally {
      release(temps);
    }
  }
  const hx = x.handle;
  const hw = weight.handle;
  const hb = bias ? bias.handle : null;
  const hr = residual ? residual.handle : null;
  return out(call('linearFused', () => native.linearFused(hx, hw, hb, act, hr)));
}
