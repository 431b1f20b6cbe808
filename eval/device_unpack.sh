#!/usr/bin/env bash
# On the GPU machine, in the repository root: reassembles the GGUF from the
# parts eval/prepare_device.sh made (checking its sha256), installs the
# carried wheels (gguf; PyYAML and tqdm only where missing) into DIR/site
# on PYTHONPATH, and sets and prints the
# environment the runner needs.  Source it to get the variables set:
#   source eval/device_unpack.sh [DIR]
set -euo pipefail
dir=${1:-eval/device}
py=${PYTHON:-python3}
read -r sum name < "$dir/parts/gguf.sha256"
if ! echo "$sum  $dir/$name" | sha256sum -c --status 2>/dev/null; then
  cat "$dir"/parts/gguf.part-* > "$dir/$name"
  echo "$sum  $dir/$name" | sha256sum -c --quiet
fi
# Into a folder of its own on PYTHONPATH: the system's site-packages may
# be read-only.  PyYAML and tqdm only where the machine lacks them.
abs=$(cd "$dir" && pwd)
site="$abs/site"
wheels=()
$py -c 'import gguf' 2>/dev/null || wheels+=("$abs"/wheels/gguf-*.whl)
$py -c 'import yaml' 2>/dev/null || wheels+=("$abs"/wheels/[Pp]y[Yy][Aa][Mm][Ll]-*.whl)
$py -c 'import tqdm' 2>/dev/null || wheels+=("$abs"/wheels/tqdm-*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "${wheels[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export SMOLLM2_GGUF="$abs/$name"
export PRISM_EVAL_TEXTS="$abs/texts"
[ -e "$abs/lib/libprism.so" ] && export PRISM_LIB="$abs/lib/libprism.so"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PRISM_CACHE_DIR=${PRISM_CACHE_DIR:-/tmp/prism-cache}
echo "SMOLLM2_GGUF=$SMOLLM2_GGUF"
echo "PRISM_EVAL_TEXTS=$PRISM_EVAL_TEXTS"
echo "PRISM_LIB=${PRISM_LIB:-<unset: build/libprism.so>}"
set +e +u +o pipefail
