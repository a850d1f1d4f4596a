"""Smallest heap the device's send job needs on each emulated board's firmware image.

usage: tools/netns .venv/bin/python tools/bench_heap.py [--board unix] [--files 40] [--rows 512] [--tls]

The emulated boards run MicroPython with the firmware frozen in (host/modgate_host/image.py), as a
board's image carries it: bytecode in flash, only module objects and data in the GC heap. This
tool sends a set of Secondary Capture files to dcmtk `storescp --ignore` with the firmware's
`send` job at falling `-X heapsize=` values and prints the smallest that delivered every file,
with the job's own "heap in use" at the end, and the heap the firmware's modules take once all
are imported. Not a timed test.

--tls does the same over DICOM TLS (PS3.15 B.9): storescp with +tls and a certificate for
127.0.0.1 from a CA made with openssl for the run (tests/tls_peers.py), the job with --tls-ca; the
heaps tried start higher (a TLS association does not fit beside the job at plain TCP's bound).
The difference between the two bounds is what a TLS association costs the board.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "host")]

from modgate_host import image  # noqa: E402
from peers import dcmtk_storescp, make_sc  # noqa: E402
from tls_peers import Pki, storescp_tls  # noqa: E402

HEAPS_KB = (96, 80, 72, 64, 60, 56, 52, 48, 44, 40, 36, 32)
TLS_HEAPS_KB = (192, 160, 128, 112, 104, 96, 88, 80, 76, 72, 68, 64, 60, 56, 52, 48)
ALL_MODULES = ["modgate.app", "modgate.jobs.run", "modgate.jobs.send", "modgate.device",
               "modgate.console.shell"]


def send(board: str, heap_kb: int, port: int, files: list[Path], tls: list[str]) -> tuple[bool, str]:
    """(delivered all, the job's SUMMARY line or its last error line)."""
    argv = image.command(board, "send", "-aet", "MODGATE", "-aec", "STORESCP", *tls, "127.0.0.1", str(port),
                         *map(str, files), heap=f"{heap_kb}k")
    proc = subprocess.run(argv, env=image.environment(), capture_output=True, text=True, timeout=600)
    summary = next((line for line in proc.stdout.splitlines() if line.startswith("SUMMARY")), "")
    ok = proc.returncode == 0 and summary.startswith(f"SUMMARY {len(files)} sent, 0 failed")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return ok, summary or (lines[-1] if lines else "no output")


def smallest_heap(board: str, files: list[Path], pki: Pki | None) -> tuple[int | None, str]:
    smallest, smallest_summary = None, ""
    peer_tls: list[str] = []
    job_tls: list[str] = []
    if pki is not None:
        cert, key = pki.issue("bench-" + board, "IP:127.0.0.1")
        peer_tls, job_tls = storescp_tls(pki.ca, cert, key), ["--tls-ca", str(pki.ca)]
    with dcmtk_storescp(["--ignore", *peer_tls]) as peer:
        for heap_kb in TLS_HEAPS_KB if pki else HEAPS_KB:
            ok, summary = send(board, heap_kb, peer.port, files, job_tls)
            print(f"  -X heapsize={heap_kb}k: {'delivered' if ok else 'FAILED'}  {summary}")
            if not ok:
                break
            smallest, smallest_summary = heap_kb, summary
    return smallest, smallest_summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", action="append", choices=sorted(image.BOARD_OF_RUNTIME.values()))
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--tls", action="store_true", help="send over DICOM TLS")
    args = parser.parse_args()
    failed = False
    over = " over TLS" if args.tls else ""
    with tempfile.TemporaryDirectory() as work:
        pki = Pki(Path(work) / "pki") if args.tls else None
        files = [make_sc(Path(work) / f"sc{i:03d}.dcm", args.rows, args.rows, seed=i)
                 for i in range(args.files)]
        for board in args.board or sorted(image.BOARD_OF_RUNTIME.values()):
            resident = image.imported_heap(board, ALL_MODULES)
            print(f"board {board}: all firmware modules imported = {resident} bytes of heap")
            smallest, summary = smallest_heap(board, files, pki)
            if smallest is None:
                print(f"board {board}: the send job did not deliver{over} at any heap tried")
                failed = True
                continue
            match = re.search(r"heap in use (\d+)", summary)
            in_use = f" (in use {match.group(1)} bytes at the end)" if match else ""
            print(f"board {board}: smallest heap that delivered {args.files} x {args.rows}x{args.rows}"
                  f" files{over}: {smallest}k{in_use}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
