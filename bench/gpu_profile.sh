#!/usr/bin/env bash
# Runs on the GPU host inside the copied .gpu-bundle: Nsight Compute on
# the estimator kernels at 128K and on the attention kernel at 8K (dense
# and the 10% random mask), for the analysis in docs/performance.md.  Logs
# are written as $OUT/ncu-*.txt.
#   bash .gpu-bundle/gpu_profile.sh [all|estimate [SEQ...]|estimate-sass
#                                    |attention-sass [SEQ] [dense]
#                                    |schedule-sass [SEQ]|rows [S B]]
# estimate: the estimator's kernels (pool_stats, estimate) and
# the queue kernel of the first prefill at each SEQ (default 8192 32768),
# launch shape and speed of light: $OUT/ncu-estimate-SEQ.txt.
# estimate-sass: only prism_estimate at 128K, warp-state and source
# counters, plus the per-SASS-instruction stall samples as CSV
# ($OUT/ncu-estimate-sass.csv) to map against nvdisasm of the same cubin.
# attention-sass: the same for prism_attention (8K, 10% mask by default);
# schedule-sass: for the work-queue kernel launched before it.
# rows: how the peers run short rows -- launch shape, occupancy and speed
# of light of SDPA's cuDNN and flash kernels and of prism_attention (dense)
# and its queue kernel on B causal sequences of S tokens (default 1280 x 41, gpu_run.sh's rows
# mode): $OUT/ncu-rows-S.txt.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/prism-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PRISM_CACHE_DIR=/tmp/prism-cache
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
cfg="$here/configs/llama-3.1-8b.yaml"
# One launch of KERNEL in `prism bench` (after SKIP launches) with the
# sections named, then its details as text and the per-SASS-instruction
# stall samples as CSV: $OUT/ncu-NAME-sass.txt and .csv.
#   sass_profile NAME KERNEL SKIP SEQ DENSITY SECTION...
sass_profile() {
  local name=$1 kernel=$2 skip=$3 seq=$4 density=$5 sections=()
  shift 5
  for s in "$@"; do sections+=(--section "$s"); done
  timeout 300 "$ncu" -f --clock-control none "${sections[@]}" \
    --kernel-name "$kernel" --launch-skip "$skip" --launch-count 1 \
    --import-source no -o "/tmp/$name" "$here/bin/prism" bench "$cfg" --seq "$seq" \
    --reps 1 --density "$density" --workload mixed > "$out/ncu-$name-sass.txt" 2>&1
  echo "profile: exit $?"
  "$ncu" -i "/tmp/$name.ncu-rep" --print-details all >> "$out/ncu-$name-sass.txt" 2>&1
  "$ncu" -i "/tmp/$name.ncu-rep" --page source --print-source sass --csv \
    > "$out/ncu-$name-sass.csv" 2>&1
}
if [ "${1:-all}" = attention-sass ]; then
  # prism_attention at SEQ (default 8192) on the 10% random mask, or dense
  # with a third argument "dense" (launches: 3 on Prism's mask, 3 in
  # prefill, 3 dense, then the density)
  skip=9
  [ "${3:-sparse}" = dense ] && skip=6
  sass_profile attention prism_attention $skip "${2:-8192}" 0.1 SpeedOfLight \
    WarpStateStats SourceCounters LaunchStats
  grep -E "Duration|Grid Size|Warp Cycles|Issued" "$out/ncu-attention-sass.txt" | head
  exit 0
fi
if [ "${1:-all}" = schedule-sass ]; then
  # prism_attention_schedule (the work queue) before the 10% random mask's
  # prism_attention at SEQ (default 8192): the same launch counts as above
  sass_profile schedule prism_attention_schedule 9 "${2:-8192}" 0.1 SpeedOfLight \
    WarpStateStats SourceCounters LaunchStats Occupancy
  grep -E "Duration|Elapsed Cycles|SM Frequency|Warp Cycles|Issued" "$out/ncu-schedule-sass.txt" | head
  exit 0
