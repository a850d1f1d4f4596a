#!/usr/bin/env bash
# usage: tools/build_frozen.sh BOARD OUT
# Build an emulated board's firmware image: MicroPython's unix port from Debian's source of
# MP_DEBIAN_VERSION (the armhf package's version) with firmware/modgate, the board module and
# main.py frozen in, the way a real board's image carries them: bytecode in the executable
# ("flash"), so the GC heap holds only data. The board's data (board.json) gives the mpy-cross
# architecture and the cross compiler (`image_cross_compile`, empty for the host's own).
# Writes OUT/micropython. Needs gcc, make and, for armhf, gcc-arm-linux-gnueabihf (make setup).
# Runs from the checkout's tools/ or from an installed host's share/tools/ (the folder above holds
# firmware/ and boards/ either way); the MicroPython source is fetched into MODGATE_TOOLCHAIN
# (the checkout's .toolchain/, or the user cache of an installed host: runtimes.py decides).
set -euo pipefail
cd "$(dirname "$0")/.."
board="$1"; out="$2"
. tools/image_build_lib.sh

arch="$(board_field mpy_cross_arch)"
cross="$(board_field image_cross_compile)"
[ -n "$arch" ] || { echo "build_frozen: boards/$board/board.json has no mpy_cross_arch" >&2; exit 2; }

mkdir -p "$out"
board_data "$out"
# The entry point: MicroPython's `-m` searches the current folder before the frozen modules, so a
# job started inside firmware/ would load the sources into the heap. This runs main.py frozen only.
printf '%s\n' 'import sys' '' 'if "" in sys.path:' '    sys.path.remove("")' 'import main  # noqa: E402,F401' \
  > "$out/image_main.py"
manifest="$out/manifest.py"
# asyncio is the device core's scheduler (jobs/run.py); a board's own port manifest freezes it too.
cat > "$manifest" <<EOF
include("\$(MPY_DIR)/extmod/asyncio")
module("image_main.py", base_path="$out")
module("board_data.py", base_path="$out")
package("modgate", base_path="$PWD/firmware")
module("main.py", base_path="$PWD/firmware")
module("board.py", base_path="$PWD/boards/$board")
EOF
make -s -C "$src/mpy-cross" -j2 >&2
with_mbedtls
# The image's MicroPython features, one make variable each: the one place to turn one on. TLS
# (DICOM TLS, PS3.15 B.9) is MicroPython's `tls` on mbedTLS built from source with a board's
# configuration (tools/mbedtls_config_image.h: its memory comes from the GC heap through the
# tracked allocator, which the unix port builds only with ffi unless asked). No btree or ffi:
# the firmware uses neither.
features=(MICROPY_PY_BTREE=0 MICROPY_PY_SSL=1 MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=1 MICROPY_PY_FFI=0
          CFLAGS_EXTRA=-DMICROPY_TRACKED_ALLOC=1
          "MBEDTLS_CONFIG_FILE=\\\"$PWD/tools/mbedtls_config_image.h\\\"")
# A build folder per feature set: make does not notice changed flags, so a change starts clean.
build="build-$board-$(printf '%s\n' "${features[@]}" | sha256sum | cut -c1-8)"
make -s -C "$src/ports/unix" -j2 VARIANT=standard BUILD="$build" CROSS_COMPILE="$cross" \
  "${features[@]}" FROZEN_MANIFEST="$manifest" MPY_CROSS_FLAGS="-march=$arch" >&2
cp "$src/ports/unix/$build/micropython" "$out/micropython.tmp"
mv "$out/micropython.tmp" "$out/micropython"
echo "$out/micropython"
