#!/usr/bin/env bash
# The full evaluation on the GPU machine, in the repository root, after the
# folder of eval/prepare_device.sh has been carried there: unpack, validate
# the dense path, run every method and setting, plot.  Results go to $OUT
# (or eval/out): results.json, results.md, ppl_vs_density.png, validate.json,
# and the logs.
#   bash eval/device_run.sh [DIR] [extra run_eval arguments...]
# VALIDATE=0 skips the dense-path validation.  Without matplotlib there the
# PNG is left out: python3 -m eval.plot OUT/results.json makes it here.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${1:-eval/device}; shift || true
out=${OUT:-eval/out}
mkdir -p "$out"
source eval/device_unpack.sh "$dir" || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c 'import torch, tokenizers, gguf; print("torch", torch.__version__, "tokenizers", tokenizers.__version__, "gguf ok")'
if [ "${VALIDATE:-1}" != 0 ]; then
  python3 -m eval.validate_dense --device cuda --max-tokens 8192 --compare-tokens 1024 \
      --out "$out/validate.json" 2>&1 | grep -v -i "warn\|it/s\]" | tee "$out/validate.log"
fi
python3 -m eval.run_eval --device cuda --out "$out" --plot "$@" 2>&1 | tee "$out/run_eval.log"
status=${PIPESTATUS[0]}
exit "$status"
