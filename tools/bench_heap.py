"""Smallest heap the device's send job needs on each emulated board's firmware image.

usage: tools/netns .venv/bin/python tools/bench_heap.py [--board unix] [--files 40] [--rows 512]

The emulated boards run MicroPython with the firmware frozen in (host/modgate_host/image.py), as a
board's image carries it: bytecode in flash, only module objects and data in the GC heap. This
tool sends a set of Secondary Capture files to dcmtk `storescp --ignore` with the firmware's
`send` job at falling `-X heapsize=` values and prints the smallest that delivered every file,
with the job's own "heap in use" at the end, and the heap the firmware's modules take once all
are imported. Not a timed test.
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

HEAPS_KB = (96, 80, 72, 64, 60, 56, 52, 48, 44, 40, 36, 32)
ALL_MODULES = ["modgate.app", "modgate.jobs.run", "modgate.jobs.send", "modgate.device",
               "modgate.console.shell"]


def send(board: str, heap_kb: int, port: int, files: list[Path]) -> tuple[bool, str]:
    """(delivered all, the job's SUMMARY line or its last error line)."""
    argv = image.command(board, "send", "-aet", "MODGATE", "-aec", "STORESCP", "127.0.0.1", str(port),
                         *map(str, files), heap=f"{heap_kb}k")
    proc = subprocess.run(argv, env=image.environment(), capture_output=True, text=True, timeout=600)
    summary = next((line for line in proc.stdout.splitlines() if line.startswith("SUMMARY")), "")
    ok = proc.returncode == 0 and summary.startswith(f"SUMMARY {len(files)} sent, 0 failed")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return ok, summary or (lines[-1] if lines else "no output")


def smallest_heap(board: str, files: list[Path]) -> tuple[int | None, str]:
    smallest, smallest_summary = None, ""
    with dcmtk_storescp(["--ignore"]) as peer:
        for heap_kb in HEAPS_KB:
            ok, summary = send(board, heap_kb, peer.port, files)
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
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as work:
        files = [make_sc(Path(work) / f"sc{i:03d}.dcm", args.rows, args.rows, seed=i)
                 for i in range(args.files)]
        for board in args.board or sorted(image.BOARD_OF_RUNTIME.values()):
            resident = image.imported_heap(board, ALL_MODULES)
            print(f"board {board}: all firmware modules imported = {resident} bytes of heap")
            smallest, summary = smallest_heap(board, files)
            if smallest is None:
                print(f"board {board}: the send job did not deliver at any heap tried")
                failed = True
                continue
            match = re.search(r"heap in use (\d+)", summary)
            in_use = f" (in use {match.group(1)} bytes at the end)" if match else ""
            print(f"board {board}: smallest heap that delivered {args.files} x {args.rows}x{args.rows}"
                  f" files: {smallest}k{in_use}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
