"""Serial lines: a UART on boards, a tty or pseudo-terminal on the unix port and in the emulator.

`open_serial(name, baud)` returns a stream with the same methods as sockets.Connection
(recv_into, send_all, readable, close, fileno), so frame links serve either one.
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


def open_serial(path, baud=None):
    return SerialStream(path, baud)
