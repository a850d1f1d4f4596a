# modgate's board for MicroPython's qemu port (out of tree: make -C ports/qemu BOARD_DIR=<here>).
# The machine is the port's own MPS2_AN385 (ARM MPS2 FPGA image AN385, Cortex-M3); this adds what
# the firmware needs and the port's 1.25 configuration leaves out (mpconfigmodgate.h): `time` with
# ticks from the board's CMSDK dual timer (modgate_hal.c), `select.poll` and the `_asyncio` core
# for asyncio, and littlefs for the file system the board module puts on a RAM block device.
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'
CFLAGS += -DMP_CONFIGFILE='"$(BOARD_DIR)/mpconfigmodgate.h"'
CFLAGS += -DMICROPY_PY_TIME_INCLUDEFILE='"$(BOARD_DIR)/modgate_time.c"'

LDSCRIPT = $(BOARD_DIR)/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o
SRC_C += $(BOARD_DIR)/modgate_hal.c shared/timeutils/timeutils.c

MICROPY_VFS_LFS2 = 1

MPY_CROSS_FLAGS += -march=armv7m
