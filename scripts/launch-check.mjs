#!/usr/bin/env node
// Launch-resource check for the CUDA backend, without a GPU.
//
// A GPU refuses a launch whose block needs more registers than an SM's register file holds, more
// threads than the kernel's __launch_bounds__ allow, or more shared memory (static + dynamic) than a
// block may have: "too many resources requested for launch", seen only on the GPU. The emulation
// (native/cuda/emu) runs every launch the tests make but knows none of these numbers; nvcc knows
// them but not the launches. This script joins the two:
//   1. the emulation, run with VITRIM_EMU_LAUNCH_LOG=<log>, wrote each distinct (kernel, block
//      shape, dynamic shared bytes) it launched, the kernel as its offset in the emulation library;
//   2. `nm` names those offsets; nvcc compiles native/cuda/*.cu for the target architecture with
//      `-Xptxas -v` (registers, static shared memory, spills per kernel) and keeps the PTX
//      (`.maxntid`, from __launch_bounds__); both names are demangled and matched;
//   3. every logged launch is checked against its kernel's limits; kernels nvcc compiled that no
//      launch used are listed (instantiations the tests never ran).
// Exit status 1 when a launch breaks a limit or cannot be matched to an nvcc kernel.
//
// Usage:
//   VITRIM_EMU_LAUNCH_LOG=/tmp/launches.log VITRIM_CUDA_LIB=$PWD/build/Release/libvitrim_cuda_emu.so \
//     npx vitest run --project vitrim test/cuda
//   node scripts/launch-check.mjs --log /tmp/launches.log [--lib build/Release/libvitrim_cuda_emu.so]
//     [--arch 90] [--json out.json] [--unlaunched] [--sources softmax.cu,topk.cu] [--jobs N]
// (--sources: compile only these files of native/cuda, for a log of their kernels only)
//
// Limits (compute capability 9.0, CUDA C++ Programming Guide, "Technical Specifications per Compute
// Capability"): 64 K 32-bit registers per block, allocated per warp in units of 256; 1024 threads
// per block; 48 KB of static shared memory; 227 KB of static + dynamic shared memory per block
// (dynamic above 48 KB only after cudaFuncSetAttribute, which the emulation already checks).
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const execFileAsync = promisify(execFile);

const LIMITS = {
  regsPerBlock: 65536,
  regAllocUnit: 256, // registers, per warp
  threadsPerBlock: 1024,
  staticSmem: 48 * 1024,
  smemPerBlock: 227 * 1024,
  // per SM, for the occupancy column
  regsPerSm: 65536,
  threadsPerSm: 2048,
  blocksPerSm: 32,
  smemPerSm: 228 * 1024,
  smemReservedPerBlock: 1024,
};

function parseArgs(argv) {
  const o = { log: null, lib: join(root, 'build/Release/libvitrim_cuda_emu.so'), arch: '90', json: null,
    unlaunched: false, jobs: Math.max(1, cpus().length), sources: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--log') o.log = val();
    else if (a === '--lib') o.lib = val();
    else if (a === '--arch') o.arch = val();
    else if (a === '--json') o.json = val();
    else if (a === '--jobs') o.jobs = Math.max(1, Number.parseInt(val(), 10) || 1);
    else if (a === '--unlaunched') o.unlaunched = true;
    else if (a === '--sources') o.sources = val().split(',').map((f) => f.trim()).filter(Boolean);
    else if (a === '-h' || a === '--help') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//'))
        .map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!o.log) throw new Error('--log <file> is required (the VITRIM_EMU_LAUNCH_LOG of an emulated test run)');
  if (!/^\d+$/.test(o.arch)) throw new Error(`--arch wants a number such as 90, not ${o.arch}`);
  return o;
}

