#!/usr/bin/env bash
# Everything the CUDA backend needs checked on a GPU machine, in one call (the machine starts cold and
# a session has 30 minutes of it). Run here first: `npm ci && ../shared/gpu/pack`, then with the
# device tool (carry [".gpu"]):
#   bash .gpu/remote.sh 'bash scripts/gpu-check.sh build,test,bench'
# Stages (comma separated, in this order): build, test (test/cuda), cpu (the whole suite there),
# sanitize (compute-sanitizer memcheck + racecheck over test/cuda), bench (torch_anchors.py and
# `npm run bench -- --filter cuda` in the same call, with ratios). Logs and JSON go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/vitrim-out}
mkdir -p "$OUT"
stages=",${1:-build,test,bench},"
has() { [[ $stages == *",$1,"* ]]; }
status=0
say() { echo "== $*"; }

if has build; then
  say "build ($(nproc) cores)"
  export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
  if ! npm run build > "$OUT/build.log" 2>&1; then tail -60 "$OUT/build.log"; echo "build failed"; exit 1; fi
  grep -E "vitrim:|warning" "$OUT/build.log" | head -20
  ls -la build/Release/
  node -e "const a=require('./build/Release/vitrim.node'); console.log(JSON.stringify(a.backends()))"
fi

if has test; then
  say "test/cuda"
  npx vitest run test/cuda --reporter=default --reporter=json --outputFile.json="$OUT/cuda-tests.json" \
    > "$OUT/cuda-tests.log" 2>&1 || status=1
  grep -E "✓|×|FAIL|Error|expected|Tests|Test Files" "$OUT/cuda-tests.log" | grep -v "^\s*$" | tail -80
fi

if has cpu; then
  say "whole suite"
  npx vitest run > "$OUT/all-tests.log" 2>&1 || status=1
  tail -8 "$OUT/all-tests.log"
fi

if has sanitize; then
  say "compute-sanitizer"
  san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    # One fork (vitest --pool=forks --maxWorkers=1) followed by the sanitizer into child processes.
    "$san" --tool "$tool" --target-processes all --error-exitcode 9 --print-limit 20 \
      npx vitest run test/cuda --pool=forks --maxWorkers=1 > "$OUT/sanitize-$tool.log" 2>&1
    rc=$?
    echo "$tool: exit $rc; $(grep -cE '^========= (Invalid|Race|Error)' "$OUT/sanitize-$tool.log") reports"
    grep -E "^========= " "$OUT/sanitize-$tool.log" | head -30
    [ $rc -eq 0 ] || status=1
  done
fi

if has bench; then
  say "bench: PyTorch and vitrim in the same call"
  python3 ../shared/gpu/torch_anchors.py --quick --json "$OUT/torch.json" > "$OUT/torch.log" 2>&1 || status=1
  tail -30 "$OUT/torch.log"
  VITRIM_TORCH_JSON="$OUT/torch.json" npm run bench -- --filter cuda --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | tail -60
fi
exit $status
