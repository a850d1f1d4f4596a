"""`modgate console PORT`: an interactive terminal on the device console (Ctrl-] quits).

Keys go to the device as typed (raw mode), so its line editor sees backspace, Ctrl-C and arrow
keys exactly as from any serial terminal. With stdin not a terminal, the input is sent as is and
the command exits shortly after it ends (handy in scripts: `echo status | modgate console PORT`).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from modgate_host.transport import DEFAULT_BAUD, TransportError, open_port

QUIT = b"\x1d"  # Ctrl-]
EOF_GRACE_S = 1.0


def _pump_output(port: Any, stop: threading.Event) -> None:
    out = sys.stdout.buffer
    while not stop.is_set():
        try:
            data = port.read(1)
            waiting = getattr(port, "in_waiting", 0) if data else 0
            if waiting:
                data += port.read(waiting)
        except Exception:  # pyserial raises several types when the port goes away: end the session
            stop.set()
            return
        if data:
            out.write(data)
            out.flush()


def _interact(port: Any, fd: int, stop: threading.Event) -> None:
    while not stop.is_set():
        data = os.read(fd, 1024)
        if not data:
            time.sleep(EOF_GRACE_S)  # let the last replies arrive
            return
        if QUIT in data:
            data = data[: data.index(QUIT)]
            if data:
                port.write(data)
            return
        port.write(data)


def run(args: argparse.Namespace) -> int:
    try:
        port = open_port(args.port, args.baud)
    except TransportError as exc:
        print(f"modgate: {exc}", file=sys.stderr)
        return 2
    fd = sys.stdin.fileno()
    is_tty = os.isatty(fd)
    saved = None
    if is_tty:
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        print(f"modgate console on {args.port}; Ctrl-] quits\r", file=sys.stderr)
    stop = threading.Event()
    reader = threading.Thread(target=_pump_output, args=(port, stop), daemon=True)
    reader.start()
    try:
        port.write(b"\x03")  # fresh line and a prompt
        _interact(port, fd, stop)
    finally:
        stop.set()
        if saved is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        reader.join(timeout=1.0)
        port.close()
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("console", help="interactive device console (Ctrl-] quits)")
    p.add_argument("port", metavar="PORT", help="/dev/ttyUSB0, /dev/pts/N or socket://HOST:PORT")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    p.set_defaults(func=run)
