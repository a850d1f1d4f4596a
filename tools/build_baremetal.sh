#!/usr/bin/env bash
# usage: tools/build_baremetal.sh BOARD OUT
# Build a bare-metal board's firmware image with the MicroPython port's own make: Debian's source
# of MP_DEBIAN_VERSION, the board's out-of-tree port board (boards/BOARD/<image_board_dir>) and
# its frozen manifest (boards/BOARD/manifest.py), the GC heap the size of board.json's
# emulated_heap_bytes. Writes OUT/firmware.elf (and OUT/board_data.py, frozen into it).
# Needs make and the port's compiler (gcc-arm-none-eabi, libnewlib-arm-none-eabi: make setup).
# Like build_frozen.sh it runs from the checkout's tools/ or an installed host's share/tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
board="$1"; out="$2"
. tools/image_build_lib.sh

port="$(board_field image_port)"
port_board="$(board_field image_board_dir)"
heap="$(board_field emulated_heap_bytes)"
[ -n "$port" ] && [ -n "$port_board" ] && [ -n "$heap" ] ||
  { echo "build_baremetal: boards/$board/board.json needs image_port, image_board_dir, emulated_heap_bytes" >&2; exit 2; }

mkdir -p "$out"
out="$(cd "$out" && pwd)"
board_data "$out"
make -s -C "$src/mpy-cross" -j2 >&2
# The image's MicroPython features are the board's (boards/BOARD/<image_board_dir>): one place.
make -s -C "$src/ports/$port" -j2 BOARD="MODGATE_$(echo "$board" | tr 'a-z-' 'A-Z_')" \
  BOARD_DIR="$PWD/boards/$board/$port_board" BUILD="$out/build" MICROPY_HEAP_SIZE="$heap" \
  FROZEN_MANIFEST="$PWD/boards/$board/manifest.py" MICROPY_MANIFEST_MODGATE_DATA="$out" >&2
cp "$out/build/firmware.elf" "$out/firmware.elf.tmp"
mv "$out/firmware.elf.tmp" "$out/firmware.elf"
echo "$out/firmware.elf"
