// The CUDA emulation's race check (native/cuda/emu/runtime.cpp, VITRIM_EMU_RACE: the stand-in for
// compute-sanitizer racecheck that scripts/test-cuda-emu.sh runs test/cuda under with
// VITRIM_CUDA_EMU=race) on its own test program, native/cuda/emu/race_selftest.cpp: kernels written
// to race (a missing __syncthreads before a read and before a write, threads writing one word, lanes
// of a warp ordered by a shuffle instead of a __syncwarp, two warps behind a __syncwarp, a global
// write collision, dynamic shared memory; between blocks of one launch, a read of what another block
// wrote, a write collision, a write after other blocks' reads, split-K's last-block sum without the
// writers' __threadfence) must each
// fail their launch naming the hazard, the kernel and the source lines; their corrected versions
// (the fenced last-block sum included), atomics and per-thread 2-byte halves of one word must not. Where the emulation is built (CI): the build folder has the target.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { emulated } from './helpers.js';

const configured = existsSync('build/CMakeCache.txt');

describe.skipIf(!emulated || !configured)('race check of the CUDA emulation', () => {
  it('reports each planted hazard with its kernel and lines, and nothing in the corrected kernels', () => {
    const build = spawnSync('cmake', ['--build', 'build', '--target', 'vitrim_emu_race_selftest'], { encoding: 'utf8' });
    expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
    const run = spawnSync('build/vitrim_emu_race_selftest', { encoding: 'utf8', env: { ...process.env, VITRIM_EMU_ORDER: 'random' } });
    const out = run.stdout;
    expect(out, run.stderr).toMatch(/^0 failed$/m);
    expect(run.status).toBe(0);
    const lines = out.trim().split('\n');
    // 22 cases, each "ok": the program checks each outcome; here, that they ran and said what they found
    expect(lines.filter((l) => l.startsWith('ok ')).length).toBe(22);
    const hazard = (name: string) => lines.find((l) => l.startsWith(`ok ${name}: `)) ?? '';
    expect(hazard('waw_shared')).toMatch(/write-after-write hazard in \(anonymous namespace\)::waw_shared\(float\*, bool\), block \(0,0,0\), static __shared__ memory at 0x[0-9a-f]+: thread \(\d+,0,0\) at race_selftest\.cpp:\d+ writes what thread \(\d+,0,0\) at race_selftest\.cpp:\d+ wrote/);
    expect(hazard('raw_dynamic')).toMatch(/dynamic shared memory byte \d+/);
    // the blocks run in a shuffled order: block 1's read before block 0's write is the same hazard
    expect(hazard('cross_raw')).toMatch(/(read-after-write|write-after-read) hazard between blocks in \(anonymous namespace\)::cross_raw\(float\*\), block \([01],0,0\), global memory at 0x[0-9a-f]+: thread \(\d+,0,0\) at race_selftest\.cpp:\d+ (reads|writes) what thread \(\d+,0,0\) of block \([01],0,0\) at race_selftest\.cpp:\d+ (wrote|read) in the same launch/);
    expect(hazard('last_block_sums unfenced')).toContain('hazard between blocks');
    for (const clean of ['raw_shared synced', 'war_shared synced', 'warp_shared __syncwarp', 'atomics', 'halves', 'waw_global distinct',
      'raw_shared synced 4 blocks', 'last_block_sums fenced'])
      expect(lines).toContain(`ok ${clean}`);
    // VITRIM_EMU_RACECHECK=0 turns the check off: every planted hazard then passes unseen, so the
    // program reports failures for the cases that expect one
    const off = spawnSync('build/vitrim_emu_race_selftest', { encoding: 'utf8', env: { ...process.env, VITRIM_EMU_RACECHECK: '0' } });
    expect(off.status).toBe(1);
    expect(off.stdout).toContain('FAIL raw_shared: wanted');
  }, 600_000);
});
