#!/usr/bin/env bash
# Runs test/cuda on the CPU against the CUDA emulation (native/cuda/emu/emu.h): builds
# build/Release/libvitrim_cuda_emu.so (VITRIM_CUDA_EMU=asan for AddressSanitizer) and points the
# addon at it. VITRIM_EMU_ORDER=reverse|random runs each block's threads in another order. Usage: scripts/test-cuda-emu.sh [vitest args, e.g. test/cuda/layernorm.test.ts]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${VITRIM_CUDA_EMU:-1}
npx cmake-js compile --CDCMAKE_BUILD_TYPE=Release --CDVITRIM_CUDA_EMU="$mode" 2>&1 | grep -E "error|warning: |vitrim:" || true
lib="$PWD/build/Release/libvitrim_cuda_emu.so"
[ -f "$lib" ] || { echo "no $lib (are the CUDA headers installed?)"; exit 1; }
export VITRIM_CUDA_LIB="$lib"
if [ "$mode" = asan ]; then
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
fi
if [ $# -eq 0 ]; then set -- test/cuda; fi
exec npx vitest run --testTimeout=1800000 "$@"
