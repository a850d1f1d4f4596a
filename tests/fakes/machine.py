"""Fake `machine` for importing real boards' board.py on CPython and the MicroPython unix port.

Each object records how it was built so a test can check a board wired what its board.json says.
`created` lists every object in construction order; `reset_calls` counts machine.reset().
"""

created = []
reset_calls = [0]


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        created.append(self)


class Pin(_Recorded):
    IN = 0
    OUT = 1

    def __init__(self, *args, **kwargs):
        _Recorded.__init__(self, *args, **kwargs)
        self._value = 0

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = v
        return None


class UART(_Recorded):
    """A UART whose receive side is a byte queue a test fills with `feed`."""

    def __init__(self, *args, **kwargs):
        _Recorded.__init__(self, *args, **kwargs)
        self.rx = b""
        self.tx = b""

    def feed(self, data):
        self.rx += data

    def any(self):
        return len(self.rx)

    def read(self, nbytes=-1):
        if not self.rx:
            return None  # machine.UART with timeout=0 returns None when nothing waits
        if nbytes < 0:
            nbytes = len(self.rx)
        out, self.rx = self.rx[:nbytes], self.rx[nbytes:]
        return out

    def write(self, data):
        self.tx += bytes(data)
        return len(data)


class SPI(_Recorded):
    pass


class WDT(_Recorded):
    def __init__(self, *args, **kwargs):
        _Recorded.__init__(self, *args, **kwargs)
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class RTC(_Recorded):
    def __init__(self, *args, **kwargs):
        _Recorded.__init__(self, *args, **kwargs)
        self.value = (2000, 1, 1, 5, 0, 0, 0, 0)

    def datetime(self, value=None):
        if value is None:
            return self.value
        self.value = tuple(value)
        return None


def reset():
    reset_calls[0] += 1


def of_type(cls):
    return [obj for obj in created if isinstance(obj, cls)]


def clear():
    del created[:]
    reset_calls[0] = 0
