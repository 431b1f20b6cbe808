#!/usr/bin/env bash
# CPU backend benchmark on this machine (no GPU needed).
#
#   bash bench/cpu_bench.sh [CONFIG]        (default configs/default.yaml)
#
# 1. For each length in $SEQS (default 8192 16384 32768), `prism run --json`
#    with the LLVM backend and, up to $REF_MAX, with --backend reference on
#    the same workload: Prism end to end (estimate + sparse attention) on
#    the backend against the reference's Prism and against dense attention
#    on the same backend (the full selection).
# 2. At $SWEEP_SEQ (default 16384), the thresholds of CONFIG swept over
#    $THRESHOLDS to show how the backend's attention time follows density:
#    time / (density * dense time) stays near 1 when the cost is the
#    selected blocks and nothing else.
#
# Environment: PRISM (binary, default build-cpu/prism, else build/prism),
# THREADS (default all CPUs), WORKLOAD (default mixed), REPS (default 3:
# backend stages report the fastest of REPS runs; the reference runs once,
# it takes minutes at 32K), OUT (a directory for the JSON results, default
# a temporary one).  The 1-minute load average before each run is printed
# next to its numbers: other processes on the machine inflate wall times.
# Needs python3 to read the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/default.yaml}
prism=${PRISM:-}
if [ -z "$prism" ]; then
  for p in build-cpu/prism build/prism; do [ -x "$p" ] && { prism=$p; break; }; done
fi
[ -n "$prism" ] || { echo "cpu_bench: build prism first (PRISM=...)" >&2; exit 1; }
seqs=(${SEQS:-8192 16384 32768})
ref_max=${REF_MAX:-32768}
sweep_seq=${SWEEP_SEQ:-16384}
thresholds=(${THRESHOLDS:-0.5 0.8 0.9 0.95 0.99})
workload=${WORKLOAD:-mixed}
reps=${REPS:-3}
out=${OUT:-$(mktemp -d /tmp/prism-cpu-bench-XXXXXX)}
mkdir -p "$out"
threads_opt=()
[ -n "${THREADS:-}" ] && threads_opt=(--threads "$THREADS")

run() { # NAME ARGS...: one prism run, JSON in $out/NAME.json, load in .load
  local name=$1; shift
  cut -d' ' -f1 /proc/loadavg > "$out/$name.load"
  "$prism" run "$@" --device cpu --workload "$workload" "${threads_opt[@]}" \
    --json > "$out/$name.json"
}

echo "cpu_bench: $config on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$(nproc) CPUs; results in $out"
for seq in "${seqs[@]}"; do
  echo "  seq $seq: llvm backend" >&2
  run "llvm-$seq" "$config" --seq "$seq" --reps "$reps"
  if [ "$seq" -le "$ref_max" ]; then
    echo "  seq $seq: reference" >&2
    run "ref-$seq" "$config" --seq "$seq" --backend reference
  fi
done

resolved=$("$prism" check "$config")
for t in "${thresholds[@]}"; do
  echo "  seq $sweep_seq: thresholds $t" >&2
  cfg="$out/sweep-$t.yaml"
  # both entries of the `thresholds:` mapping of the resolved config
  awk -v t="$t" '/^  thresholds:/ {n = 2; print; next}
                 n > 0 {sub(/[0-9.]+$/, t); n--} {print}' <<<"$resolved" > "$cfg"
  run "sweep-$t" "$cfg" --seq "$sweep_seq" --reps "$reps"
done

python3 - "$out" "$sweep_seq" "${seqs[@]}" -- "${thresholds[@]}" <<'EOF'
import json, os, sys
out, sweep_seq = sys.argv[1], sys.argv[2]
sep = sys.argv.index("--")
seqs, thresholds = sys.argv[3:sep], sys.argv[sep + 1:]

def load(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        r = json.load(f)
    return r, {m["method"]: m for m in r["methods"]}

def loadavg(name):
    path = os.path.join(out, name + ".load")
    return open(path).read().strip() if os.path.exists(path) else "-"

print()
print("Prism on the LLVM CPU backend vs the CPU reference and dense attention")
print("(ms; est = pooling + calibration + selection; prism = est + sparse attention)")
print()
print("| Sq=Sk | density | ref est | ref attn | ref prism | llvm est | llvm attn "
      "| llvm prism | llvm dense | vs ref | vs dense | attn / (density x dense) "
      "| load ref / llvm |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in seqs:
    got = load("llvm-" + s)
    if not got:
        continue
    run, m = got
    p, d = m["prism"], m["dense"]
    est = p["pool_ms"] + p["estimate_ms"]
    total = est + p["attention_ms"]
    ref = load("ref-" + s)
    if ref:
        rp = ref[1]["prism"]
        rest = rp["pool_ms"] + rp["estimate_ms"]
        rtotal = rest + rp["attention_ms"]
        rcols = f"{rest:.1f} | {rp['attention_ms']:.0f} | {rtotal:.0f}"
        vs_ref = f"{rtotal / total:.1f}x"
    else:
        rcols, vs_ref = "- | - | -", "-"
    print(f"| {s} | {p['density']:.3f} | {rcols} | {est:.1f} | "
          f"{p['attention_ms']:.0f} | {total:.0f} | {d['attention_ms']:.0f} | "
          f"{vs_ref} | {d['attention_ms'] / total:.1f}x | "
          f"{p['attention_ms'] / (p['density'] * d['attention_ms']):.2f} | "
          f"{loadavg('ref-' + s)} / {loadavg('llvm-' + s)} |")
print()
print(f"Density sweep at Sq=Sk={sweep_seq} (thresholds high = low = t)")
print()
print("| t | density | recall mean | attn ms | dense ms | attn / (density x dense) "
      "| speed-up vs dense (end to end) | load |")
print("|---|---|---|---|---|---|---|---|")
for t in thresholds:
    got = load("sweep-" + t)
    if not got:
        continue
    p, d = got[1]["prism"], got[1]["dense"]
    total = p["pool_ms"] + p["estimate_ms"] + p["attention_ms"]
    print(f"| {t} | {p['density']:.3f} | {p['recall_mean']:.3f} | "
          f"{p['attention_ms']:.0f} | {d['attention_ms']:.0f} | "
          f"{p['attention_ms'] / (p['density'] * d['attention_ms']):.2f} | "
          f"{d['attention_ms'] / total:.1f}x | {loadavg('sweep-' + t)} |")
first = load("llvm-" + seqs[0])
if first:
    r = first[0]
    print(f"\nconfig {r['config']}: D={r['head_dim']} Hq={r['q_heads']} "
          f"Hkv={r['kv_heads']} {r['dtype']} BS={r['block_size']}, workload "
          f"{r['workload']}, batch {r['batch']}, {r['threads']} threads; "
          f"backend times: fastest of {r.get('reps', 1)}")
EOF
