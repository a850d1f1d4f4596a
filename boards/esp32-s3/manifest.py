# ruff: noqa: F821 - include/package/module/require are defined by MicroPython's manifest runner
# MicroPython manifest for an image with modgate frozen in: frozen bytecode runs from flash, so
# the firmware's code leaves the GC heap (see boards/README.md, "The heap floor").
#   make -C ports/esp32 BOARD=ESP32_GENERIC_S3 BOARD_VARIANT=SPIRAM_OCT \
#        FROZEN_MANIFEST=<repo>/boards/esp32-s3/manifest.py
# (`modgate build --board BOARD` writes this line, with the manifest's full path, to recipe.txt.)
# Relative paths are relative to this file. Only data stays on the file system: board.json (board.py
# finds it in the current folder), config and secrets.json; `modgate deploy` writes those and no code.
include("$(PORT_DIR)/boards/manifest.py")
package("modgate", base_path="../../firmware")
module("main.py", base_path="../../firmware")  # a frozen main.py runs at boot when the file system has none
module("board.py")
module("boardkit.py", base_path="../common")
