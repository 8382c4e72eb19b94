import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import { RUN_SEED, expectCode, nt, randn } from './helpers.js';

describe('native core', () => {
  it('round-trips data through fromArray/read and reshapes as a view', () => {
    const d = randn([3, 4], 1);
    const t = nt(d, [3, 4]);
    expect(t.shape).toEqual([3, 4]);
    expect(t.dtype).toBe('float32');
    expect(t.device).toBe('cpu');
    expect(Array.from(t.read())).toEqual(Array.from(d));
    const v = t.reshape([2, -1]);
    expect(v.shape).toEqual([2, 6]);
    expect(v.sameStorage(t)).toBe(true);
    t.free();
    expect(Array.from(v.read())).toEqual(Array.from(d)); // the view keeps the storage alive
    v.free();
  });

  it('casts float32 <-> bfloat16 <-> int32 with round-to-nearest-even', () => {
    const x = nt([1, 1.00390625, 1.01171875, -2.5, 3.9], [5]);
    const b = native.cast(x, 'bfloat16');
    // 1.00390625 is halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0
    expect(Array.from(native.cast(b, 'float32').read())).toEqual([1, 1, 1.015625, -2.5, 3.90625]);
    expect(Array.from(native.cast(x, 'int32').read())).toEqual([1, 1, 1, -2, 3]);
    expectCode(() => native.cast(nt([Number.NaN], [1]), 'int32'), 'ERR_VITRIM_ARGUMENT');
  });

  it('counts live tensors and bytes', () => {
    const before = native.memory()[0];
    const t = native.full([256, 256], 2, 'float32');
    const mid = native.memory()[0];
    expect(mid.liveTensors - before.liveTensors).toBe(1);
    expect(mid.bytesInUse - before.bytesInUse).toBe(256 * 256 * 4);
    t.free();
    t.free(); // idempotent
    expect(native.memory()[0].bytesInUse).toBe(before.bytesInUse);
  });

  it('turns bad input into typed errors and keeps working', () => {
    expectCode(() => native.fromArray(new Float32Array(3), [2, 2], 'float32'), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.fromArray(new Float32Array(4), [2, 2], 'int32'), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.fromArray(new Float32Array(4), [2, -2], 'float32'), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.full([1 << 30, 1 << 30, 4], 0, 'float32'), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.full([2], 0, 'float64' as never), 'ERR_VITRIM_DTYPE');
    expectCode(() => native.full([2.5], 0, 'float32'), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.cast({} as never, 'float32'), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.copy(null as never), 'ERR_VITRIM_ARGUMENT');
    const t = nt([1, 2], [2]);
    t.free();
    expectCode(() => t.read(), 'ERR_VITRIM_DISPOSED');
    expectCode(() => native.copy(t), 'ERR_VITRIM_DISPOSED');
    expectCode(() => nt([1, 2], [2]).reshape([3]), 'ERR_VITRIM_SHAPE');
    expectCode(() => nt([1, 2], [2]).reshape([1e9, 1e9, 1e9]), 'ERR_VITRIM_SHAPE'); // no int64 overflow on the way (UBSan)
    expectCode(() => nt([1, 2], [2]).write(new Float32Array(3)), 'ERR_VITRIM_SHAPE');
    expectCode(() => native.setNumThreads(0), 'ERR_VITRIM_ARGUMENT');
    expect(Array.from(native.copy(nt([5, 6], [2])).read())).toEqual([5, 6]);
  });

  it('write() from another tensor: same dtype and element count, any shape; bad sources are typed errors', () => {
    const data = randn([2, 6], RUN_SEED + 31);
    const src = nt(data, [2, 6]);
    const dst = nt(randn([3, 4], RUN_SEED + 32), [3, 4]);
    dst.write(src);
    expect(Array.from(dst.read())).toEqual(Array.from(data));
    src.write(new Float32Array(12).fill(7)); // a copy, not a view: dst keeps the old values
    expect(Array.from(dst.read())).toEqual(Array.from(data));
    dst.write(dst); // onto itself: nothing changes
    expect(Array.from(dst.read())).toEqual(Array.from(data));
    const ints = native.fromArray(Int32Array.from([3, -1, 4, 1]), [4], 'int32');
    const idst = native.fromArray(new Int32Array(4), [2, 2], 'int32');
    idst.write(ints);
    expect(Array.from(idst.read())).toEqual([3, -1, 4, 1]);
    expectCode(() => dst.write(nt(randn([11], RUN_SEED + 33), [11])), 'ERR_VITRIM_SHAPE');
    expectCode(() => dst.write(native.cast(src, 'bfloat16')), 'ERR_VITRIM_DTYPE');
    expectCode(() => idst.write(nt([1, 2, 3, 4], [4])), 'ERR_VITRIM_DTYPE');
    const gone = nt(randn([12], RUN_SEED + 34), [12]);
    gone.free();
    expectCode(() => dst.write(gone), 'ERR_VITRIM_DISPOSED');
    expectCode(() => dst.write({} as never), 'ERR_VITRIM_ARGUMENT');
    expect(Array.from(dst.read())).toEqual(Array.from(data)); // untouched by the refused writes
  });

  it('reports build and machine info', () => {
    const i = native.info();
    expect(i.threads).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'generic']).toContain(i.isa);
  });
});

describe('cpu memory limit', () => {
  it('a request past VITRIM_CPU_MEMORY_LIMIT_MB is a MemoryError naming it; the process keeps working', () => {
    const script = `
      const a = require('node-gyp-build')(process.argv[1]);
      const out = [];
      const x = a.full([8 << 20], 1, 'float32');             // 32 MiB: fits
      try { a.full([8 << 20], 1, 'float32'); out.push('second fit'); } catch (e) { out.push(e.code, e.message); }
      x.free();
      const y = a.full([8 << 20], 2, 'float32');             // fits again once the first is freed
      out.push(String(y.read()[123]));
      console.log(JSON.stringify(out));`;
    const root = join(__dirname, '..');
    const r = spawnSync(process.execPath, ['-e', script, root], {
      cwd: root, encoding: 'utf8', env: { ...process.env, VITRIM_CPU_MEMORY_LIMIT_MB: '48' },
    });
    expect(r.status, r.stderr).toBe(0);
    const [code, msg, after] = JSON.parse(r.stdout) as string[];
    expect(code).toBe('ERR_VITRIM_MEMORY');
    expect(msg).toMatch(/allocating 33554432 bytes on cpu would put 67108864 bytes in use, over the limit of 50331648/);
    expect(after).toBe('2');
  });

  // No addon (a dependency's install script skipped, as npm 12 does unless allowScripts names it):
  // importing vitrim fails with an error that says what to run, not a bare MODULE_NOT_FOUND.
  it('says how to build or allow the addon when it cannot be loaded', () => {
    const root = join(__dirname, '..');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', "await import('./lib/native.ts')"], {
      cwd: root, encoding: 'utf8', env: { ...process.env, VITRIM_ADDON: join(root, 'no-such-dir', 'vitrim.node') },
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/vitrim: the native addon could not be loaded \(Cannot find module .*no-such-dir/);
    expect(r.stderr).toMatch(/npm install-scripts approve vitrim`, then `npm rebuild vitrim`/);
    expect(r.stderr).toMatch(/pnpm approve-builds`, then `pnpm rebuild vitrim`/);
  });
});