// The ptxas report of one translation unit: per entry, registers, static shared bytes, spills.
export function parsePtxas(text) {
  const kernels = new Map();
  let cur = null;
  for (const line of text.split('\n')) {
    let m = line.match(/Compiling entry function '([^']+)'/);
    if (m) {
      cur = { mangled: m[1], regs: 0, smem: 0, spillStores: 0, spillLoads: 0, stack: 0, maxntid: null };
      kernels.set(cur.mangled, cur);
      continue;
    }
    if (!cur) continue;
    m = line.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/);
    if (m) {
      cur.stack = +m[1];
      cur.spillStores = +m[2];
      cur.spillLoads = +m[3];
      continue;
    }
    m = line.match(/Used (\d+) registers/);
    if (m) {
      cur.regs = +m[1];
      const s = line.match(/(\d+) bytes smem/);
      cur.smem = s ? +s[1] : 0;
    }
  }
  return kernels;
}

// `.maxntid x, y, z` of each `.entry` in a PTX file (absent: no __launch_bounds__).
export function parsePtxMaxntid(ptx) {
  const out = new Map();
  const re = /\.entry\s+([A-Za-z0-9_$.]+)\s*\(/g;
  let m;
  while ((m = re.exec(ptx))) {
    const body = ptx.indexOf('{', m.index);
    const head = ptx.slice(m.index, body < 0 ? undefined : body);
    const b = head.match(/\.maxntid\s+(\d+)\s*,\s*(\d+)\s*,\s*(\d+)/);
    out.set(m[1], b ? +b[1] * +b[2] * +b[3] : null);
  }
  return out;
}

function demangleAll(names) {
  if (names.length === 0) return new Map();
  const input = names.join('\n') + '\n';
  const out = execFileSync('c++filt', [], { input, maxBuffer: 1 << 28 }).toString().split('\n');
  return new Map(names.map((n, i) => [n, out[i]]));
}

// Registers a block of `threads` takes: per warp, regs × 32 rounded up to the allocation unit.
export function blockRegisters(regs, threads) {
  const warps = Math.ceil(threads / 32);
  const perWarp = Math.ceil((regs * 32) / LIMITS.regAllocUnit) * LIMITS.regAllocUnit;
  return warps * perWarp;
}

// Blocks of this launch an SM holds at once (0: it cannot run), and what limits them.
export function occupancy(k, launch) {
  const threads = launch.bx * launch.by * launch.bz;
  const byRegs = Math.floor(LIMITS.regsPerSm / Math.max(1, blockRegisters(k.regs, threads)));
  const bySmem = Math.floor(LIMITS.smemPerSm / (k.smem + launch.smem + LIMITS.smemReservedPerBlock));
  const byThreads = Math.floor(LIMITS.threadsPerSm / Math.ceil(threads / 32) / 32);
  const blocks = Math.min(byRegs, bySmem, byThreads, LIMITS.blocksPerSm);
  const by = blocks === byRegs ? 'registers' : blocks === bySmem ? 'shared memory' : blocks === byThreads ? 'threads' : 'blocks';
  return { blocks, warps: blocks * Math.ceil(threads / 32), by };
}

// The limits one launch breaks (empty: none).
export function checkLaunch(k, launch) {
  const threads = launch.bx * launch.by * launch.bz;
  const bad = [];
  if (threads > LIMITS.threadsPerBlock) bad.push(`${threads} threads > ${LIMITS.threadsPerBlock}`);
  if (k.maxntid != null && threads > k.maxntid) bad.push(`${threads} threads > __launch_bounds__ ${k.maxntid}`);
  const regs = blockRegisters(k.regs, threads);
  if (regs > LIMITS.regsPerBlock) bad.push(`${k.regs} registers × ${threads} threads = ${regs} > ${LIMITS.regsPerBlock}`);
  if (k.smem > LIMITS.staticSmem) bad.push(`static shared ${k.smem} B > ${LIMITS.staticSmem}`);
  if (k.smem + launch.smem > LIMITS.smemPerBlock) {
    bad.push(`shared ${k.smem} static + ${launch.smem} dynamic = ${k.smem + launch.smem} B > ${LIMITS.smemPerBlock}`);
  }
  return bad;
}

async function compileAll(arch, jobs, sources) {
  const nvcc = process.env.CUDACXX || 'nvcc';
  const srcDir = join(root, 'native/cuda');
  const all = readdirSync(srcDir).filter((f) => f.endsWith('.cu')).sort();
  for (const f of sources ?? []) if (!all.includes(f)) throw new Error(`--sources: native/cuda/${f} does not exist`);
  const files = sources ?? all;
  const work = mkdtempSync(join(tmpdir(), 'vitrim-launch-check-'));
  const kernels = new Map(); // mangled -> resources (+ file)
  try {
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++];
        const keep = join(work, basename(f, '.cu'));
        mkdirSync(keep, { recursive: true });
        // the flags of CMakeLists.txt's vitrim_cuda_objs (Release)
        const { stderr: err } = await execFileAsync(nvcc, ['-std=c++17', '-O3', `-arch=sm_${arch}`, '--expt-relaxed-constexpr',
          '-Xcompiler=-fno-math-errno', '-DNDEBUG', '-DVITRIM_BUILD_ID="launch-check"', `-I${join(root, 'native/include')}`,
          `-I${srcDir}`, '-Xptxas', '-v', '--keep', '--keep-dir', keep, '-c', join(srcDir, f), '-o', join(keep, 'k.o')],
          { maxBuffer: 1 << 28 });
        const res = parsePtxas(err);
        const ptx = readdirSync(keep).filter((p) => p.endsWith('.ptx'))
          .map((p) => readFileSync(join(keep, p), 'utf8')).join('\n');
        const bounds = parsePtxMaxntid(ptx);
        for (const [name, k] of res) {
          k.maxntid = bounds.get(name) ?? null;
          k.file = f;
          kernels.set(name, k);
        }
        process.stderr.write(`launch-check: ${f}: ${res.size} kernels\n`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, worker));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return kernels;
}

