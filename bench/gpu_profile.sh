#!/usr/bin/env bash
# Runs on the GPU host inside the carried .gpu-bundle: Nsight Compute on
# the estimator kernels at 128K and on the attention kernel at 8K (dense
# and the 10% random mask), for the analysis in bench/NOTES.md.  Logs come
# back as $OUT/ncu-*.txt.
#   bash .gpu-bundle/gpu_profile.sh [all|estimate-sass]
# estimate-sass: only prism_estimate at 128K, warp-state and source
# counters, plus the per-SASS-instruction stall samples as CSV
# ($OUT/ncu-estimate-sass.csv) to map against nvdisasm of the same cubin.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/prism-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PRISM_CACHE_DIR=/tmp/prism-cache
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
cfg="$here/configs/llama-3.1-8b.yaml"
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
