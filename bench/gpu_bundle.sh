#!/usr/bin/env bash
# Bundles the GPU-host run: builds here, copies the binaries that run on the
# GPU host and the non-system shared libraries they need into .gpu-bundle/
# (rpath $ORIGIN/../lib), plus the configs and the scripts.  Copy
# .gpu-bundle to the GPU host and run bench/gpu_run.sh there.
#
#   bash bench/gpu_bundle.sh            # build + bundle
# then, on the GPU host, from the folder that holds .gpu-bundle:
#   bash .gpu-bundle/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
# A separate build without the LLVM CPU backend: libLLVM (105 MB) would
# make the bundle ten times larger, and the GPU host runs CUDA plans only.
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRISM_WERROR=ON \
      -DPRISM_WITH_LLVM=OFF -DCUDAToolkit_ROOT=/usr/local/cuda >/dev/null
cmake --build build-gpu -j "$(nproc 2>/dev/null || echo 2)" --target prism prism-autotune test_gpu test_gpu_paged test_autotune_cli
out=.gpu-bundle
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/configs" "$out/fixtures"
bins=(build-gpu/prism build-gpu/prism-autotune build-gpu/test_gpu \
      build-gpu/test_gpu_paged build-gpu/test_autotune_cli)
cp "${bins[@]}" "$out/bin/"
# Libraries the GPU host lacks (Criterion and its dependencies, libyaml,
# OpenSSL's libcrypto).  libnvrtc comes from the host's own CUDA 13, the
# driver from its NVIDIA install, glibc from its (newer) system.
skip='linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libgcc_s|libstdc\+\+|libnvrtc|libcuda'
for b in "${bins[@]}"; do
  ldd "$b" | awk '/=> \//{print $3}' | grep -Ev "$skip" || true
done | sort -u | while read -r lib; do cp -L "$lib" "$out/lib/"; done
command -v patchelf >/dev/null || apt-get install -y -qq patchelf >/dev/null
for b in "$out"/bin/*; do
  patchelf --set-rpath '$ORIGIN/../lib' "$b"
done
cp configs/*.yaml "$out/configs/"
cp tests/fixtures/*.qkv "$out/fixtures/"
cp bench/gpu_run.sh bench/gpu_profile.sh bench/gpu_ab.sh bench/sdpa_baseline.py \
   bench/rows_summary.py bench/real_check.py "$out/"
du -sh "$out"
