# ruff: noqa: F821 - include/package/module are defined by MicroPython's manifest runner
# MicroPython manifest of the qemu-mps2 image: everything the board runs, frozen (bytecode in the
# image, as in a board's flash), so the GC heap holds only data. Built by the port's own make:
#   make -C ports/qemu BOARD=MODGATE_MPS2 BOARD_DIR=<share>/boards/qemu-mps2/port \
#        FROZEN_MANIFEST=<share>/boards/qemu-mps2/manifest.py MICROPY_MANIFEST_MODGATE_DATA=<dir>
# (tools/build_baremetal.sh, run by `modgate build --board qemu-mps2`). MODGATE_DATA is the folder
# holding board_data.py, the board's data generated from board.json: the board has no file
# system to read board.json from before board.start() mounts one. Relative paths are relative
# to this file.
include("$(MPY_DIR)/extmod/asyncio")
package("modgate", base_path="../../firmware")
module("main.py", base_path="../../firmware")
module("board.py")
module("board_data.py", base_path="$(MODGATE_DATA)")
