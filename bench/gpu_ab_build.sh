#!/usr/bin/env bash
# One build of an A/B (bench/gpu_ab.sh): bundles the working tree
# (bench/gpu_bundle.sh, into .gpu-bundle) and keeps only its binaries in
# .gpu-bundle-NAME/bin.  The shared libraries, configs and scripts are
# the same for every build and come from .gpu-bundle, so an A/B copies
# .gpu-bundle (~12 MB) once plus ~3 MB a build instead of ~13 MB a build.
#
#   bash bench/gpu_ab_build.sh base      # on main
#   (change the tree) bash bench/gpu_ab_build.sh new
#   GPU host: bash .gpu-bundle/gpu_ab.sh "base new" "8192 1280:41" 3
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: gpu_ab_build.sh NAME}
bash bench/gpu_bundle.sh > /dev/null
rm -rf ".gpu-bundle-$name"
mkdir -p ".gpu-bundle-$name/bin"
cp .gpu-bundle/bin/prism .gpu-bundle/bin/test_gpu ".gpu-bundle-$name/bin/"
du -sh ".gpu-bundle-$name"
