"""The emulated board's serial wires, with a UART's semantics instead of a pty's.

A pty blocks the writer when nobody reads; a UART does not: its transmitter runs at the line
rate whether or not anyone listens, and its receiver keeps a small FIFO that *overruns* (loses
bytes) when the firmware does not read in time. So that the emulators show what a board would,
the host relays each line through a thread that behaves like the wire:

- `ConsoleWire`: the console. The firmware's stdin/stdout are pipes; the field engineer's end is
  a pty. Output nobody reads is dropped (counted), never left to block the firmware.
- `UartWire`: a frame UART between two ptys (the firmware's end and the modality's). Bytes from
  the modality reach the firmware at `baud` (8N1: 10 bits a byte) into a FIFO of `rxbuf` bytes
  (board.json `frames.rxbuf`); what does not fit is an overrun, counted in `overrun_bytes` and
  logged. Without `baud` and `rxbuf` it is a plain lossless link (as socat was).
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

READ_CHUNK = 65536
CONSOLE_RX_BYTES = 4096  # what the console UART keeps for a firmware that is not reading


def _nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


def _write_some(fd: int, data: bytes | bytearray) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.EPIPE):
            return len(data)  # the other end is gone: the bytes fall off the wire
        raise


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, READ_CHUNK)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EIO:  # a pty whose other side is closed
            return b""
        raise


def _queued(fd: int) -> int:
    """Bytes waiting in a tty's input queue (TIOCINQ)."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int(buf[0])


def raw_pty() -> tuple[int, int, str]:
    """(master, slave, slave path) of a new pty in raw mode."""
    master, slave = os.openpty()
    tty.setraw(slave)
    _nonblocking(master)
    return master, slave, os.ttyname(slave)


class _Relay:
    """A thread that runs `turn(timeout_s)` until closed."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.turn()

    def turn(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class ConsoleWire(_Relay):
    """The console UART: a pty for the engineer, pipes for the firmware (attached per boot)."""

    def __init__(self) -> None:
        super().__init__()
        self.master, self.slave, self.path = raw_pty()
        self.to_firmware = bytearray()
        self.dropped_bytes = 0
        self._stdin: int | None = None  # our end of the firmware's stdin pipe
        self._stdout: int | None = None  # our end of its stdout pipe
        self._start()

    def attach(self) -> tuple[int, int]:
        """New pipes for a firmware process: returns (its stdin, its stdout) to hand to Popen."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        _nonblocking(stdin_w)
        _nonblocking(stdout_r)
        with self.lock:
            self._close_pipes()
            self._stdin, self._stdout = stdin_w, stdout_r
            self.to_firmware.clear()
        return stdin_r, stdout_w

    def _close_pipes(self) -> None:
        for fd in (self._stdin, self._stdout):
            if fd is not None:
                os.close(fd)
        self._stdin = self._stdout = None

    def turn(self) -> None:
        with self.lock:
            fds = [self.master] + ([self._stdout] if self._stdout is not None else [])
        ready, _, _ = select.select(fds, [], [], 0.05)
        with self.lock:
            if self._stdout is not None and self._stdout in ready:
                out = _read_some(self._stdout)
                if out:
                    sent = _write_some(self.master, out)
                    self.dropped_bytes += len(out) - sent  # nobody reading: off the wire
            if self.master in ready:
                data = _read_some(self.master)
                room = CONSOLE_RX_BYTES - len(self.to_firmware)
                self.to_firmware += data[:room]
            if self._stdin is not None and self.to_firmware:
                sent = _write_some(self._stdin, self.to_firmware)
                del self.to_firmware[:sent]

    def close(self) -> None:
        super().close()
        with self.lock:
            self._close_pipes()
        for fd in (self.master, self.slave):
            os.close(fd)


class UartWire(_Relay):
    """A frame UART: the modality's pty to the firmware's pty, at `baud` into `rxbuf` bytes.

    `device_path` is what the firmware opens, `modality_path` what the modality opens (both are
    symbolic links to the ptys when given as paths, so a test can name them)."""

    def __init__(self, device_link: Path | None = None, modality_link: Path | None = None,
                 baud: int | None = None, rxbuf: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.dev_master, self.dev_slave, self.device_path = raw_pty()
        self.mod_master, self.mod_slave, self.modality_path = raw_pty()
        for link, target in ((device_link, self.device_path), (modality_link, self.modality_path)):
            if link is not None:
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        self.rate = baud / 10 if baud else None  # 8N1: start, 8 data, stop bits
        self.rxbuf = rxbuf
        self.log = log
        self.overrun_bytes = 0
        self.delivered_bytes = 0
        self._wire = bytearray()  # bytes on the line, not yet at the firmware's FIFO
        self._pending = bytearray()  # at the FIFO, not yet taken by the kernel
        self._credit = 0.0
        self._clock = time.monotonic()
        self._logged = 0
        self._start()

    def turn(self) -> None:
        wait = 0.001 if self._wire or self._pending else 0.05
        want = [self.dev_master]
        if len(self._wire) < 4096:  # a modality cannot send faster than the line: it waits
            want.append(self.mod_master)
        ready, _, _ = select.select(want, [], [], wait)
        if self.mod_master in ready:
            self._wire += _read_some(self.mod_master)
        if self.dev_master in ready:
            answer = _read_some(self.dev_master)
            if answer:
                _write_some(self.mod_master, answer)
        self._move()
        if self._pending:
            sent = _write_some(self.dev_master, self._pending)
            del self._pending[:sent]
        if self.overrun_bytes != self._logged and self.log is not None:
            self.log(f"emulator: frame uart rx overrun: {self.overrun_bytes - self._logged} bytes lost "
                     f"(the firmware did not read its {self.rxbuf}-byte FIFO in time)")
            self._logged = self.overrun_bytes

    def _move(self) -> None:
        """Bytes arrive at the FIFO at the line rate; what does not fit is lost (overrun)."""
        now = time.monotonic()
        if self.rate is None:
            count = len(self._wire)
        else:
            self._credit = min(self._credit + (now - self._clock) * self.rate, self.rate * 0.01 + 1)
            count = min(int(self._credit), len(self._wire))
            self._credit -= count
        self._clock = now
        if not count:
            return
        arriving = self._wire[:count]
        del self._wire[:count]
        if self.rxbuf is not None:
            room = self.rxbuf - _queued(self.dev_slave) - len(self._pending)
            if room < len(arriving):
                kept = max(room, 0)
                self.overrun_bytes += len(arriving) - kept
                arriving = arriving[:kept]
        self._pending += arriving
        self.delivered_bytes += len(arriving)

    def close(self) -> None:
        super().close()
        for fd in (self.dev_master, self.dev_slave, self.mod_master, self.mod_slave):
            os.close(fd)
