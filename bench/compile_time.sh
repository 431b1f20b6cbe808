#!/usr/bin/env bash
# Cold compile cost of the shipped configs on this machine (no GPU needed).
#
#   bash bench/compile_time.sh [CONFIG...]    (default configs/*.yaml)
#
# For each config and each arch of $ARCHS (default "sm_90a sm_80"),
# `prism compile CONFIG --arch A` runs $REPS times (default 3), each time
# against an empty cache directory, so every kernel goes through NVRTC
# and the time includes the process's start and loading NVRTC: what a
# host pays for its first plan of that config.  The table gives the
# fastest run's wall time and the CPU time (user + system, all threads)
# of that run, and the 1-minute load average before the row: on a
# machine busy with other work the wall time grows with the load and the
# CPU time much less, so compare CPU times between runs taken at
# different loads.  The last line sums each column.
#
# With PRISM_BASE set to another prism binary (an older build), each row
# also times it, run for run alternating with PRISM, so that both see the
# same load: a before/after table.
#
# Environment: PRISM (binary, default build/prism), PRISM_BASE, ARCHS,
# REPS; `prism compile --verbose` splits one compile into NVRTC's phases.
set -euo pipefail
cd "$(dirname "$0")/.."
prism=${PRISM:-build/prism}
base=${PRISM_BASE:-}
[ -x "$prism" ] || { echo "compile_time: build prism first (PRISM=...)" >&2; exit 1; }
[ -z "$base" ] || [ -x "$base" ] || { echo "compile_time: $base is not a program" >&2; exit 1; }
archs=(${ARCHS:-sm_90a sm_80})
reps=${REPS:-3}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(configs/*.yaml)
work=$(mktemp -d /tmp/prism-compile-time-XXXXXX)
trap 'rm -rf "$work"' EXIT

# One cold compile: prints "WALL CPU" in seconds.
cold() {
  local bin=$1 cfg=$2 arch=$3
  rm -rf "$work/cache" && mkdir -p "$work/cache"
  PRISM_CACHE_DIR="$work/cache" /usr/bin/time -f '%e %U %S' -o "$work/time" \
    "$bin" compile "$cfg" --arch "$arch" >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; exit 1; }
  awk '{ printf "%.2f %.2f\n", $1, $2 + $3 }' "$work/time"
}

# The fastest of a list of "WALL CPU" lines.
fastest() { sort -n | head -1; }

if [ -n "$base" ]; then
  printf '%-22s %-7s %9s %9s %9s %9s %6s\n' config arch base_wall base_cpu \
    wall_s cpu_s load
else
  printf '%-22s %-7s %9s %9s %6s\n' config arch wall_s cpu_s load
fi
sums="0 0 0 0"
for cfg in "${configs[@]}"; do
  for arch in "${archs[@]}"; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    : >"$work/new"
    : >"$work/old"
    for ((r = 0; r < reps; r++)); do
      [ -z "$base" ] || cold "$base" "$cfg" "$arch" >>"$work/old"
      cold "$prism" "$cfg" "$arch" >>"$work/new"
    done
    read -r wall cpu < <(fastest <"$work/new")
    name=$(basename "$cfg" .yaml)
    if [ -n "$base" ]; then
      read -r bwall bcpu < <(fastest <"$work/old")
      printf '%-22s %-7s %9.2f %9.2f %9.2f %9.2f %6s\n' "$name" "$arch" \
        "$bwall" "$bcpu" "$wall" "$cpu" "$load"
    else
      bwall=0 bcpu=0
      printf '%-22s %-7s %9.2f %9.2f %6s\n' "$name" "$arch" "$wall" "$cpu" \
        "$load"
    fi
    sums=$(echo "$sums" | awk -v a="$bwall" -v b="$bcpu" -v c="$wall" \
      -v d="$cpu" '{ print $1 + a, $2 + b, $3 + c, $4 + d }')
  done
done
read -r s1 s2 s3 s4 <<<"$sums"
if [ -n "$base" ]; then
  printf '%-22s %-7s %9.2f %9.2f %9.2f %9.2f\n' total "" "$s1" "$s2" "$s3" "$s4"
else
  printf '%-22s %-7s %9.2f %9.2f\n' total "" "$s3" "$s4"
fi
