#!/usr/bin/env bash
# The per-layer fidelity sweep (sweep.py) on the GPU machine, one process
# per text in parallel, after the folder of eval/prepare_device.sh has been
# carried there.  Each run is saved as it finishes (the JSON resumes), so a
# sweep cut short still returns what it measured.  Results: $OUT (or
# eval/out)/sweep-TEXT.json and .log.
#   bash eval/device_sweep.sh DIR SPECS_FILE [TEXT...] [-- extra sweep args]
# SPECS_FILE holds one setting spec per line (settings.py; '#' comments).
set -uo pipefail
cd "$(dirname "$0")/.."
dir=$1 specs_file=$2; shift 2
texts=() extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; extra=("$@"); break; fi
  texts+=("$1"); shift
done
[ ${#texts[@]} -gt 0 ] || texts=(pyref gpl3)
out=${OUT:-eval/out}
mkdir -p "$out"
source eval/device_unpack.sh "$dir" >/dev/null || exit 1
mapfile -t specs < <(grep -v '^\s*\(#\|$\)' "$specs_file")
for t in "${texts[@]}"; do
  python3 -m eval.sweep --device "${DEVICE:-cuda}" --max-tokens 8192 --text "$t" \
      --out "$out/sweep-$t.json" --settings "${specs[@]}" "${extra[@]}" \
      > "$out/sweep-$t.log" 2>&1 &
done
wait
tail -n 40 "$out"/sweep-*.log
