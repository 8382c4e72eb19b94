#!/usr/bin/env bash
# The CPU addon under AddressSanitizer and UBSan: builds build-asan/Release/vitrim.node (the CPU
# backend only, VITRIM_SANITIZE=address) and runs vitest against it (VITRIM_ADDON), by default the
# fuzzers and the op tests. Arguments are vitest's (files, -t pattern). A memory error or undefined
# behaviour prints a report; abort_on_error=1 makes it fail the file.
#   bash scripts/test-cpu-asan.sh                    # fuzz + op tests
#   VITRIM_FUZZ_RUNS=2000 bash scripts/test-cpu-asan.sh test/fuzz.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile -O build-asan --CDCMAKE_BUILD_TYPE=Release --CDVITRIM_SANITIZE=address --CDVITRIM_CUDA=OFF --CDVITRIM_CUDA_EMU=0 >/dev/null
export VITRIM_ADDON="$PWD/build-asan/Release/vitrim.node" VITRIM_DISABLE_CUDA=1
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ $# -eq 0 ]; then
  set -- test/fuzz.test.ts test/fuzz-ops.test.ts test/fuzz-api.test.ts test/io-fuzz.test.ts test/elementwise.test.ts test/gemm.test.ts \
    test/attention.test.ts test/layernorm.test.ts test/softmax.test.ts test/reduce.test.ts test/layout.test.ts test/gather.test.ts \
    test/pack.test.ts test/loss.test.ts test/topk.test.ts test/sample.test.ts test/patch.test.ts test/optim.test.ts test/core.test.ts
fi
exec npx vitest run --project vitrim --maxWorkers=1 "$@"
