"""Serial lines: a UART on boards, a tty or pseudo-terminal on the unix port and in the emulator.

`open_serial(path_or_uart, baud)` returns a stream with the methods a frame link uses of a
sockets.Connection (recv_now, async send_all, pollable, readable, close), so links serve either.
Give it a tty path ("/dev/ttyUSB0", the emulator's pty) or a machine.UART built with timeout=0
(boards/common).
"""

import select

from modgate.compat import deadline, remaining_ms
from modgate.errors import LinkClosed, LinkTimeout
from modgate.port import aio

_WRITE_WAIT_MS = 50  # a full transmit buffer drains at the line's rate: look again this soon

try:
    import termios
except ImportError:  # pragma: no cover - boards without a tty layer
    termios = None

_VTIME = 5
_VMIN = 6


def _errno(exc):
    return str(exc.args[0] if exc.args else "?")


class SerialStream:
    """A raw tty: reads return what is there (VMIN=0, VTIME=0), so nothing blocks past a poll."""

    def __init__(self, path, baud=None):
        self.peer = path
        self.file = open(path, "r+b")
        fd = self.file.fileno()
        if termios is not None:
            termios.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[6][_VMIN] = 0
            attrs[6][_VTIME] = 0
            if baud:
                speed = getattr(termios, "B" + str(baud), None)
                if speed is not None:
                    attrs[4] = speed
                    attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._poller = select.poll()
        self._poller.register(self.file, select.POLLIN)

    def fileno(self):
        return self.file.fileno()

    def pollable(self):
        return self.file

    def recv_now(self, buf, nbytes):
        """Read what is waiting, up to `nbytes`: the count, None when nothing is (a tty has no
        end, so never 0)."""
        try:
            n = self.file.readinto(memoryview(buf)[0:nbytes])
        except OSError as exc:
            raise LinkClosed("serial " + self.peer + " failed: errno " + _errno(exc))
        return n or None

    async def send_all(self, data, timeout_ms):
        view = memoryview(data)
        sent = 0
        until = deadline(timeout_ms)
        while sent < len(view):
            try:
                n = self.file.write(view[sent:])
            except OSError as exc:
                raise LinkClosed("serial " + self.peer + " write failed: errno " + _errno(exc))
            sent += n or 0
            if sent < len(view):
                left = remaining_ms(until)
                if not left or not await aio.writable(self.file, left):
                    raise LinkTimeout("serial " + self.peer + " write timed out")

    def readable(self, timeout_ms=0):
        return bool(self._poller.poll(timeout_ms))

    def close(self):
        try:
            self.file.close()
        except OSError:
            pass


class MachineUartStream:
    """A board's machine.UART (timeout=0, so reads return only what waits in its rx buffer)."""

    def __init__(self, uart, name="uart"):
        self.uart = uart
        self.peer = name
        self._poller = None
        try:
            poller = select.poll()
            poller.register(uart, select.POLLIN)
            self._poller = poller
        except (TypeError, OSError, AttributeError):
            pass  # a UART that poll cannot watch: fall back to any()

    def pollable(self):
        """The UART for port.aio.readable, or None when poll cannot watch it (look with any())."""
        return self.uart if self._poller is not None else None

    def readable(self, timeout_ms=0):
        if self.uart.any():
            return True
        if self._poller is not None:
            return bool(self._poller.poll(timeout_ms))
        return False

    def recv_now(self, buf, nbytes):
        """Read what waits in the rx buffer (up to `nbytes`): the count, None when nothing."""
        waiting = self.uart.any()
        if not waiting:
            return None
        n = min(nbytes, waiting)
        view = memoryview(buf)[0:n]
        readinto = getattr(self.uart, "readinto", None)
        if readinto is not None:
            got = readinto(view)
        else:
            data = self.uart.read(n)
            got = len(data) if data else 0
            view[0:got] = data[0:got] if got else b""
        return got or None

    async def send_all(self, data, timeout_ms):
        view = memoryview(data)
        sent = 0
        until = deadline(timeout_ms)
        while sent < len(view):
            sent += self.uart.write(view[sent:]) or 0
            if sent < len(view):
                if not remaining_ms(until):
                    raise LinkTimeout("uart " + self.peer + " write timed out")
                await aio.sleep_ms(_WRITE_WAIT_MS)

    def close(self):
        pass  # the board owns the UART; a link closing does not release it


def open_serial(path_or_uart, baud=None):
    if isinstance(path_or_uart, str):
        return SerialStream(path_or_uart, baud)
    return MachineUartStream(path_or_uart)
