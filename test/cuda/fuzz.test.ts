// The native surface under random and hostile arguments on cuda (test/fuzz-native.ts): tensors on
// cuda (and, mixed in, on the cpu), so every cuda op's checks and kernels see empty and odd shapes,
// NaN / Inf data, out-of-range indices, disposed and wrong-device tensors. Every call returns or
// throws a typed error (deferred device-side checks included: outputs are read back), no tensor
// leaks on either device, and the device keeps working.
import { expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { diffOp, fuzzOp, fuzzedOps } from '../fuzz-native.js';
import { RUN_SEED } from '../helpers.js';
import { describeCuda } from './helpers.js';

const RUNS = Number(process.env.VITRIM_FUZZ_RUNS ?? 150);
const live = () => native.memory().map((m) => `${m.device}:${m.liveTensors}`).join(' ');

describeCuda('fuzzing the native surface (cuda)', () => {
  for (const [k, op] of fuzzedOps().entries()) {
    it(op, () => {
      const before = live();
      const s = fuzzOp(op, ['cuda', 'cpu'], RUNS, RUN_SEED + 1000 + k);
      if (process.env.VITRIM_FUZZ_STATS) console.log(op, JSON.stringify(s));
      expect(s.calls + s.skipped).toBe(RUNS);
      native.synchronize('cuda'); // no error left pending on the device
      expect(live()).toBe(before);
      const x = native.toDevice(native.fromArray(new Float32Array([1, 2]), [2], 'float32'), 'cuda');
      const y = native.affine(x, 2, 1);
      expect(Array.from(y.read())).toEqual([3, 5]);
      x.free();
      y.free();
    });
  }
});

// Differential: the same valid float32 call on cuda and on the cpu agrees (the cpu computes in
// float32 only; gemm is a cpu hook and toDevice moves between the two, so they are left out).
describeCuda('cuda and cpu agree on random valid calls', () => {
  for (const [k, op] of fuzzedOps().filter((o) => o !== 'gemm' && o !== 'toDevice').entries()) {
    it(op, () => {
      const s = diffOp(op, RUNS, RUN_SEED + 2000 + k);
      if (process.env.VITRIM_FUZZ_STATS) console.log('diff', op, JSON.stringify(s));
      expect(s.calls + s.skipped).toBe(RUNS);
    });
  }
});
