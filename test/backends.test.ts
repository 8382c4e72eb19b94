// Backends and devices as seen without a GPU (CI): the CPU backend always serves, the CUDA entry says
// why it is unavailable, a request for cuda fails with a typed error naming those reasons, and the
// process keeps working. Where a GPU is visible, test/cuda/ covers the other side.
import { describe, expect, it } from 'vitest';
import { ArgumentError, backends, ops, setAllowTf32, setDeviceChecks, setNumThreads, tensor } from '../lib/index.js';
import { native } from '../lib/native.js';
import { RUN_SEED, expectCode, nt, randn } from './helpers.js';

describe('backends', () => {
  const list = native.backends();

  it('lists cpu (available) and cuda (with reasons when not)', () => {
    expect(list.map((b) => b.device)).toEqual(['cpu', 'cuda']);
    expect(list[0]).toMatchObject({ device: 'cpu', available: true });
    const cuda = list[1];
    if (cuda.available) {
      expect(cuda.detail.length).toBeGreaterThan(0);
    } else {
      expect(cuda.reasons.length).toBeGreaterThan(0);
      for (const r of cuda.reasons) expect(r.length).toBeGreaterThan(10);
    }
    // Asking again gives the same answer (the library is loaded or refused once).
    expect(native.backends()).toEqual(list);
  });

  it('toDevice("cpu") returns a new tensor with the same values', () => {
    const a = nt(randn([3, 5], RUN_SEED + 1), [3, 5]);
    const b = native.toDevice(a, 'cpu');
    expect(b.device).toBe('cpu');
    expect(b.sameStorage(a)).toBe(false);
    expect(Array.from(b.read())).toEqual(Array.from(a.read()));
    b.write(new Float32Array(15).fill(2));
    expect((a.read() as Float32Array)[0]).not.toBe(2);
  });

  it('rejects unknown devices and disposed tensors with typed errors', () => {
    const a = nt(randn([4], RUN_SEED + 2), [4]);
    expectCode(() => native.toDevice(a, 'tpu' as 'cpu'), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.full([2], 1, 'float32', 'gpu' as 'cpu'), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.random([2], 'uniform', 1, 0, 'xla' as 'cpu'), 'ERR_VITRIM_DEVICE');
    const d = nt(randn([4], RUN_SEED + 3), [4]);
    d.free();
    expectCode(() => native.toDevice(d, 'cpu'), 'ERR_VITRIM_DISPOSED');
    expect(native.toDevice(a, 'cpu').shape).toEqual([4]);
  });

  it.skipIf(list[1].available)('without cuda: every way to reach it fails with the reasons, then cpu work goes on', () => {
    const a = nt(randn([2, 3], RUN_SEED + 4), [2, 3]);
    const msg = expectCode(() => native.toDevice(a, 'cuda'), 'ERR_VITRIM_DEVICE');
    expect(msg).toContain('cuda backend is not available');
    expect(msg).toContain(list[1].reasons[0]);
    expectCode(() => native.full([2], 0, 'float32', 'cuda'), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.random([2], 'normal', 1, 0, 'cuda'), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.setAllowTf32(true), 'ERR_VITRIM_DEVICE');
    native.synchronize('cuda'); // nothing loaded: a no-op, not an error
    expect(native.memory().map((m) => m.device)).toEqual(['cpu']);
    const y = native.affine(a, 2, 0);
    expect(Array.from(y.read())).toEqual(Array.from(a.read() as Float32Array, (v) => 2 * v));
  });

  it('synchronizeAsync: resolves on the cpu (and on cuda before it loads); a bad device throws a typed error', async () => {
    await expect(native.synchronizeAsync('cpu')).resolves.toBeUndefined();
    if (!list[1].available) await expect(native.synchronizeAsync()).resolves.toBeUndefined();
    expectCode(() => native.synchronizeAsync('tpu' as 'cpu'), 'ERR_VITRIM_DEVICE');
    const { synchronizeAsync, DeviceError, tensor } = await import('../lib/index.js');
    await expect(synchronizeAsync('tpu' as 'cpu')).rejects.toBeInstanceOf(DeviceError);
    await synchronizeAsync('cpu');
    const t = tensor(randn([2, 3], RUN_SEED + 5), [2, 3]);
    expect(Array.from((await t.data()) as Float32Array)).toEqual(Array.from(t.dataSync() as Float32Array));
  });

  it('setNumThreads / setAllowTf32 / setDeviceChecks: bad values are ArgumentErrors; threads take effect', () => {
    const before = backends()[0].threads!;
    for (const v of [0, -1, 257, 1.5, Number.NaN, '2', null]) {
      expect(() => setNumThreads(v as never), String(v)).toThrow(ArgumentError);
      expect(() => setNumThreads(v as never), String(v)).toThrow(/setNumThreads: n must be/);
    }
    expect(backends()[0].threads).toBe(before);
    try {
      setNumThreads(1);
      expect(backends()[0].threads).toBe(1);
      const [a, b] = [tensor(randn([197, 384], RUN_SEED), [197, 384]), tensor(randn([384, 160], RUN_SEED + 1), [384, 160])];
      const one = ops.matmul(a, b).dataSync();
      setNumThreads(3);
      expect(backends()[0].threads).toBe(3);
      const three = ops.matmul(a, b).dataSync();
      // the CPU GEMM splits the rows / columns of C across threads, never K: the bits do not change
      expect(Array.from(three)).toEqual(Array.from(one));
    } finally {
      setNumThreads(before);
    }
    for (const v of ['yes', 1, null]) expect(() => setAllowTf32(v as never)).toThrow(/setAllowTf32: allow must be a boolean/);
    expect(() => setDeviceChecks('lazy' as never)).toThrow(ArgumentError);
    expect(() => setDeviceChecks('lazy' as never)).toThrow(/setDeviceChecks: mode must be 'immediate' or 'deferred'/);
  });

  it('full and random default to the cpu and accept it by name', () => {
    expect(native.full([2], 3, 'float32').device).toBe('cpu');
    expect(Array.from(native.full([2], 3, 'float32', 'cpu').read())).toEqual([3, 3]);
    const r1 = native.random([5], 'uniform', 7, 0).read();
    const r2 = native.random([5], 'uniform', 7, 0, 'cpu').read();
    expect(Array.from(r2)).toEqual(Array.from(r1));
  });
});

describe('graphs without cuda', () => {
  it.skipIf(native.backends()[1].available)('graph calls need the cuda backend; abort/destroy are harmless no-ops', () => {
    expectCode(() => native.graphBegin(), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.graphEnd(), 'ERR_VITRIM_DEVICE');
    expectCode(() => native.graphReplay(1), 'ERR_VITRIM_DEVICE');
    native.graphAbort();
    native.graphDestroy(1);
  });
});
