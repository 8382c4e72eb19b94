// examples/gpu-inference.ts on cuda: every mode (eager float32 and bfloat16, both inference plans)
// runs and agrees with the CPU's float32 logits within the dtype's tolerance.
import { expect, it } from 'vitest';
import { RUN_SEED, runExample } from '../helpers.js';
import { TOL, describeCuda } from './helpers.js';

describeCuda('examples/gpu-inference.ts on cuda', () => {
  it('eager and planned, float32 and bfloat16, match the cpu', () => {
    const r = runExample('gpu-inference.ts', '--model', 'deit_tiny_patch16_224', '--img-size', '32', '--batch', '2', '--iters', '1', '--device', 'cuda', '--seed', String(RUN_SEED));
    expect(r.code, r.err).toBe(0);
    const modes = [...r.out.matchAll(/cuda (float32|bfloat16) (eager|plan)[^\n]*rel ([\d.e+-]+), same top-1 ([\d.]+) %/g)];
    expect(modes.map((m) => `${m[1]} ${m[2]}`)).toEqual(['float32 eager', 'bfloat16 eager', 'float32 plan', 'bfloat16 plan']);
    for (const m of modes) {
      expect(Number(m[3]), m[0]).toBeLessThanOrEqual(TOL[m[1] as 'float32' | 'bfloat16']);
      expect(Number(m[3]), m[0]).toBeGreaterThan(0);
    }
  });
});
