#!/usr/bin/env bash
# Runs on the GPU host inside the carried .gpu-bundle: Nsight Compute on
# the estimator kernels at 128K and on the attention kernel at 8K (dense
# and the 10% random mask), for the analysis in bench/NOTES.md.  Logs come
# back as $OUT/ncu-*.txt.
#   bash .gpu-bundle/gpu_profile.sh [all|estimate-sass|attention-sass [SEQ] [dense]]
# estimate-sass: only prism_estimate at 128K, warp-state and source
# counters, plus the per-SASS-instruction stall samples as CSV
# ($OUT/ncu-estimate-sass.csv) to map against nvdisasm of the same cubin.
# attention-sass: the same for prism_attention (8K, 10% mask by default).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/prism-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PRISM_CACHE_DIR=/tmp/prism-cache
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
cfg="$here/configs/llama-3.1-8b.yaml"
if [ "${1:-all}" = attention-sass ]; then
  # prism_attention at SEQ (default 8192) on the 10% random mask, or dense
  # with a third argument "dense" (launches: 3 on Prism's mask, 3 in
  # prefill, 3 dense, then the density), with the per-SASS-instruction
  # stall samples ($OUT/ncu-attention-sass.csv)
  seq=${2:-8192}; skip=9
  [ "${3:-sparse}" = dense ] && skip=6
  timeout 300 "$ncu" --clock-control none --section SpeedOfLight \
    --section WarpStateStats --section SourceCounters --section LaunchStats \
    --kernel-name prism_attention --launch-skip $skip --launch-count 1 \
    --import-source no -o /tmp/att "$here/bin/prism" bench "$cfg" --seq "$seq" \
    --reps 1 --density 0.1 --workload mixed > "$out/ncu-attention-sass.txt" 2>&1
  echo "profile: exit $?"
  "$ncu" -i /tmp/att.ncu-rep --print-details all >> "$out/ncu-attention-sass.txt" 2>&1
  "$ncu" -i /tmp/att.ncu-rep --page source --print-source sass --csv \
    > "$out/ncu-attention-sass.csv" 2>&1
  grep -E "Duration|Grid Size|Warp Cycles|Issued" "$out/ncu-attention-sass.txt" | head
  exit 0
fi
if [ "${1:-all}" = estimate-sass ]; then
  timeout 300 "$ncu" --clock-control none --section SpeedOfLight \
    --section WarpStateStats --section SourceCounters --section InstructionStats \
    --section Occupancy --kernel-name prism_estimate --launch-count 1 \
    --import-source no -o /tmp/est "$here/bin/prism" bench "$cfg" --seq 131072 \
    --reps 1 --density 0.2 --workload mixed > "$out/ncu-estimate-sass.txt" 2>&1
  echo "profile: exit $?"
  "$ncu" -i /tmp/est.ncu-rep --print-details all >> "$out/ncu-estimate-sass.txt" 2>&1
  "$ncu" -i /tmp/est.ncu-rep --page source --print-source sass --csv \
    > "$out/ncu-estimate-sass.csv" 2>&1
  ls -la "$out"; tail -60 "$out/ncu-estimate-sass.txt"
  exit 0
fi
# estimator: the first pool_stats, calibrate and estimate launches
timeout 200 "$ncu" --clock-control none --section SpeedOfLight \
  --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy \
  --kernel-name regex:'prism_(pool_stats|calibrate|estimate)' --launch-count 3 \
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
