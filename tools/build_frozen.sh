#!/usr/bin/env bash
# Build the MicroPython unix port (x86-64) from Debian's source of MP_DEBIAN_VERSION with the
# firmware frozen into it, the way a real board's image carries it: bytecode in the executable
# ("flash"), so the GC heap holds only data. Used by tools/bench_frozen_heap.py; not part of
# `make setup` yet. Prints the interpreter's path. Needs gcc and make.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/versions.env
. tools/private_apt.sh
TOOLCHAIN="$PWD/.toolchain"
src="$TOOLCHAIN/micropython-src-$MP_DEBIAN_VERSION"
if [ ! -f "$src/py/mpconfig.h" ]; then
  echo "build_frozen: fetching the MicroPython $MP_DEBIAN_VERSION source from Debian $MP_DEBIAN_SUITE" >&2
  apt_dir="$TOOLCHAIN/apt-src"
  mkdir -p "$apt_dir/download"
  private_apt "$apt_dir" deb-src
  (cd "$apt_dir/download" && rm -f ./* && apt-get "${APT_PRIVATE[@]}" source --download-only "micropython=$MP_DEBIAN_VERSION+ds-1" >/dev/null 2>&1)
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$apt_dir"/download/micropython_*.orig.tar.* -C "$src" --strip-components=1
  # Debian strips the submodules; the build only checks that micropython-lib is there, and our
  # manifest needs nothing from it.
  touch "$src/lib/micropython-lib/README.md"
fi
manifest="$TOOLCHAIN/frozen-manifest.py"
echo "package(\"modgate\", base_path=\"$PWD/firmware\")" > "$manifest"
make -s -C "$src/mpy-cross" -j2 >&2
make -s -C "$src/ports/unix" -j2 VARIANT=standard MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 \
  MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=0 MICROPY_PY_FFI=0 \
  FROZEN_MANIFEST="$manifest" MPY_CROSS_FLAGS=-march=x64 >&2
echo "$src/ports/unix/build-standard/micropython"
