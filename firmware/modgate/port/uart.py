"""Serial lines: a UART on boards, a tty or pseudo-terminal on the unix port and in the emulator.

`open_serial(path_or_uart, baud)` returns a stream with the same methods as sockets.Connection
(recv_into, send_all, readable, close), so frame links serve either one. Give it a tty path
("/dev/ttyUSB0", the emulator's pty) or a machine.UART built with timeout=0 (boards/common).
"""

import select

from modgate.compat import deadline, remaining_ms
from modgate.errors import LinkClosed, LinkTimeout

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

    def recv_into(self, buf, nbytes, timeout_ms):
        """Read up to `nbytes`; never returns 0 (a tty has no end), raises LinkTimeout when idle."""
        if not self._poller.poll(timeout_ms):
            raise LinkTimeout("serial " + self.peer + " idle for " + str(timeout_ms) + " ms")
        try:
            n = self.file.readinto(memoryview(buf)[0:nbytes])
        except OSError as exc:
            raise LinkClosed("serial " + self.peer + " failed: errno " + _errno(exc))
        if not n:
            raise LinkTimeout("serial " + self.peer + " has no data")
        return n

    def send_all(self, data, timeout_ms):
        view = memoryview(data)
        sent = 0
        until = deadline(timeout_ms)
        while sent < len(view):
            try:
                n = self.file.write(view[sent:])
            except OSError as exc:
                raise LinkClosed("serial " + self.peer + " write failed: errno " + _errno(exc))
            sent += n or 0
            if sent < len(view) and not remaining_ms(until):
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
        return self.uart

    def readable(self, timeout_ms=0):
        if self.uart.any():
            return True
        if self._poller is not None:
            return bool(self._poller.poll(timeout_ms))
        return False

    def recv_into(self, buf, nbytes, timeout_ms):
        """Read what waits (up to `nbytes`); raises LinkTimeout when nothing arrives in time."""
        waiting = self.uart.any()
        if not waiting:
            if not self.readable(timeout_ms):
                raise LinkTimeout("uart " + self.peer + " idle for " + str(timeout_ms) + " ms")
            waiting = self.uart.any()
            if not waiting:
                raise LinkTimeout("uart " + self.peer + " has no data")
        n = min(nbytes, waiting)
        view = memoryview(buf)[0:n]
        readinto = getattr(self.uart, "readinto", None)
        if readinto is not None:
            got = readinto(view)
        else:
            data = self.uart.read(n)
            got = len(data) if data else 0
            view[0:got] = data[0:got] if got else b""
        if not got:
            raise LinkTimeout("uart " + self.peer + " has no data")
        return got

    def send_all(self, data, timeout_ms):
        view = memoryview(data)
        sent = 0
        until = deadline(timeout_ms)
        while sent < len(view):
            sent += self.uart.write(view[sent:]) or 0
            if sent < len(view) and not remaining_ms(until):
                raise LinkTimeout("uart " + self.peer + " write timed out")

    def close(self):
        pass  # the board owns the UART; a link closing does not release it


def open_serial(path_or_uart, baud=None):
    if isinstance(path_or_uart, str):
        return SerialStream(path_or_uart, baud)
    return MachineUartStream(path_or_uart)
