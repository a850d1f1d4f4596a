"""`modgate send`: run the device's C-STORE SCU (firmware job `send`) on Part 10 files.

Flags follow dcmtk's storescu: -aet (our AE title), -aec (the called AE title), -pdu (max PDU we
receive), -to/-ta/-td (connect, ACSE and DIMSE timeouts in seconds). `--runtime` picks where the
device code runs: on the MicroPython runtimes, the board's firmware image with the code frozen in,
as on a board, so `--heap 64k` limits the device's data as a board's RAM does.
Prints the device's line per file; exit 0 when every file was delivered, 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from modgate_host.runtimes import RUNTIMES, RuntimeUnavailable, firmware_process


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=RUNTIMES, default="micropython", help="where the device code runs")
    p.add_argument("--heap", help="MicroPython heap limit, e.g. 64k (a board's RAM for data)")
    p.add_argument("-aet", "--aetitle", default="MODGATE", help="our (calling) AE title")
    p.add_argument("-aec", "--call", default="ANY-SCP", help="the peer's (called) AE title")
    p.add_argument("-pdu", "--max-pdu", type=int, help="max PDU length we receive (4096..131072)")
    p.add_argument("-to", "--connect-timeout", type=float, help="TCP connect timeout, seconds")
    p.add_argument("-ta", "--acse-timeout", type=float, help="ACSE timeout, seconds")
    p.add_argument("-td", "--dimse-timeout", type=float, help="DIMSE timeout, seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="device debug log on stderr")
    p.add_argument("host")
    p.add_argument("port", type=int)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("send", help="send Part 10 files with the device's C-STORE SCU")
    add_common(p)
    p.add_argument("files", nargs="+", type=Path, help="Part 10 files, or folders of them (as storescu +sd)")
    p.add_argument("--max-objects", type=int, help="objects per association before an A-RELEASE")
    p.set_defaults(func=run)


def job_args(args: argparse.Namespace) -> list[str]:
    """Firmware job arguments shared by send and echo."""
    out = ["-aet", args.aetitle, "-aec", args.call]
    if args.max_pdu:
        out += ["-pdu", str(args.max_pdu)]
    timeouts = [args.connect_timeout, args.acse_timeout, args.dimse_timeout]
    if any(t is not None for t in timeouts):
        out += ["--timeouts", ",".join("" if t is None else str(int(t * 1000)) for t in timeouts)]
    if args.verbose:
        out.append("-v")
    return out


def run_job(runtime: str, job: str, job_argv: list[str], heap: str | None) -> int:
    try:
        argv, env = firmware_process(runtime, job, *job_argv, heap=heap)
        proc = subprocess.run(argv, env=env)
    except RuntimeUnavailable as exc:
        print(f"modgate: {exc}", file=sys.stderr)
        return 2
    return proc.returncode if proc.returncode in (0, 1, 2) else 1


def run(args: argparse.Namespace) -> int:
    job_argv = job_args(args)
    if args.max_objects:
        job_argv += ["--max-objects", str(args.max_objects)]
    # The names go over in a list file the device reads one line at a time: as arguments, 200
    # paths would cost the device ~13 KB of heap before it sent anything.
    with tempfile.NamedTemporaryFile("w", prefix="modgate-send-", suffix=".txt") as listing:
        listing.write("".join(f"{Path(f).absolute()}\n" for f in args.files))
        listing.flush()
        job_argv += ["--files-from", listing.name, args.host, str(args.port)]
        return run_job(args.runtime, "send", job_argv, args.heap)
