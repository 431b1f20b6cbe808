#!/usr/bin/env bash
# Runs on the GPU host inside the carried .gpu-bundle: the GPU test suite,
# the autotuner (its GPU test, then a short tuning run whose closing table
# is default vs tuned), then `prism bench` at the given lengths on the mixed
# workload with PyTorch SDPA (flash, cuDNN) timed on identical shapes in the
# same call.  Logs go to $OUT; bench/collect.py turns them into results.
#   bash .gpu-bundle/gpu_run.sh [all|tests|autotune|bench] [SEQ...]
# Environment: TUNE_BUDGET (seconds, default 150), BENCH_WORKLOAD (mixed).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Logs are written to a work folder and come back as one tarball (the device
# tool returns at most 8 files), plus the few files bench/collect.py reads.
final=${OUT:-/tmp/prism-out}
out=/tmp/prism-run
rm -rf "$out"; mkdir -p "$out" "$final"
finish() {
  tar -C "$out" -czf "$final/logs.tgz" .
  cp "$out"/gpu.txt "$out"/sdpa.json "$final/" 2>/dev/null
  for f in "$out"/prism-*.json; do [ -e "$f" ] && cp "$f" "$final/"; done
}
trap finish EXIT
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PRISM_CACHE_DIR=/tmp/prism-cache
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
mode=${1:-all}; shift || true
seqs=("$@"); [ ${#seqs[@]} -gt 0 ] || seqs=(8192 32768 131072)
status=0
if [ "$mode" = all ] || [ "$mode" = tests ]; then
  echo "== GPU tests"
  "$here/bin/test_gpu" --verbose=1 --jobs 1 2>&1 | tee "$out/test_gpu.log" | tail -40
  status=${PIPESTATUS[0]}
fi
if [ "$mode" = all ] || [ "$mode" = tests ]; then
  echo "== compute-sanitizer on a small case (memcheck, racecheck)"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    "$cs" --tool $tool --error-exitcode 9 "$here/bin/prism" run \
      "$here/configs/smollm2-135m.yaml" --device gpu --seq 640 --sq 512 \
      > "$out/sanitizer-$tool.log" 2>&1
    rc=$?
    echo "$tool: exit $rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tool.log" | tail -1)"
    [ $rc -eq 0 ] || status=1
  done
  echo "== prism run --device gpu (llama-3.1-8b, mixed workload, 4K)"
  "$here/bin/prism" run "$here/configs/llama-3.1-8b.yaml" --device gpu --seq 4096 2>&1 | tee "$out/run-gpu.log"
fi
if [ "$mode" = all ] || [ "$mode" = autotune ]; then
  echo "== autotune GPU test"
  PRISM_TEST_CLI="$here/bin/prism" PRISM_TEST_SOURCE_DIR="$here" \
    PRISM_TUNE_DIR=/tmp/prism-tune-test \
    "$here/bin/test_autotune_cli" --verbose=1 --jobs 1 \
    --filter 'autotune_cli/tunes_on_the_gpu*' 2>&1 | tee "$out/test_autotune.log" | tail -15
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  echo "== prism autotune (budget ${TUNE_BUDGET:-150} s)"
  "$here/bin/prism-autotune" "$here/configs/llama-3.1-8b.yaml" \
    --seq "${seqs[@]}" --budget "${TUNE_BUDGET:-150}" 2>&1 | tee "$out/autotune.log" | tail -30
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [ "$mode" = all ] || [ "$mode" = bench ]; then
  echo "== prism bench (${BENCH_WORKLOAD:-mixed} workload)"
  for s in "${seqs[@]}"; do
    "$here/bin/prism" bench "$here/configs/llama-3.1-8b.yaml" --seq "$s" \
      --workload "${BENCH_WORKLOAD:-mixed}" \
      --json "$out/prism-$s.json" 2>&1 | tee -a "$out/bench.log"
  done
  echo "== PyTorch SDPA on the same shapes"
  python3 "$here/sdpa_baseline.py" --seq "${seqs[@]}" --json "$out/sdpa.json" 2>&1 | tee -a "$out/bench.log"
fi
exit $status
