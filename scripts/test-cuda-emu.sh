#!/usr/bin/env bash
# Runs test/cuda on the CPU against the CUDA emulation (native/cuda/emu/emu.h): builds
# build/Release/libvitrim_cuda_emu.so (VITRIM_CUDA_EMU=asan: libvitrim_cuda_emu_asan.so, with
# AddressSanitizer; VITRIM_CUDA_EMU=race: libvitrim_cuda_emu_race.so, whose race check fails a launch
# at the first shared- or global-memory hazard between threads of a block, the stand-in for
# compute-sanitizer racecheck; see native/cuda/emu/runtime.cpp) and points the addon at it.
# VITRIM_LAUNCH_CHECK=1: afterwards, scripts/launch-check.mjs checks every launch the tests made
# against the registers, __launch_bounds__ and shared memory nvcc gives its kernel.
# VITRIM_EMU_ORDER=forward|reverse|random (default random) orders the blocks of a grid and the
# threads of a block between barriers; the shuffle follows VITRIM_EMU_SEED, which vitest.config.ts sets
# from the run's input seed (VITRIM_TEST_SEED, printed first) unless it is set.
# VITRIM_EMU_SMS=132: the emulated GPU has an H100's SM count instead of 4, so that the launch
# planning (tensor-core tiles, split-K, grid caps) takes the paths it takes there (slower).
# Usage: scripts/test-cuda-emu.sh [vitest args, e.g. test/cuda/layernorm.test.ts]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${VITRIM_CUDA_EMU:-1}
[ -f build/build.ninja ] || [ -f build/Makefile ] || npx cmake-js compile --CDCMAKE_BUILD_TYPE=Release 2>&1 | grep -E "error|vitrim:" || true
# Re-run CMake on the existing build folder (keeping its configuration) so that the emulation is on,
# then build the addon and the emulation library (the AddressSanitizer one for asan: a separate
# target, so the default library stays usable by `npm test`).
target=vitrim_cuda_emu
[ "$mode" = asan ] && target=vitrim_cuda_emu_asan
[ "$mode" = race ] && target=vitrim_cuda_emu_race
cmake build -DVITRIM_CUDA_EMU=1 > /dev/null
cmake --build build --target vitrim $target 2>&1 | grep -E "error|warning: " || true
lib="$PWD/build/Release/lib$target.so"
[ -f "$lib" ] || { echo "no $lib (are the CUDA headers installed?)"; exit 1; }
export VITRIM_CUDA_LIB="$lib"
# blocks and threads in a shuffled order (as the cuda-emu project of vitest.config.ts); forward: =forward
export VITRIM_EMU_ORDER=${VITRIM_EMU_ORDER:-random}
# the children the tests spawn (examples, the CLI) get the tests' own 30 minutes: under ASan or the
# race check an emulated example run takes several times the 5 minutes they have by default
export VITRIM_TEST_CHILD_TIMEOUT_MS=${VITRIM_TEST_CHILD_TIMEOUT_MS:-1800000}
if [ "$mode" = asan ]; then
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:allocator_may_return_null=1
fi
if [ $# -eq 0 ]; then set -- test/cuda; fi
if [ "${VITRIM_LAUNCH_CHECK:-0}" = 1 ]; then
  # Also log every distinct launch and check them against nvcc's registers, __launch_bounds__ and
  # shared memory per kernel (scripts/launch-check.mjs): the limits only a GPU enforces.
  log="$PWD/build/emu-launches.log"
  rm -f "$log"
  status=0
  VITRIM_EMU_LAUNCH_LOG="$log" npx vitest run --testTimeout=1800000 "$@" || status=$?
  node scripts/launch-check.mjs --log "$log" --lib "$lib" --json build/launch-check.json --unlaunched || status=$?
  exit $status
fi
exec npx vitest run --testTimeout=1800000 "$@"
