"""Byte streams from a UART or a tty (the emulator's pty) with non-blocking reads.

A board's machine.UART already reads what is there (`any()` + `readinto`). The unix port's file
streams only do full reads, which would block on a tty, so for those we read one byte at a time
while poll says more is waiting: fine for a console or a UART's rates, and never blocking.
"""

import select


class TtyStream:
    """Wraps a file-like tty (e.g. sys.stdin.buffer / sys.stdout.buffer) for the device loop."""

    def __init__(self, reader, writer=None):
        self.reader = reader
        self.writer = writer if writer is not None else reader
        self._poller = select.poll()
        self._poller.register(reader, select.POLLIN)
        self._one = bytearray(1)

    def fileno(self):
        return self.reader.fileno()

    def pollable(self):
        return self.reader

    def readable(self, timeout_ms=0):
        return bool(self._poller.poll(timeout_ms))

    def read_into(self, buf, limit):
        """Copy up to `limit` waiting bytes into `buf`; 0 when nothing waits. Never blocks."""
        one = self._one
        count = 0
        while count < limit:
            ready = self._poller.poll(0)
            if not ready or not ready[0][1] & select.POLLIN:
                break
            if not self.reader.readinto(one):
                break
            buf[count] = one[0]
            count += 1
        return count

    def write(self, data):
        self.writer.write(data)
        flush = getattr(self.writer, "flush", None)
        if flush is not None:
            flush()


class UartStream:
    """Wraps a machine.UART, whose reads already return only what is waiting."""

    def __init__(self, uart):
        self.uart = uart

    def pollable(self):
        return self.uart

    def readable(self, timeout_ms=0):
        return self.uart.any() > 0

    def read_into(self, buf, limit):
        waiting = self.uart.any()
        if not waiting:
            return 0
        n = self.uart.readinto(memoryview(buf)[: min(limit, waiting)])
        return n or 0

    def write(self, data):
        self.uart.write(data)
