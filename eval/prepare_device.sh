#!/usr/bin/env bash
# Prepares everything the GPU machine needs for the model runner that it
# lacks, in one folder (default eval/device, ignored by git):
#   wheels/       gguf (and PyYAML, tqdm) for Python 3.12, pure downloads
#   parts/        the SmolLM2 GGUF split into parts of at most 45 MB
#                 (split -b 45M) with its sha256 in gguf.sha256
#   texts/        the evaluation texts exactly as extracted here
#   lib/          libprism.so built without the LLVM CPU backend (CUDA
#                 plans only) plus the non-system libraries it links
#                 (libyaml, libcrypto), rpath $ORIGIN; libnvrtc and the
#                 driver come from the GPU machine's CUDA install
# Then on the GPU machine: bash eval/device_unpack.sh [DIR] (see README).
#   bash eval/prepare_device.sh [DIR] [--no-lib]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=eval/device
nolib=0
for a in "$@"; do
  if [ "$a" = --no-lib ]; then nolib=1; else dest=$a; fi
done
py=${PYTHON:-python3}
rm -rf "$dest"
mkdir -p "$dest/wheels" "$dest/parts" "$dest/texts"

# gguf is pure Python; PyYAML is compiled, hence the platform.
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --implementation cp -d "$dest/wheels" gguf pyyaml tqdm

gguf_file=$($py -c 'from eval import model; print(model.find_gguf())')
(cd "$dest/parts" && split -b 45M -d -a 2 "$gguf_file" gguf.part-)
sha256sum "$gguf_file" | awk -v n="$(basename "$gguf_file")" '{print $1"  "n}' \
    > "$dest/parts/gguf.sha256"

$py -m eval.texts --write "$dest/texts" > "$dest/texts/SOURCES.txt"

if [ "$nolib" = 0 ]; then
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRISM_WERROR=ON \
        -DPRISM_WITH_LLVM=OFF -DPRISM_BUILD_TESTS=OFF \
        -DCUDAToolkit_ROOT=/usr/local/cuda >/dev/null
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target prism_shared >/dev/null
  mkdir -p "$dest/lib"
  so=$(readlink -f "$build/libprism.so")
  cp "$so" "$dest/lib/"
  (cd "$dest/lib" && ln -sf "$(basename "$so")" libprism.so.0 && ln -sf libprism.so.0 libprism.so)
  skip='linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libgcc_s|libstdc\+\+|libnvrtc|libcuda'
  ldd "$so" | awk '/=> \//{print $3}' | grep -Ev "$skip" | while read -r l; do
    cp -L "$l" "$dest/lib/"
  done
  command -v patchelf >/dev/null || apt-get install -y -qq patchelf >/dev/null
  patchelf --set-rpath '$ORIGIN' "$dest/lib/$(basename "$so")"
fi
du -ah "$dest" | sort -k2
