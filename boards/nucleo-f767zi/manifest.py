# ruff: noqa: F821 - include/package/module/require are defined by MicroPython's manifest runner
# MicroPython manifest for an image with modgate frozen in: frozen bytecode runs from flash, so
# the firmware's code leaves the GC heap (see boards/README.md, "The heap floor").
#   make -C ports/stm32 BOARD=NUCLEO_F767ZI FROZEN_MANIFEST=<repo>/boards/nucleo-f767zi/manifest.py
# (`modgate build --board BOARD` writes this line, with the manifest's full path, to recipe.txt.)
# Relative paths are relative to this file. Only data stays on the file system: board.json (board.py
# finds it in the current folder), config and secrets.json; `modgate deploy` writes those and no code.
include("$(PORT_DIR)/boards/manifest.py")
package("modgate", base_path="../../firmware")
module("main.py", base_path="../../firmware")  # a frozen main.py runs at boot when the file system has none
module("board.py")
module("boardkit.py", base_path="../common")
require("sdcard")
