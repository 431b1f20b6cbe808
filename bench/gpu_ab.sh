#!/usr/bin/env bash
# A/B timing of several builds in one run on the GPU host: each build is
# .gpu-bundle-NAME (bench/gpu_ab_build.sh NAME: its binaries, with the
# libraries and configs of .gpu-bundle; or a whole bundle copied there),
# and all of them sit beside .gpu-bundle.  The builds run `prism bench` on
# llama-3.1-8b at each length in turn, round after round (A B C A B C
# ...), so clock and thermal drift hit every build alike.  Output:
# $OUT/ab.log.
#
#   build host: bash bench/gpu_ab_build.sh old; (change) bash bench/gpu_ab_build.sh new
#   GPU host:   bash .gpu-bundle/gpu_ab.sh "new old" "8192 32768" [ROUNDS]
#               (with .gpu-bundle, .gpu-bundle-new and .gpu-bundle-old copied)
# A length may be S:B, B sequences of S tokens (prism bench --batch).
# Environment: AB_DENSITY (default "0.1 0.2"), AB_REPS (default 20),
# AB_WORKLOAD (default mixed; gpu_run.sh's rows mode uses iid).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
names=($1)
seqs=(${2:-8192 32768})
rounds=${3:-2}
out=${OUT:-/tmp/prism-out}
mkdir -p "$out"
log="$out/ab.log"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$log"
density=()
for d in ${AB_DENSITY:-0.1 0.2}; do density+=(--density "$d"); done
for r in $(seq 1 "$rounds"); do
  for s in "${seqs[@]}"; do
    for n in "${names[@]}"; do
      b="$root/.gpu-bundle-$n" cfg="$root/.gpu-bundle-$n/configs/llama-3.1-8b.yaml"
      [ -f "$cfg" ] || cfg="$root/.gpu-bundle/configs/llama-3.1-8b.yaml"
      batch=1
      [[ $s == *:* ]] && batch=${s#*:}
      echo "### round $r, build $n, seq ${s%:*}, batch $batch" | tee -a "$log"
      LD_LIBRARY_PATH="$b/lib:$root/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" \
        PRISM_CACHE_DIR="/tmp/prism-cache-$n" \
        timeout 240 "$b/bin/prism" bench "$cfg" --seq "${s%:*}" \
        --batch "$batch" \
        --workload "${AB_WORKLOAD:-mixed}" --reps "${AB_REPS:-20}" "${density[@]}" 2>&1 | tee -a "$log"
    done
  done
done
