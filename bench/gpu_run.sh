#!/usr/bin/env bash
# Runs on the GPU host inside the copied .gpu-bundle: the GPU test suite,
# the autotuner (its GPU test, then a short tuning run whose closing table
# is default vs tuned), then `prism bench` at the given lengths on the mixed
# workload with PyTorch SDPA (flash, cuDNN) timed on identical shapes in the
# same run.  Logs go to $OUT; bench/collect.py turns them into results.
#   bash .gpu-bundle/gpu_run.sh [all|MODE[,MODE...]] [SEQ...]
# MODE: tests, autotune, bench, rows (not in all: dense causal attention
# on B short sequences, Prism and SDPA, against row length; ROWS_SHAPES
# lists S:B pairs, bench/rows_summary.py prints the table), real (not in
# all: the GPU's selection and attention on the real q, k, v of
# tests/fixtures against the CPU reference, bench/real_check.py decides;
# REAL_CONFIGS, default "smollm2-135m smollm2-135m-fidelity"), paged (not
# in all: the paged K/V suite test_gpu_paged, compute-sanitizer on paged
# runs of both attention kernels, `prism bench --paged` A/B against
# contiguous K/V at 32K and 128K in NHD and HND pages, and the estimate of
# a 2K chunk over 8K, 32K and 128K prefixes with and without the pooled-key
# cache; PAGED_SIZE, default 128, the page size).  In $OUT:
# logs.tgz (every log and JSON), gpu.txt and sdpa.json.
# Environment: TUNE_BUDGET (seconds, default 150), BENCH_WORKLOAD (mixed),
# BENCH_ALT / BENCH_ALT_TAG (below), BENCH_CHUNK=0 skips the chunked-prefill
# shape, KEEP_GOING=1 goes on after failing GPU tests, SANITIZE_CONFIGS
# (default "smollm2-135m llama-3.1-8b") the configs compute-sanitizer runs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Logs are written to a work folder and packed into one tarball in $OUT,
# beside the few files bench/collect.py reads directly.
final=${OUT:-/tmp/prism-out}
out=/tmp/prism-run
rm -rf "$out"; mkdir -p "$out" "$final"
finish() {
  tar -C "$out" -czf "$final/logs.tgz" .
  cp "$out"/gpu.txt "$out"/sdpa.json "$final/" 2>/dev/null
}
trap finish EXIT
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PRISM_CACHE_DIR=/tmp/prism-cache
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
mode=${1:-all}; shift || true
[ "$mode" = all ] && mode=tests,autotune,bench
want() { [[ ",$mode," == *",$1,"* ]]; }
seqs=("$@"); [ ${#seqs[@]} -gt 0 ] || seqs=(8192 32768 131072)
status=0
if want tests; then
  echo "== GPU tests"
  timeout 300 "$here/bin/test_gpu" --verbose=1 --jobs 1 2>&1 | tee "$out/test_gpu.log" | tail -40
  status=${PIPESTATUS[0]}
  if [ "$status" != 0 ] && [ "${KEEP_GOING:-0}" != 1 ]; then
    echo "GPU tests failed: skipping the rest (KEEP_GOING=1 runs it anyway)"
    exit 1
  fi
fi
if want tests; then
  echo "== compute-sanitizer on a small case (memcheck, racecheck)"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  # smollm2 (block size 64) runs the mma.sync kernel, llama-3.1-8b the
  # wgmma/TMA kernel on sm_90a; llama's 32 heads x 8 query tiles = 256
  # work items, so CTAs of the persistent kernel take several each; and
  # 40 sequences x 32 heads x 2 query tiles = 2560 items, two rounds of
  # static items on 132 SMs (STATIC ROUNDS)
  for cfg in ${SANITIZE_CONFIGS:-smollm2-135m llama-3.1-8b}; do
    shapes=("--seq 640 --sq 512")
    [ $cfg = llama-3.1-8b ] && shapes=("--seq 1152 --sq 1024" "--seq 256 --batch 40")
    for shape in "${shapes[@]}"; do
      tag=$cfg; [[ $shape == *--batch* ]] && tag=$cfg-batch
      for tool in memcheck racecheck; do
        timeout 200 "$cs" --tool $tool --error-exitcode 9 "$here/bin/prism" run \
          "$here/configs/$cfg.yaml" --device gpu $shape \
          > "$out/sanitizer-$tag-$tool.log" 2>&1
        rc=$?
        echo "$tag $tool: exit $rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tag-$tool.log" | tail -1)"
        [ $rc -eq 0 ] || status=1
      done
    done
  done
  echo "== prism run --device gpu (llama-3.1-8b, mixed workload, 4K)"
  "$here/bin/prism" run "$here/configs/llama-3.1-8b.yaml" --device gpu --seq 4096 2>&1 | tee "$out/run-gpu.log"
fi
if want paged; then
  ps=${PAGED_SIZE:-128}
  echo "== paged K/V: GPU tests"
  timeout 600 "$here/bin/test_gpu_paged" --verbose=1 --jobs 1 2>&1 | tee "$out/test_gpu_paged.log" | tail -20
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  echo "== paged K/V: compute-sanitizer (memcheck, racecheck)"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for run in "smollm2-135m --seq 1152 --sq 512 --paged 128" \
             "llama-3.1-8b --seq 2304 --sq 1024 --paged 256 --layout hnd" \
             "llama-3.1-8b --seq 1280 --sq 256 --batch 3 --paged 128"; do
    cfg=${run%% *} args=${run#* }
    tag=$cfg-$(echo "$args" | tr -d ' -' | tr -c 'a-z0-9\n' '_')
    for tool in memcheck racecheck; do
      timeout 300 "$cs" --tool $tool --error-exitcode 9 "$here/bin/prism" bench \
        "$here/configs/$cfg.yaml" $args --pooled-cache --reps 1 --no-flush --density 0.2 \
        > "$out/sanitizer-paged-$tag-$tool.log" 2>&1
      rc=$?
      echo "$cfg $args $tool: exit $rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-paged-$tag-$tool.log" | tail -1)"
      [ $rc -eq 0 ] || status=1
    done
  done
  echo "== paged K/V: attention A/B (pages of $ps tokens, shuffled)"
  for s in 32768 131072; do
    for layout in nhd hnd; do
      timeout 300 "$here/bin/prism" bench "$here/configs/llama-3.1-8b.yaml" --seq "$s" \
        --workload "${BENCH_WORKLOAD:-mixed}" --paged "$ps" --layout $layout \
        --json "$out/paged-$s-$layout.json" 2>&1 | tee -a "$out/paged.log"
    done
  done
  echo "== paged K/V: a 2K chunk over a prefix, estimate with and without the pooled-key cache"
  for prefix in 8192 32768 131072; do
    timeout 300 "$here/bin/prism" bench "$here/configs/llama-3.1-8b.yaml" --sq 2048 \
      --seq $((prefix + 2048)) --workload "${BENCH_WORKLOAD:-mixed}" --paged "$ps" \
      --pooled-cache --density 0.1 --json "$out/paged-chunk-$prefix.json" 2>&1 | tee -a "$out/paged.log"
  done
fi
if want autotune; then
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
if want bench; then
  echo "== prism bench (${BENCH_WORKLOAD:-mixed} workload)"
  # the same config with other attention tunables, timed beside it: by
  # default the sm_80 kernel (mma.sync) forced, for the "sm_80 path when
  # forced on an H100" comparison (BENCH_ALT='{overlap: 1}' BENCH_ALT_TAG=
  # plain compares a wgmma variant instead; BENCH_ALT=none skips it)
  alt_tag=${BENCH_ALT_TAG:-sm80}
  alt="$out/llama-3.1-8b-$alt_tag.yaml"
  { cat "$here/configs/llama-3.1-8b.yaml"
    printf 'tuning:\n  attention: %s\n' "${BENCH_ALT:-{path: 1\}}"; } > "$alt"
  for s in "${seqs[@]}"; do
    timeout 240 "$here/bin/prism" bench "$here/configs/llama-3.1-8b.yaml" --seq "$s" \
      --workload "${BENCH_WORKLOAD:-mixed}" \
      --json "$out/prism-$s.json" 2>&1 | tee -a "$out/bench.log"
    if [ "${BENCH_ALT:-}" != none ]; then
      timeout 240 "$here/bin/prism" bench "$alt" --seq "$s" --reps 10 \
        --workload "${BENCH_WORKLOAD:-mixed}" \
        --json "$out/prism-$s-$alt_tag.json" 2>&1 | tee -a "$out/bench.log"
    fi
  done
  if [ "${BENCH_CHUNK:-1}" = 1 ]; then
    # A short query chunk over a long context on a tensor-parallel shard:
    # 4 query heads x 16 query tiles = 64 rows for 132 SMs, which the
    # persistent kernel's schedule splits (compare its TFLOP/s with the
    # full-head dense figure above)
    echo "== chunked prefill, llama-3.1-8b TP-8 shard (Hq=4, Hkv=1): Sq=2048, Sk=131072"
    shard="$out/llama-3.1-8b-tp8.yaml"
    sed -e 's/^  q_heads: 32/  q_heads: 4/' -e 's/^  kv_heads: 8/  kv_heads: 1/' \
        -e 's/^name: .*/name: llama-3.1-8b-tp8/' \
        "$here/configs/llama-3.1-8b.yaml" > "$shard"
    timeout 240 "$here/bin/prism" bench "$shard" --sq 2048 --seq 131072 \
      --workload "${BENCH_WORKLOAD:-mixed}" --json "$out/prism-chunk.json" 2>&1 | tee -a "$out/bench.log"
  fi
  echo "== PyTorch SDPA on the same shapes"
  python3 "$here/sdpa_baseline.py" --seq "${seqs[@]}" --json "$out/sdpa.json" 2>&1 | tee -a "$out/bench.log"
fi
if want rows; then
  # B = (8192 / S)^2: every shape the FLOPs of one causal 8K sequence
  echo "== short rows: dense causal attention on B sequences of S tokens"
  for sb in ${ROWS_SHAPES:-512:256 1024:64 1280:41 2048:16 4096:4 8192:1}; do
    s=${sb%:*} b=${sb#*:}
    timeout 240 "$here/bin/prism" bench "$here/configs/llama-3.1-8b.yaml" --seq "$s" \
      --batch "$b" --density 0.1 --json "$out/rows-prism-$s.json" 2>&1 | tee -a "$out/rows.log"
    python3 "$here/sdpa_baseline.py" --seq "$s" --batch "$b" \
      --json "$out/rows-sdpa-$s.json" 2>&1 | tee -a "$out/rows.log"
  done
  python3 "$here/rows_summary.py" "$out" 2>&1 | tee -a "$out/rows.log"
fi
if want real; then
  # Real activations (two SmolLM2-135M layers on the GPL-3 text): the GPU's
  # mask must be the reference's and its output the reference's on it
  echo "== real inputs: GPU selection and attention vs the reference"
  for cfg in ${REAL_CONFIGS:-smollm2-135m smollm2-135m-fidelity}; do
    timeout 300 "$here/bin/prism" run "$here/configs/$cfg.yaml" --device gpu \
      --input "$here/fixtures" 2>&1 | tee "$out/real-$cfg.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    timeout 300 "$here/bin/prism" run "$here/configs/$cfg.yaml" --device gpu \
      --input "$here/fixtures" --json > "$out/real-$cfg.json" 2>> "$out/real-$cfg.log"
    [ $? -eq 0 ] || status=1
    python3 "$here/real_check.py" "$out/real-$cfg.json" 2>&1 | tee -a "$out/real.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done
fi
exit $status
