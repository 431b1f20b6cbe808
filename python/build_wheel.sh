#!/usr/bin/env bash
# Builds the prism-attn wheel into a folder, e.g. to carry it to a GPU host
# and install it there without a network:
#
#   bash python/build_wheel.sh OUTDIR
#   pip install --no-deps --no-index OUTDIR/prism_attn-*.whl   (on the host)
#
# Needs what .ci/setup installs (CMake, libyaml, OpenSSL, LLVM 14, CUDA 13
# with NVRTC) plus scikit-build-core (installed from PyPI when missing).
# The wheel is py3-none-linux_x86_64: libprism is loaded with ctypes, so it
# serves every CPython 3 and torch version.
set -euo pipefail
out=${1:?usage: build_wheel.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if ! "$python" -c "import scikit_build_core" 2>/dev/null; then
  "$python" -m pip install -q "scikit-build-core>=0.10"
fi
rm -f "$out"/prism_attn-*.whl
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$out" "$here"
wheel=$(ls "$out"/prism_attn-*.whl)
size=$(stat -c %s "$wheel")
echo "built $wheel ($((size / 1024 / 1024)) MB)"
"$python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = sorted(n for n in names if "/lib/" in n)
print("ships:", ", ".join(libs))
if "prism_attn/lib/libprism.so" not in names:
    sys.exit("the wheel has no libprism.so")
PY