fi
if [ "${1:-all}" = rows ]; then
  s=${2:-1280} b=${3:-41} f="$out/ncu-rows-${2:-1280}.txt"
  : > "$f"
  for k in cudnn flash_fwd; do # the first launch of each backend
    timeout 200 "$ncu" --clock-control none --section SpeedOfLight --section LaunchStats \
      --section Occupancy --kernel-name regex:"$k" --launch-count 1 \
      python3 "$here/sdpa_baseline.py" --seq "$s" --batch "$b" --reps 2 --warmup 1 \
      --no-flush >> "$f" 2>&1
    echo "sdpa $k: exit $?"
  done
  # prism_attention (and the queue kernel before it) launches: 3 on
  # Prism's mask, 3 in prefill, then dense
  for k in prism_attention prism_attention_schedule; do
    timeout 200 "$ncu" --clock-control none --section SpeedOfLight --section LaunchStats \
      --section Occupancy --kernel-name "$k" --launch-skip 6 --launch-count 1 \
      "$here/bin/prism" bench "$cfg" --seq "$s" --batch "$b" --reps 1 --density 0.1 >> "$f" 2>&1
    echo "$k: exit $?"
  done
  grep -E "^  [a-z_]+.*\(|Duration|Grid Size|Block Size|Registers Per|Shared Memory Config|Dynamic Shared|Theoretical Occ|Achieved Occ|Waves Per|Compute \(SM\) Th" "$f"
  exit 0
fi
if [ "${1:-all}" = estimate ]; then
  shift
  seqs=("$@")
  [ ${#seqs[@]} -gt 0 ] || seqs=(8192 32768)
  for s in "${seqs[@]}"; do
    timeout 200 "$ncu" --clock-control none --section SpeedOfLight --section LaunchStats \
      --section Occupancy --kernel-name regex:'prism_(pool_stats|estimate|attention_schedule)' \
      --launch-count 8 "$here/bin/prism" bench "$cfg" --seq "$s" --reps 1 --density 0.1 \
      --workload mixed > "$out/ncu-estimate-$s.txt" 2>&1
    echo "estimate $s: exit $?"
    grep -E "^  prism_[a-z_]+|Duration|Grid Size|Block Size|Registers Per|Achieved Occ|Waves Per|Memory Throughput|DRAM Through" \
      "$out/ncu-estimate-$s.txt"
  done
  exit 0
fi
if [ "${1:-all}" = estimate-sass ]; then
  sass_profile estimate prism_estimate 0 131072 0.2 SpeedOfLight WarpStateStats \
    SourceCounters InstructionStats Occupancy
  ls -la "$out"; tail -60 "$out/ncu-estimate-sass.txt"
  exit 0
fi
# estimator: the first pool_stats and estimate launches
timeout 200 "$ncu" --clock-control none --section SpeedOfLight \
  --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy \
  --kernel-name regex:'prism_(pool_stats|estimate)' --launch-count 2 \
  "$here/bin/prism" bench "$cfg" --seq 131072 --reps 1 --density 0.2 \
  --workload mixed > "$out/ncu-estimate-128k.txt" 2>&1
echo "estimate: exit $?"
# attention launches in prism bench: 3 on Prism's mask, 3 in prefill, then
# 3 dense, then the first density: skip 6, profile dense (3) + 10% (1)
timeout 200 "$ncu" --clock-control none --section SpeedOfLight \
  --section ComputeWorkloadAnalysis --section LaunchStats --section Occupancy \
  --kernel-name prism_attention --launch-skip 6 --launch-count 4 \
  "$here/bin/prism" bench "$cfg" --seq 8192 --reps 1 --density 0.1 \
  --workload mixed > "$out/ncu-attention-8k.txt" 2>&1
echo "attention: exit $?"
grep -E "prism_|Duration|Throughput|Pipe|Achieved Occupancy|Waves" "$out"/ncu-*.txt | head -80
