// vitrim installed the way a user installs it: `npm pack` (the package.json "files" list, the
// `prepare` build of dist/), then `npm install <tarball>` in a fresh project, whose install script
// builds the addon from source (scripts/install.cjs; no prebuilt binary ships). Then the consumer
// imports vitrim and runs a forward pass. As a dependency, the libraries only vitrim's own tests use
// (the CUDA emulation, the cuBLASLt link check) are not built (CMakeLists.txt's VITRIM_TEST_LIBS).
// No network where npm's cache holds the dependencies (this checkout's own install fills it;
// --prefer-offline). About 20 s on 2 cores, most of it the addon's compile.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const root = join(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'vitrim-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600_000 });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

// package.json's engines range holds no Node version that a runtime dependency refuses (cmake-js
// builds the addon at install; commander runs the CLI).
it("engines.node is within every runtime dependency's", () => {
  const semver = createRequire(__filename)('semver') as { subset(a: string, b: string): boolean };
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string }; dependencies: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies)) {
    const range = (JSON.parse(readFileSync(join(root, 'node_modules', dep, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines?.node;
    if (range) expect(semver.subset(pkg.engines.node, range), `${dep} needs node ${range}; ours says ${pkg.engines.node}`).toBe(true);
  }
});

// `npm pack` once for the tests below (it runs `prepare`: dist/ is rebuilt from lib/)
let packed: string | undefined;
function tarballPath(): string {
  if (packed) return packed;
  const pack = npm(['pack', '--pack-destination', dir, '--json'], root);
  expect(pack.code, pack.out).toBe(0);
  packed = join(dir, (JSON.parse(pack.out.slice(pack.out.indexOf('['), pack.out.lastIndexOf(']') + 1)) as { filename: string }[])[0].filename);
  expect(existsSync(packed)).toBe(true);
  return packed;
}

it('installs from its tarball into a fresh project, builds the addon there, and runs', () => {
  const tarball = tarballPath();

  const app = join(dir, 'app');
  const dep = join(app, 'node_modules', 'vitrim');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
  // VITRIM_TEST_LIBS unset: install.cjs decides by where it sits (in node_modules).
  const env = { VITRIM_TEST_LIBS: undefined, VITRIM_CUDA_EMU: undefined, VITRIM_BUILD_FROM_SOURCE: undefined };
  const inst = npm(['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], app, env);
  expect(inst.code, inst.out).toBe(0);
  expect(inst.out).toMatch(/vitrim: installed as a dependency/);
  const built = readdirSync(join(dep, 'build', 'Release'));
  expect(built).toContain('vitrim.node');
  expect(built.filter((f) => /emu|linkcheck|standin/.test(f)), built.join(', ')).toEqual([]);
  expect(existsSync(join(dep, 'test'))).toBe(false); // tests stay out of the package
  // the source and declaration maps point at TypeScript sources that ship (debuggers, go-to-definition)
  for (const map of ['dist/tensor.js.map', 'dist/tensor.d.ts.map']) {
    const { sources } = JSON.parse(readFileSync(join(dep, map), 'utf8')) as { sources: string[] };
    for (const src of sources) expect(existsSync(join(dep, 'dist', src)), `${map} -> ${src}`).toBe(true);
  }

  const script = `
    import * as v from 'vitrim';
    const m = v.vit.create({ imgSize: 16, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2, numClasses: 3 });
    const x = v.tensor(Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)), [2, 3, 16, 16]);
    const y = m.forward(x);
    console.log(JSON.stringify({ shape: y.shape, finite: Array.from(y.toArray()).every(Number.isFinite),
      cpu: v.backends().find((b) => b.device === 'cpu').available }));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: app, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  expect(JSON.parse(run.stdout)).toEqual({ shape: [2, 3], finite: true, cpu: true });
  // a TypeScript project type-checks against the shipped declarations (strict, no skipLibCheck; Node's
  // types from this checkout: the declarations name Buffer and Symbol.dispose)
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: {
    target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true,
    types: ['node'], typeRoots: [join(root, 'node_modules', '@types')] } }));
  writeFileSync(join(app, 'main.ts'), `
    import { vit, tensor, type VitConfig, type Tensor } from 'vitrim';
    const cfg: Partial<VitConfig> = { imgSize: 16, patchSize: 8, embedDim: 16, depth: 1, numHeads: 2, numClasses: 3 };
    const y: Tensor = vit.create(cfg).forward(tensor(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]));
    const n: readonly number[] = y.shape;
    // @ts-expect-error: a shape is not a string
    const bad: string = y.shape;
    console.log(n, bad);`);
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { encoding: 'utf8' });
  expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);

  // the package's bin, as `npx vitrim` finds it
  const cli = spawnSync(join(app, 'node_modules', '.bin', 'vitrim'), ['info'], { cwd: app, encoding: 'utf8' });
  expect(cli.status, cli.stderr).toBe(0);
  expect(cli.stdout).toMatch(/cpu/);
}, 900_000);

// A CUDA toolkit that cannot build the backend (too old, an unsupported host compiler) must not
// fail a user's install: the CPU addon is built first, the CUDA build's failure is a warning, and
// backends() says why cuda is unavailable. Simulated with an nvcc flag that does not exist
// (VITRIM_CUDA_FLAGS), on the CUDA objects that VITRIM_TEST_LIBS=1 builds even without cuBLASLt.
const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;
it.skipIf(!nvcc)('a CUDA build that fails at install leaves a working CPU install and says why', () => {
  const tarball = tarballPath();
  const app = join(dir, 'app-cuda-fails');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app2', version: '1.0.0', type: 'module', private: true }));
  const env = { VITRIM_TEST_LIBS: '1', VITRIM_CUDA_EMU: '0', VITRIM_CUDA_FLAGS: '--no-such-nvcc-flag', VITRIM_BUILD_FROM_SOURCE: undefined };
  const inst = npm(['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], app, env);
  expect(inst.code, inst.out).toBe(0);
  expect(inst.out).toMatch(/vitrim: warning: the CUDA backend did not build during npm install \(.*no-such-nvcc-flag/);
  const script = `
    import * as v from 'vitrim';
    const y = v.ops.add(v.tensor([1, 2]), v.tensor([3, 4]));
    console.log(JSON.stringify({ y: y.toArray(), cuda: v.backends().find((b) => b.device === 'cuda').reasons }));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: app, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  const r = JSON.parse(run.stdout) as { y: number[]; cuda: string[] };
  expect(r.y).toEqual([4, 6]);
  expect(r.cuda.join('\n')).toMatch(/the CUDA backend did not build during npm install .*VITRIM_CUDA_FLAGS.*npm rebuild vitrim/);
}, 900_000);
