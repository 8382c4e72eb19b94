#!/usr/bin/env node
// `npm install` hook: use a prebuilt binary from prebuilds/<platform>-<arch>/ when one matches this
// platform and Node-API version; otherwise build from source with cmake-js against node-api-headers
// (package.json "binary.napi_versions"), which needs no download of Node headers.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
if (!process.env.VITRIM_BUILD_FROM_SOURCE) {
  try {
    const found = require('node-gyp-build').path(root);
    if (found.includes(`${path.sep}prebuilds${path.sep}`)) {
      console.log(`vitrim: using prebuilt ${path.relative(root, found)}`);
      process.exit(0);
    }
  } catch {
    /* no prebuilt or build: build below */
  }
}
// Installed as another project's dependency (this package sits in a node_modules folder): skip what
// only vitrim's own tests use (CMakeLists.txt's VITRIM_TEST_LIBS), unless the user chose.
const dependency = root.split(path.sep).includes('node_modules');
if (dependency && process.env.VITRIM_TEST_LIBS === undefined) {
  process.env.VITRIM_TEST_LIBS = '0';
  console.log('vitrim: installed as a dependency: building the addon and, where cuBLASLt is found, the CUDA backend (VITRIM_TEST_LIBS=1 builds the test libraries too)');
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const release = '--CDCMAKE_BUILD_TYPE=Release';
if (process.env.CMAKE_BUILD_PARALLEL_LEVEL === undefined) process.env.CMAKE_BUILD_PARALLEL_LEVEL = String(require('node:os').availableParallelism?.() ?? 2);
// What the addon's CUDA loader (native/core/backend_loader.cpp) reports when libvitrim_cuda.so is
// missing because its build failed here.
const cudaError = path.join(root, 'build', 'Release', 'cuda-build-error.txt');
fs.rmSync(cudaError, { force: true });
if (!dependency) {
  // vitrim's own checkout: everything, and any failure fails (CI must see a .cu that does not compile)
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', release], { cwd: root, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
// A user's install: the addon first (the CPU backend; its failure fails the install), then the rest
// (the CUDA backend where a CUDA compiler and cuBLASLt are found). A CUDA toolkit that cannot build
// it (too old, or a host compiler it does not support) leaves the CPU backend working: a warning
// here, and backends() says why cuda is unavailable.
const addon = spawnSync(process.execPath, [cmakeJs, 'compile', release, '--target', 'vitrim'], { cwd: root, stdio: 'inherit' });
if (addon.status !== 0) process.exit(addon.status ?? 1);
const rest = spawnSync(process.execPath, [cmakeJs, 'build', release], { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20 });
process.stdout.write(rest.stdout ?? '');
process.stderr.write(rest.stderr ?? '');
if (rest.status !== 0) {
  const out = `${rest.stdout ?? ''}\n${rest.stderr ?? ''}`;
  const first = out.split('\n').find((l) => /error:|fatal/i.test(l))?.trim() ?? `exit status ${rest.status}`;
  const why = `the CUDA backend did not build during npm install (${first.slice(0, 300)}); the CPU backend works. ` +
    'Set VITRIM_CUDA_FLAGS (extra nvcc flags, e.g. -allow-unsupported-compiler) or fix the CUDA toolkit, then `npm rebuild vitrim`';
  fs.mkdirSync(path.dirname(cudaError), { recursive: true });
  fs.writeFileSync(cudaError, `${why}\n`);
  console.warn(`vitrim: warning: ${why}`);
}
process.exit(0);