function readLog(path) {
  const launches = [];
  // each test worker logs its own distinct launches: the same line may come from several
  for (const line of new Set(readFileSync(path, 'utf8').split('\n').map((l) => l.trim()))) {
    const t = line.split(/\s+/);
    if (t.length !== 5 || !/^[0-9a-f]+$/.test(t[0])) continue;
    launches.push({ offset: Number.parseInt(t[0], 16), bx: +t[1], by: +t[2], bz: +t[3], smem: +t[4] });
  }
  return launches;
}

function libSymbols(lib) {
  const out = execFileSync('nm', ['--defined-only', lib], { maxBuffer: 1 << 28 }).toString();
  const byOffset = new Map();
  for (const line of out.split('\n')) {
    const m = line.match(/^([0-9a-f]+) [tTwW] (\S+)$/);
    if (m) byOffset.set(Number.parseInt(m[1], 16), m[2]);
  }
  return byOffset;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const launches = readLog(o.log);
  if (launches.length === 0) throw new Error(`${o.log} holds no launch (was VITRIM_EMU_LAUNCH_LOG set for the emulated run?)`);
  const syms = libSymbols(o.lib);
  const nv = await compileAll(o.arch, o.jobs, o.sources);
  const emuNames = [...new Set(launches.map((l) => syms.get(l.offset)).filter(Boolean))];
  const dm = demangleAll([...emuNames, ...nv.keys()]);
  // demangled name -> the nvcc kernels of that name (one per file that defines it)
  const nvByName = new Map();
  for (const [mangled, k] of nv) {
    const name = dm.get(mangled);
    k.name = name;
    if (!nvByName.has(name)) nvByName.set(name, []);
    nvByName.get(name).push(k);
  }
  const problems = [];
  const launched = new Set();
  const rows = [];
  for (const l of launches) {
    const sym = syms.get(l.offset);
    if (!sym) {
      problems.push(`launch at offset 0x${l.offset.toString(16)} names no symbol of ${o.lib} (a log from another build?)`);
      continue;
    }
    const name = dm.get(sym);
    const ks = nvByName.get(name);
    if (!ks) {
      problems.push(`${name}: launched under the emulation but nvcc compiled no kernel of that name`);
      continue;
    }
    // a name defined in two files (anonymous namespaces): the launch must fit both
    for (const k of ks) {
      launched.add(k);
      const bad = checkLaunch(k, l);
      rows.push({ kernel: name, file: k.file, offset: l.offset.toString(16), block: [l.bx, l.by, l.bz], dynamicSmem: l.smem, regs: k.regs,
        staticSmem: k.smem, maxntid: k.maxntid, blockRegisters: blockRegisters(k.regs, l.bx * l.by * l.bz),
        occupancy: occupancy(k, l), problems: bad });
      for (const b of bad) problems.push(`${name} (${k.file}) block (${l.bx},${l.by},${l.bz}) dyn ${l.smem} B: ${b}`);
    }
  }
  const unlaunched = [...nv.values()].filter((k) => !launched.has(k)).sort((a, b) => a.name.localeCompare(b.name));
  const spilling = [...nv.values()].filter((k) => k.spillStores > 0 || k.spillLoads > 0);
  // closest to a limit first: the margin that a change of tile or block size would eat
  const tight = rows.filter((r) => r.problems.length === 0)
    .sort((a, b) => b.blockRegisters / LIMITS.regsPerBlock - a.blockRegisters / LIMITS.regsPerBlock).slice(0, 8);
  console.log(`launch-check (sm_${o.arch}): ${launches.length} distinct launches of ${launched.size} kernels ` +
    `(${nv.size} compiled by nvcc in ${new Set([...nv.values()].map((k) => k.file)).size} files)`);
  console.log('fullest register files among the launches (registers a block takes / 65536):');
  for (const r of tight) {
    console.log(`  ${(100 * r.blockRegisters / LIMITS.regsPerBlock).toFixed(0).padStart(3)} %  ${r.regs} regs × ` +
      `${r.block[0] * r.block[1] * r.block[2]} threads, shared ${r.staticSmem}+${r.dynamicSmem} B  ${r.kernel}`);
  }
  // the fewest resident warps per SM: where latency hiding rests on instruction-level parallelism
  const lean = rows.filter((r) => r.problems.length === 0).sort((a, b) => a.occupancy.warps - b.occupancy.warps).slice(0, 12);
  console.log('lowest occupancy among the launches (resident warps per SM of 64, limited by):');
  for (const r of lean) {
    console.log(`  ${String(r.occupancy.warps).padStart(2)} warps (${r.occupancy.blocks} × ${r.block[0] * r.block[1] * r.block[2]} threads, ` +
      `${r.occupancy.by})  ${r.regs} regs, shared ${r.staticSmem}+${r.dynamicSmem} B  ${r.kernel}`);
  }
  console.log(`kernels that spill (ptxas): ${spilling.length}`);
  for (const k of spilling) console.log(`  ${k.spillStores} B stores / ${k.spillLoads} B loads, ${k.regs} regs  ${k.name}`);
  console.log(`kernels nvcc compiled that no logged launch used: ${unlaunched.length}` + (o.unlaunched ? '' : ' (--unlaunched lists them)'));
  if (o.unlaunched) for (const k of unlaunched) console.log(`  ${k.file}: ${k.name}`);
  if (o.json) {
    writeFileSync(o.json, JSON.stringify({ arch: o.arch, rows, problems,
      unlaunched: unlaunched.map((k) => ({ file: k.file, name: k.name })),
      spilling: spilling.map((k) => ({ file: k.file, name: k.name, regs: k.regs, spillStores: k.spillStores })) }, null, 1));
  }
  if (problems.length) {
    console.log(`PROBLEMS: ${problems.length}`);
    for (const p of problems) console.log(`  ${p}`);
    process.exit(1);
  }
  console.log('every logged launch fits its kernel\'s registers, threads and shared memory');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`launch-check: ${e.message}`);
    process.exit(2);
  });
}
