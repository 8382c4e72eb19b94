#!/usr/bin/env node
// `npm install` hook: use a prebuilt binary from prebuilds/<platform>-<arch>/ when one matches this
// platform and Node-API version; otherwise build from source with cmake-js against node-api-headers
// (package.json "binary.napi_versions"), which needs no download of Node headers.
const { spawnSync } = require('node:child_process');
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
if (process.env.VITRIM_TEST_LIBS === undefined && root.split(path.sep).includes('node_modules')) {
  process.env.VITRIM_TEST_LIBS = '0';
  console.log('vitrim: installed as a dependency: building the addon and, where cuBLASLt is found, the CUDA backend (VITRIM_TEST_LIBS=1 builds the test libraries too)');
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'];
if (process.env.CMAKE_BUILD_PARALLEL_LEVEL === undefined) process.env.CMAKE_BUILD_PARALLEL_LEVEL = String(require('node:os').availableParallelism?.() ?? 2);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
