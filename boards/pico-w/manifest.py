# ruff: noqa: F821 - include/package/module/require are defined by MicroPython's manifest runner
# MicroPython manifest for an image with modgate frozen in: frozen bytecode runs from flash, so
# the firmware's code leaves the GC heap (see boards/README.md, "The heap floor").
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=<repo>/boards/pico-w/manifest.py
# Relative paths are relative to this file. board.json, main.py and secrets.json stay on the
# file system (deploy copies them); board.py finds board.json in the current folder.
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")
package("modgate", base_path="../../firmware")
module("board.py")
module("boardkit.py", base_path="../common")
