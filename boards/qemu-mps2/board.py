"""qemu-mps2: the firmware frozen into MicroPython's bare-metal qemu port, on the ARM MPS2-AN385
(Cortex-M3) under qemu-system-arm: the one bare-metal MicroPython that builds and runs here.

No operating system and no network. The console and the frame input are the board's CMSDK UARTs,
which qemu joins to host character devices; the file system is littlefs on a RAM block device in
the board's data SRAM. Built by the port's own make with boards/qemu-mps2/manifest.py
(tools/build_baremetal.sh, `modgate build --board qemu-mps2`).
"""

import io

_SYSCLK_HZ = 25000000  # AN385 SYSCLK, which clocks the UARTs
# CMSDK APB UART (ARM DDI 0479, "UART"): register offsets and bits.
_DATA = 0
_STATE = 4
_CTRL = 8
_BAUDDIV = 16
_TX_FULL = 1
_RX_FULL = 2
_TX_EN = 1
_RX_EN = 2
# MicroPython's stream and block-device ioctl numbers (py/stream.h, extmod/vfs.h).
_STREAM_POLL = 3
_POLLIN = 1
_POLLOUT = 4
_BLOCK_COUNT = 4
_BLOCK_SIZE = 5
# Polls of an empty receive register before a read gives up: qemu hands the UART its next byte
# a moment after the last one was read, so a short wait turns byte-at-a-time reads into chunks.
_RX_SPIN = 64


def load_data():
    """The board's data: frozen into the image with the code (board_data, written by the build),
    else board.json beside this module (the unit tests import it from the folder)."""
    try:
        from board_data import DATA

        return DATA
    except ImportError:
        import json

        path = globals().get("__file__") or ""
        folder = path.rsplit("/", 1)[0] if "/" in path else "."
        with open(folder + "/board.json") as f:
            return json.load(f)


class CmsdkUart(io.IOBase):
    """machine.UART's non-blocking surface (any, read, readinto, write) over one CMSDK UART, and a
    stream select.poll can watch (ioctl). The UART holds one received byte and qemu feeds the next
    only once it is read, so nothing is lost while the firmware is busy: the host's writes wait."""

    def __init__(self, base, baud, mem=None):
        if mem is None:
            import machine

            mem = machine.mem32
        self.mem = mem
        self.state = base + _STATE
        self.data = base + _DATA
        mem[base + _BAUDDIV] = _SYSCLK_HZ // baud
        mem[base + _CTRL] = _TX_EN | _RX_EN

    def any(self):
        return 1 if self.mem[self.state] & _RX_FULL else 0

    def readinto(self, buf, nbytes=None):
        """Bytes waiting, up to len(buf) or nbytes; None when none is (machine.UART, timeout=0)."""
        mem = self.mem
        want = len(buf) if nbytes is None else nbytes
        got = 0
        idle = 0
        while got < want:
            if mem[self.state] & _RX_FULL:
                buf[got] = mem[self.data] & 0xFF
                got += 1
                idle = 0
            elif got == 0 or idle >= _RX_SPIN:
                break
            else:
                idle += 1
        return got or None

    def read(self, nbytes=256):
        buf = bytearray(nbytes)
        got = self.readinto(buf)
        return bytes(buf[:got]) if got else None

    def write(self, data):
        mem = self.mem
        for byte in data:
            while mem[self.state] & _TX_FULL:
                pass
            mem[self.data] = byte
        return len(data)

    def ioctl(self, request, arg):
        if request != _STREAM_POLL:
            return 0
        ready = 0
        state = self.mem[self.state]
        if arg & _POLLIN and state & _RX_FULL:
            ready |= _POLLIN
        if arg & _POLLOUT and not state & _TX_FULL:
            ready |= _POLLOUT
        return ready


class RamBlocks:
    """A block device (readblocks, writeblocks, ioctl: what vfs.VfsLfs2 mounts) over memory outside
    the GC heap, so the file system's blocks never take the firmware's 96 KB."""

    def __init__(self, memory, block_bytes):
        self.view = memoryview(memory)
        self.block_bytes = block_bytes
        self.count = len(memory) // block_bytes

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_bytes + offset
        buf[:] = self.view[start : start + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        start = block * self.block_bytes + offset
        self.view[start : start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == _BLOCK_COUNT:
            return self.count
        if op == _BLOCK_SIZE:
            return self.block_bytes
        return 0  # init, deinit, sync; erase: RAM needs none


def mount_storage(spec):
    """littlefs on the RAM block device at spec["mount"]: the one left by an earlier start in
    this power-up (a soft reset keeps RAM), else a new one."""
    import uctypes
    import vfs

    blocks = RamBlocks(uctypes.bytearray_at(spec["address"], spec["bytes"]), spec["block_bytes"])
    try:
        filesystem = vfs.VfsLfs2(blocks)
    except OSError:
        vfs.VfsLfs2.mkfs(blocks)
        filesystem = vfs.VfsLfs2(blocks)
    try:
        vfs.mount(filesystem, spec["mount"])
    except OSError:
        pass  # already mounted: start() ran before in this boot


def _reboot():
    import machine

    machine.reset()  # ends qemu (semihosting exit): a power-off, the RAM file system with it


def start(argv):
    """Port objects for the app (the board contract in boards/README.md)."""
    data = load_data()
    mount_storage(data["storage"])
    console = CmsdkUart(data["console"]["base"], data["console"]["baud"])
    return {
        "board": data,
        "state_dir": data["state_dir"],
        "console_in": console,
        "console_poll": console,
        "console_out": console,
        "frame_uart": CmsdkUart(data["frames"]["base"], data["frames"]["baud"]),
        "network": None,  # the qemu port has no network interface: the core runs offline
        "watchdog": None,
        "rtc_set": None,
        "reboot": _reboot,
        "options": {},
    }
