#!/usr/bin/env bash
# pkgconfig_static.sh BUILD_DIR SOURCE_DIR CC [CFLAGS...]
#
# A program linked against libprism.a with exactly the flags of
# `pkg-config --static --cflags --libs prism` must link and run: prism.pc
# is how users outside CMake find the library's own dependencies (NVRTC,
# the LLVM of the CPU backend, libyaml, libcrypto), and a missing one only
# shows when somebody links statically.  The whole archive is linked, so
# every object of the library has to resolve, not only those this program
# calls.  The build tree's prism.pc is used with libdir and includedir
# pointed at the build, as an installed copy points at its prefix.
set -euo pipefail
build=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
cc=$3
shift 3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/lib" "$work/pkgconfig"
ln -s "$build/libprism.a" "$work/lib/libprism.a" # no libprism.so beside it
sed -e "s|^libdir=.*|libdir=$work/lib|" \
    -e "s|^includedir=.*|includedir=$source_dir/include|" \
    "$build/prism.pc" >"$work/pkgconfig/prism.pc"

pc() {
  PKG_CONFIG_PATH="$work/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
    pkg-config "$@" prism
}

cat >"$work/main.c" <<'EOF'
#include <prism.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    prism_config cfg;
    prism_config_init(&cfg);
    char err[256];
    if (prism_config_validate(&cfg, err, sizeof err) != PRISM_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("prism %s, %d kernels\n", prism_version(), prism_kernel_count());
    return strcmp(prism_version(), PRISM_VERSION_STRING) != 0;
}
EOF

# shellcheck disable=SC2046 # pkg-config prints words meant to be split
"$cc" "$@" $(pc --cflags) -o "$work/main" "$work/main.c" \
  -Wl,--whole-archive "$work/lib/libprism.a" -Wl,--no-whole-archive \
  $(pc --static --libs)

# the shared libraries among them (NVRTC, LLVM) load from the -L folders
libpath=$(pc --static --libs-only-L | sed 's/-L//g; s/ \+/:/g; s/:$//')
LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/main"
echo "pkgconfig_static: linked libprism.a with: $(pc --static --libs)"
