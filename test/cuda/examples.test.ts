// examples/gpu-inference.ts on cuda: every mode (eager float32 and bfloat16, both inference plans)
// runs and agrees with the CPU's float32 logits within the dtype's tolerance.
import { expect, it } from 'vitest';
import { RUN_SEED, runExample } from '../helpers.js';
import { TOL, describeCuda } from './helpers.js';

// End to end, through DeiT-tiny's 12 blocks, bf16's roundings compound: under the emulation both
// bf16 modes measured rel 7.9e-3 ± 0.8e-3 (max 9.7e-3 over 39 seeds) from the CPU's float32, so the
// per-op bound of 1e-2 failed in roughly one run of a few hundred. The whole model is held to 2e-2;
// every bf16 op is held to 1e-2 against the CPU in its own test. float32 keeps 1e-5 (measured ≤ 1e-6).
const MODEL_TOL: Record<'float32' | 'bfloat16', number> = { float32: TOL.float32, bfloat16: 2e-2 };

describeCuda('examples/gpu-inference.ts on cuda', () => {
  it('eager and planned, float32 and bfloat16, match the cpu', () => {
    const r = runExample('gpu-inference.ts', '--model', 'deit_tiny_patch16_224', '--img-size', '32', '--batch', '2', '--iters', '1', '--device', 'cuda', '--seed', String(RUN_SEED));
    expect(r.code, r.err).toBe(0);
    const modes = [...r.out.matchAll(/cuda (float32|bfloat16) (eager|plan)[^\n]*rel ([\d.e+-]+), same top-1 ([\d.]+) %/g)];
    expect(modes.map((m) => `${m[1]} ${m[2]}`)).toEqual(['float32 eager', 'bfloat16 eager', 'float32 plan', 'bfloat16 plan']);
    for (const m of modes) {
      expect(Number(m[3]), m[0]).toBeLessThanOrEqual(MODEL_TOL[m[1] as 'float32' | 'bfloat16']);
      expect(Number(m[3]), m[0]).toBeGreaterThan(0);
    }
  });
});
