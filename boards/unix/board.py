"""Emulator board: the firmware on a MicroPython unix build (x86-64, or armhf under qemu-arm).

Flash is a host folder (--state DIR), the console is the process's stdin/stdout (the host's
`modgate emulate` hands it a pty), frames arrive over TCP (the app listens on --frames-port),
and the network is the host's loopback. boards/qemu-armhf/board.py is this same file: only
board.json differs. Board data, not code, tells the app what it is running on.
"""

import json
import os
import select
import sys

from modgate.errors import ConfigError

# `modgate emulate` restarts the firmware when it exits with this code (a soft reboot).
REBOOT_EXIT_CODE = 75


def _folder():
    path = globals().get("__file__") or ""
    return path.rsplit("/", 1)[0] if "/" in path else "."


def load_data(folder=None):
    """board.json beside this module; in a firmware image, the copy frozen into it with the
    code (`board_data`, written by tools/build_frozen.sh), since the image has no folder."""
    if folder is None:
        try:
            from board_data import DATA

            return DATA
        except ImportError:
            pass
    with open((folder or _folder()) + "/board.json") as f:
        return json.load(f)


def parse_options(argv):
    """`--name value` pairs into a dict; a repeated name collects a list (e.g. --dest A --dest B)."""
    options = {}
    i = 0
    while i < len(argv):
        name = argv[i]
        if not name.startswith("--") or i + 1 >= len(argv):
            raise ConfigError("board option " + repr(name) + ": expected --name VALUE")
        key = name[2:]
        value = argv[i + 1]
        if key in options:
            prev = options[key]
            options[key] = prev + [value] if isinstance(prev, list) else [prev, value]
        else:
            options[key] = value
        i += 2
    return options


class StdinReader:
    """Non-blocking reads from stdin. A stdin read on MicroPython waits for the whole
    request, so this reads one byte per ready poll: the console carries a few short
    command lines, never bulk data."""

    def __init__(self, stream):
        self.stream = stream
        self._poll = None  # registered on first read: a test runner's stdin may not be pollable
        self._raw = getattr(stream, "buffer", stream)

    def read(self, nbytes):
        """Up to `nbytes` bytes already waiting, None when nothing is (as machine.UART does);
        b"" at end of input."""
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.stream, select.POLLIN)
        out = b""
        while len(out) < nbytes and self._poll.poll(0):
            byte = self._raw.read(1)
            if not byte:
                return out
            out += byte
        return out or None


class EmulatedLink:
    """The emulated board's network cable: the host's loopback, unplugged while the file
    `link-down` exists in the state folder (`modgate emulate --link down`, and the tests, pull
    the cable that way). Same contract as boardkit.Link on a real board."""

    def __init__(self, state_dir, ip):
        self.flag = state_dir + "/link-down"
        self.ip = ip

    def start(self):
        pass  # nothing to bring up: the host's loopback is always there

    def address(self):
        try:
            os.stat(self.flag)
            return None
        except OSError:
            return self.ip


class PipeWatchdog:
    """The emulator's watchdog (`--watchdog PATH`: /dev/fd/N of a pipe the emulator reads): each
    feed is one byte; the emulator restarts firmware that stops feeding for watchdog_ms."""

    def __init__(self, path):
        self.pipe = open(path, "wb")

    def feed(self):
        try:
            self.pipe.write(b".")
            self.pipe.flush()  # CPython buffers files; a feed must reach the emulator now
        except OSError:
            pass  # the emulator is gone; nobody is left to reset us


def _reboot():
    raise SystemExit(REBOOT_EXIT_CODE)


def start(argv):
    """Port objects for the app (the board contract in boards/README.md)."""
    data = load_data()
    options = parse_options(argv)
    state_dir = options.pop("state", None) or data.get("state_dir")
    if not state_dir:
        raise ConfigError("board " + data["id"] + ": --state DIR is required (the emulated flash)")
    return {
        "board": data,
        "state_dir": state_dir.rstrip("/") or "/",
        "console_in": StdinReader(sys.stdin),
        "console_poll": sys.stdin,
        "console_out": getattr(sys.stdout, "buffer", sys.stdout),
        # The emulator's frame "UART": a pty path (`modgate emulate --frames-serial`), or none.
        "frame_uart": options.get("frame-tty"),
        "network": EmulatedLink(state_dir.rstrip("/") or "/", data["network"]["ip"]),
        "watchdog": PipeWatchdog(options.pop("watchdog")) if options.get("watchdog") else None,
        "rtc_set": None,
        "reboot": _reboot,
        "options": options,
    }
