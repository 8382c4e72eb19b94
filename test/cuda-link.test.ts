// The GPU library as a GPU machine would load it, checked on a machine without a GPU or cuBLASLt
// (CI). There the build links the same CUDA objects as libvitrim_cuda.so, with cudart_static, the
// export map and -Wl,--no-undefined, against a stand-in cuBLASLt (native/cuda/linkcheck/) into
// libvitrim_cuda_linkcheck.so. Loaded through the addon's own loader in a fresh process, it must get
// past dlopen (RTLD_NOW: every symbol resolved), the exported open function, the ABI and build-id
// checks, up to the driver check, and stop there with the driver's reason. Negative control: a
// library with an unresolved symbol is reported as not loadable, the failure this test exists to
// catch. Where cuBLASLt is installed the stand-in is not built and the real library is tested by
// test/cuda/ instead: skipped there.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const addon = process.env.VITRIM_ADDON ?? resolve('build/Release/vitrim.node');
const lib = join(dirname(addon), 'libvitrim_cuda_linkcheck.so');
const built = existsSync(addon) && existsSync(lib);
const hasTool = (cmd: string, args: string[]) => spawnSync(cmd, args).status === 0;

interface CudaEntry { device: string; available: boolean; reasons: string[] }

/** backends()'s cuda entry in a fresh process whose loader tries `libPath` first. */
function cudaEntry(libPath: string): CudaEntry {
  const script = 'const a = require(process.argv[1]); process.stdout.write(JSON.stringify(a.backends()[1]));';
  const env: NodeJS.ProcessEnv = { ...process.env, VITRIM_CUDA_LIB: libPath };
  delete env.VITRIM_DISABLE_CUDA;
  const p = spawnSync(process.execPath, ['-e', script, addon], { encoding: 'utf8', env });
  expect(p.status, `${p.stdout}${p.stderr}`).toBe(0);
  return JSON.parse(p.stdout) as CudaEntry;
}

describe.skipIf(!built)('libvitrim_cuda linked against a stand-in cuBLASLt (link check)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vitrim-link-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // binutils and a C compiler come with the toolchain that built the addon; skipped (not passed) without
  it.skipIf(!hasTool('nm', ['--version']))('exports only the open function', () => {
    const p = spawnSync('nm', ['-D', '--defined-only', lib], { encoding: 'utf8' });
    expect(p.status).toBe(0);
    const names = p.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).pop());
    expect(names).toEqual(['vitrim_cuda_open']);
  });

  it('loads with every symbol resolved and stops at the driver check, with its reason', () => {
    const cuda = cudaEntry(lib);
    expect(cuda.device).toBe('cuda');
    expect(cuda.available).toBe(false);
    const first = cuda.reasons[0];
    expect(first.startsWith(`${lib}: `), first).toBe(true);
    expect(first).not.toMatch(/cannot load|undefined symbol|does not export|built separately|ABI/);
    // no driver (CI); a driver without a GPU; or, on a GPU machine without cuBLASLt, the stand-in's refusal
    expect(first).toMatch(/cudaErrorInsufficientDriver|no CUDA GPU is visible|link-check stand-in/);
  });

  it.skipIf(!hasTool('cc', ['--version']))('negative control: a library with an unresolved symbol is reported as not loadable', () => {
    const src = join(dir, 'bad.c');
    const so = join(dir, 'libbad.so');
    writeFileSync(src, 'extern void vitrim_linkcheck_missing(void);\n'
      + 'void* vitrim_cuda_open(void) { vitrim_linkcheck_missing(); return 0; }\n');
    const cc = spawnSync('cc', ['-shared', '-fPIC', src, '-o', so], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    const cuda = cudaEntry(so);
    expect(cuda.available).toBe(false);
    expect(cuda.reasons[0]).toContain(`cannot load ${so}`);
    expect(cuda.reasons[0]).toContain('undefined symbol: vitrim_linkcheck_missing');
  });
});
