/**
 * bench/targets.ts: issue 4's targets judged on one bench run's rows. The rows here are made up to
 * sit on either side of each bound (they are no measurement); the test checks the judging, the
 * "not measured" cases and the command line.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkTargets, formatChecks, SPECS } from '../bench/targets.js';
import type { Row } from '../bench/run.js';

const run = (rows: Row[]) => ({ results: [{ bench: 'cuda-kernels', rows }] });
const byRow = (rows: Row[]) => new Map(checkTargets(run(rows)).map((c) => [c.row, c]));
const dir = mkdtempSync(join(tmpdir(), 'vitrim-targets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bench/targets', () => {
  it('judges time ratios (≤), speed ratios (≥), fractions of copy and absolute bounds on either side', () => {
    const c = byRow([
      { name: 'attention bfloat16 fwd', shape: '256x6x197x64', value: 0.08, unit: 'ms', compare: { name: 'torch sdpa', value: 0.1 } },
      { name: 'attention bfloat16 fwd', shape: '256x6x138x64', value: 0.081, unit: 'ms', compare: { name: 'torch sdpa', value: 0.1 } },
      { name: 'copy', shape: '67108864 f32', value: 2.8, unit: 'TB/s' },
      { name: 'layernorm bfloat16 fwd', shape: '50432x384', value: 2.1, unit: 'TB/s' },
      { name: 'infer bfloat16 eager', shape: 'B256', value: 27600, unit: 'img/s', compare: { name: 'timm', value: 18400 } },
      { name: 'infer float32 eager', shape: 'B256', value: 4700, unit: 'img/s', compare: { name: 'timm', value: 3980 } },
      { name: 'gather float32 (known bounds)', shape: '256x197x384->138', value: 2.2, unit: 'TB/s', compare: { name: 'torch', value: 1.7 } },
      { name: 'gather bfloat16 (known bounds)', shape: '256x197x384->138', value: 2.19, unit: 'TB/s' },
      { name: 'dispatch affine(x[1]) cuda', shape: '1', value: 5.01, unit: 'us' },
      // batch 1: every plan against timm's fp32 eager figure (the eager fp32 row's comparison)
      { name: 'infer float32 eager', shape: 'B1', value: 300, unit: 'img/s', compare: { name: 'timm fp32_img_s', value: 250 } },
      { name: 'infer float32 graph', shape: 'B1', value: 2000, unit: 'img/s', compare: { name: 'timm fp32_img_s', value: 250 } },
      { name: 'infer bfloat16 graph', shape: 'B1', value: 1900, unit: 'img/s', compare: { name: 'timm bf16_autocast_img_s', value: 200 } },
    ]);
    const at = (row: string) => c.get(row)!;
    expect(at('attention bfloat16 fwd 256x6x197x64')).toMatchObject({ met: true, measure: expect.closeTo(0.8, 12) });
    expect(at('attention bfloat16 fwd 256x6x138x64').met).toBe(false);
    expect(at('layernorm bfloat16 fwd 50432x384')).toMatchObject({ met: true, reference: 'copy: 2.80 TB/s' });
    expect(at('infer bfloat16 eager B256')).toMatchObject({ met: true, measure: expect.closeTo(1.5, 12) });
    expect(at('infer float32 eager B256')).toMatchObject({ met: false });
    expect(at('gather float32 (known bounds) 256x197x384->138')).toMatchObject({ met: true, measure: 2.2 });
    expect(at('gather bfloat16 (known bounds) 256x197x384->138').met).toBe(false);
    expect(at('dispatch affine(x[1]) cuda 1').met).toBe(false);
    expect(at('infer float32 graph B1')).toMatchObject({ met: true, measure: 8 });
    expect(at('infer bfloat16 graph B1')).toMatchObject({ met: false, measure: 7.6 }); // 9.5× its own comparison
    expect(at('infer bfloat16 graph B1').reference).toContain('of infer float32 eager B1');
  });

  it('a missing row, a row without its comparison, or copy missing is "not measured", never met', () => {
    const c = byRow([
      { name: 'attention float32 fwd', shape: '256x6x197x64', value: 0.3, unit: 'ms' },
      { name: 'layernorm bfloat16 fwd', shape: '50432x384', value: 2.5, unit: 'TB/s' },
      { name: 'infer bfloat16 eager', shape: 'B64', value: 1e9, unit: 'img/s', compare: { name: 'timm', value: 1 } },
    ]);
    expect(c.get('attention float32 fwd 256x6x197x64')).toMatchObject({ met: null, reference: 'no comparison in this run' });
    expect(c.get('layernorm bfloat16 fwd 50432x384')!.met).toBeNull();
    // a row of another shape does not stand in for the target's
    expect(c.get('infer bfloat16 eager B256')).toMatchObject({ met: null, value: 'not measured' });
    const all = checkTargets(run([]));
    expect(all.length).toBe(SPECS.length);
    expect(all.every((x) => x.met === null)).toBe(true);
    expect(formatChecks(all, false)).toContain(`0 of 0 measured checks met; ${SPECS.length} not measured`);
  });

  it('prints a Markdown table from a file; a missing or foreign file is a one-line error', () => {
    const f = join(dir, 'b.json');
    writeFileSync(f, JSON.stringify({ date: 'd', machine: { backends: [{ device: 'cuda', available: true, detail: 'GPU X' }] },
      ...run([{ name: 'train bfloat16', shape: 'B64', value: 3600, unit: 'img/s', compare: { name: 'timm', value: 3000 } }]) }));
    const cli = (...a: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'bench/targets.ts', ...a], { encoding: 'utf8' });
    const ok = cli(f, '--md');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain('GPU X');
    expect(ok.stdout).toContain('| DeiT-S train step bf16 B64 ≥ 1.2× timm | train bfloat16 B64 | 3600.0 img/s | timm: 3000.0 img/s | 1.20 | speed ratio ≥ 1.2 | yes |');
    expect(ok.stdout).toContain('1 of 1 measured checks met');
    const missing = cli(join(dir, 'nope.json'));
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/ENOENT/);
    writeFileSync(join(dir, 'x.json'), '{"rows": []}');
    const foreign = cli(join(dir, 'x.json'));
    expect(foreign.status).toBe(1);
    expect(foreign.stderr).toContain('not a bench JSON');
    expect(cli().status).toBe(2);
  });
});
