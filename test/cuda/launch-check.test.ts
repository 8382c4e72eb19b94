// scripts/launch-check.mjs end to end, under the CUDA emulation (where nvcc exists, as on CI): the
// emulation logs the softmax kernels' launches (VITRIM_EMU_LAUNCH_LOG), nvcc compiles softmax.cu
// and convert.cu (the bf16 cast), and every launch must fit the registers, threads and shared
// memory nvcc reports. Negative
// controls: the same log with one launch past __launch_bounds__ and the register file, one past
// the shared memory a block may have, and one naming no kernel, each fail the check. On a GPU the
// launches are checked by the GPU itself: skipped there.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { nt, randn } from '../helpers.js';
import { emulated, toCuda } from './helpers.js';

// The check's children (node, nvcc, nm) run without the AddressSanitizer runtime that
// `VITRIM_CUDA_EMU=asan scripts/test-cuda-emu.sh` preloads into this process: nvcc crashes under it.
const childEnv = { ...process.env };
delete childEnv.LD_PRELOAD;

const hasNvcc = spawnSync('nvcc', ['--version'], { env: childEnv }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'vitrim-launch-log-'));
const log = join(dir, 'launches.log');
// read by the emulation at its first launch in this process (a static), so set before any
process.env.VITRIM_EMU_LAUNCH_LOG = log;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Row { kernel: string; offset: string; block: number[]; dynamicSmem: number; regs: number; maxntid: number | null }
interface Report { rows: Row[]; problems: string[] }

function check(logFile: string): { status: number | null; out: string; report: Report | null } {
  const json = join(dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const p = spawnSync(process.execPath, ['scripts/launch-check.mjs', '--log', logFile, '--lib', process.env.VITRIM_CUDA_LIB!,
    '--sources', 'softmax.cu,convert.cu', '--json', json], { encoding: 'utf8', env: childEnv });
  let report: Report | null = null;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as Report;
  } catch {
    report = null;
  }
  return { status: p.status, out: `${p.stdout}${p.stderr}`, report };
}

describe.skipIf(!emulated || !hasNvcc)('launch-check (emulated launches vs nvcc resources)', () => {
  it('the softmax launches fit; a launch past a limit or of no known kernel fails the check', () => {
    // warp per row (16-byte and scalar access) and block per row, forward and backward, both dtypes
    for (const [shape, seed] of [[[4, 384], 1], [[3, 197], 2], [[2, 1500], 3]] as const) {
      for (const dtype of ['float32', 'bfloat16'] as const) {
        const x = native.cast(toCuda(nt(randn([...shape], seed), [...shape])), dtype);
        const y = native.softmaxForward(x, false);
        native.softmaxBackward(y, x, true).read();
      }
    }
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(6);

    const ok = check(log);
    expect(ok.out).toContain('every logged launch fits');
    expect(ok.status).toBe(0);
    const rows = ok.report!.rows;
    expect(rows.length).toBe(lines.length);
    expect(rows.some((r) => r.kernel.includes('cast_kernel<'))).toBe(true);
    expect(rows.some((r) => r.kernel.includes('softmax_fwd_warp<'))).toBe(true);
    expect(rows.some((r) => r.kernel.includes('softmax_bwd_block<'))).toBe(true);
    for (const r of rows) {
      expect(r.regs).toBeGreaterThan(0);
      if (r.kernel.includes('softmax_')) expect(r.maxntid).toBe(256); // __launch_bounds__(256) on each
    }

    // One log of three bad launches (the check reports every limit each launch breaks):
    // the softmax kernel with the most registers at 4x the threads its bounds allow; a launch
    // asking for more shared memory than a block may have; an offset that names no kernel.
    const big = rows.filter((r) => r.kernel.includes('softmax_')).reduce((a, b) => (b.regs > a.regs ? b : a));
    const bad = join(dir, 'bad.log');
    writeFileSync(bad, `${big.offset} 1024 1 1 0\n${rows[0].offset} 256 1 1 ${233 * 1024}\n1 256 1 1 0\n`);
    const b = check(bad);
    expect(b.status).toBe(1);
    // (the first launch breaks the register file too where its kernel takes over 64 registers)
    expect(b.out).toContain(`PROBLEMS: ${big.regs > 64 ? 4 : 3}`);
    expect(b.out).toContain('1024 threads > __launch_bounds__ 256');
    if (big.regs > 64) expect(b.out).toMatch(/registers × 1024 threads = \d+ > 65536/);
    expect(b.out).toMatch(/dynamic = \d+ B > 232448/);
    expect(b.out).toContain('names no symbol');
  }, 300_000);
});
