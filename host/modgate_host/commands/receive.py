"""`modgate receive`: a validating Storage SCP with a live table, for commissioning and bench work.

Exit codes: 0 every object received passed (or --no-validate); 1 at least one failed validation;
2 usage or environment error (port in use, output folder not writable).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from pydicom.uid import UID

from modgate_host.receiver import Received, Receiver

COLUMNS = ("time", "from", "sop class", "sop instance uid", "bytes", "check")
WIDTHS = (8, 16, 32, 44, 10, 0)


def row(values: tuple[str, ...]) -> str:
    return "  ".join(v[:w].ljust(w) if w else v for v, w in zip(values, WIDTHS, strict=True)).rstrip()


class LiveTable:
    """One line per object as soon as it is checked; a summary at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.passed = 0
        self.failed = 0
        self.header()

    def header(self) -> None:
        self.stream.write(row(tuple(c.upper() for c in COLUMNS)) + "\n")
        self.stream.flush()

    def update(self, record: Received) -> None:
        if record.ok is None:
            check = "stored"
        elif record.ok:
            check = "PASS"
        else:
            check = "FAIL " + (record.problems[0] if record.problems else "")
        name = UID(record.sop_class_uid).name if record.sop_class_uid else "?"
        line = row((record.when, record.calling_aet, name, record.sop_instance_uid, str(record.size), check))
        with self.lock:
            if record.ok is False:
                self.failed += 1
            else:
                self.passed += 1
            self.stream.write(line + "\n")
            for problem in record.problems[1:6] if record.ok is False else []:
                self.stream.write(" " * 20 + problem + "\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    table = LiveTable(sys.stdout)
    receiver = Receiver(
        args.aet, args.port, Path(args.out), validate=args.validate, host=args.bind, on_update=table.update
    )
    try:
        receiver.start()
    except OSError as exc:
        print(f"modgate: cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"# {args.aet} listening on {args.bind}:{args.port}, storing in {args.out}", file=sys.stderr)
    try:
        _wait(receiver, table, args)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    print(f"# {table.passed} passed, {table.failed} failed", file=sys.stderr)
    return 1 if table.failed else 0


def _wait(receiver: Receiver, table: LiveTable, args: argparse.Namespace) -> None:
    started = time.monotonic()
    while True:
        done = table.passed + table.failed
        if args.count and done >= args.count:
            return
        if args.timeout and time.monotonic() - started > args.timeout:
            return
        time.sleep(0.1)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("receive", help="validating storage SCP with a live table")
    p.add_argument("--aet", default="MODGATE_RX", help="our AE title (default %(default)s)")
    p.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    p.add_argument("--out", required=True, help="folder for received files (SOP Instance UID.dcm)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument(
        "--validate", action=argparse.BooleanOptionalAction, default=True,
        help="check each file with pydicom and dciodvfy (default on)",
    )
    p.add_argument("--count", type=int, default=0, help="exit after N objects")
    p.add_argument("--timeout", type=float, default=0, help="exit after S seconds")
    p.set_defaults(func=run)
