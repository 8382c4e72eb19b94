import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

// Two projects:
// - 'vitrim': every test. test/cuda/ runs where the real CUDA backend loads (a GPU machine) and is
//   reported as skipped elsewhere.
// - 'cuda-emu': where no GPU is visible but build/Release/libvitrim_cuda_emu.so was built (the CUDA
//   emulation, native/cuda/emu: the build makes it wherever the CUDA headers exist and no GPU is
//   visible, as on CI), the CUDA tests run against the CPU emulation of the CUDA kernels: every
//   kernel's logic, launch configuration and error path, at emulation speed (tests shrink their
//   GPU-sized batches there: `emulated` in test/cuda/helpers.ts).
const emuLib = resolve('build/Release/libvitrim_cuda_emu.so');
// One input seed for the whole run, printed first, so a failure in any file can be replayed
// (VITRIM_TEST_SEED=<seed> npm test); each test file's process would otherwise read its own clock.
const seed = process.env.VITRIM_TEST_SEED ?? String(Date.now() % 1_000_000);
console.log(`vitrim tests: input seed ${seed} (VITRIM_TEST_SEED=${seed} repeats this run's inputs)`);

const base = {
  // Native addons and worker threads don't mix well; forks isolate each test file in a process.
  pool: 'forks' as const,
  // The fuzzers ask for valid but huge tensors (a scatter to 2^31 tokens: 17 GB); with two workers on
  // a small machine the kernel's OOM killer would end a worker. Tests need far less than 4 GiB.
  env: {
    VITRIM_CPU_MEMORY_LIMIT_MB: process.env.VITRIM_CPU_MEMORY_LIMIT_MB ?? '4096',
    VITRIM_TEST_SEED: seed,
    // the CUDA emulation's block / thread shuffle (VITRIM_EMU_ORDER=random) follows the same seed:
    // another run, other interleavings; the same seed, the same ones
    VITRIM_EMU_SEED: process.env.VITRIM_EMU_SEED ?? seed,
  },
  testTimeout: 120_000,
  hookTimeout: 120_000,
};

export default defineConfig({
  test: {
    // vitest's default is one worker less than the cores: on CI's 2 cores a single file at a time,
    // while most files (the emulated CUDA ones above all) keep one core busy. `--maxWorkers=N`
    // on the command line still sets it.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    projects: [
      { test: { ...base, name: 'vitrim', include: ['test/**/*.test.ts'] } },
      ...(existsSync(emuLib) && !process.env.VITRIM_CUDA_LIB
        ? [{
            test: {
              ...base,
              name: 'cuda-emu',
              include: ['test/cuda/**/*.test.ts'],
              // blocks and threads in a shuffled order between barriers (emu.h): a missing barrier,
              // or a result that depends on which block runs last, shows up here
              env: { ...base.env, VITRIM_CUDA_LIB: emuLib, VITRIM_EMU_ORDER: process.env.VITRIM_EMU_ORDER ?? 'random' },
              testTimeout: 600_000,
            },
          }]
        : []),
    ],
  },
});
