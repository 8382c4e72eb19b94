// The native surface under random and hostile arguments on the cpu (test/fuzz-native.ts): every op
// returns or throws a typed error, leaks no tensor, and the process keeps working.
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { fuzzOp, fuzzedOps } from './fuzz-native.js';
import { RUN_SEED } from './helpers.js';

const RUNS = Number(process.env.VITRIM_FUZZ_RUNS ?? 300);

describe('fuzzing the native surface (cpu)', () => {
  for (const [k, op] of fuzzedOps().entries()) {
    it(op, () => {
      const live = native.memory().find((m) => m.device === 'cpu')!.liveTensors;
      const s = fuzzOp(op, ['cpu'], RUNS, RUN_SEED + k);
      expect(s.calls + s.skipped).toBe(RUNS);
      expect(native.memory().find((m) => m.device === 'cpu')!.liveTensors).toBe(live);
      if (process.env.VITRIM_FUZZ_STATS) console.log(op, JSON.stringify(s));
      const x = native.fromArray(new Float32Array([1, 2]), [2], 'float32'); // still working
      const y = native.affine(x, 2, 1);
      expect(Array.from(y.read())).toEqual([3, 5]);
      x.free();
      y.free();
    });
  }
});
