"""Smallest heap the device's send job needs when the firmware is frozen, as on a real board.

usage: tools/netns .venv/bin/python tools/bench_frozen_heap.py [--files 40] [--rows 512]

The emulators load the firmware's .mpy files into the GC heap (the unix port cannot run code from
flash), so their heap holds code and data. A board's image carries the firmware frozen: bytecode
in flash, only module objects and data in the heap. This tool builds that image for x86-64
(tools/build_frozen.sh: MicroPython's unix port from Debian's source of the armhf build's version,
firmware frozen in), then sends a set of Secondary Capture files to dcmtk `storescp --ignore`
with the firmware's `send` job at falling `-X heapsize=` values and prints the smallest that
delivered every file, with the job's own "heap in use". Not a timed test.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from peers import dcmtk_storescp, make_sc  # noqa: E402

HEAPS_KB = (96, 80, 72, 64, 60, 56, 52, 48, 44, 40)


def send(interpreter: str, entry: Path, heap_kb: int, port: int, files: list[Path]) -> tuple[bool, str]:
    """(delivered all, the job's SUMMARY line or its last error line)."""
    argv = [interpreter, "-X", f"heapsize={heap_kb}k", str(entry), "send",
            "-aet", "MODGATE", "-aec", "STORESCP", "127.0.0.1", str(port), *map(str, files)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=entry.parent)
    summary = next((line for line in proc.stdout.splitlines() if line.startswith("SUMMARY")), "")
    ok = proc.returncode == 0 and summary.startswith(f"SUMMARY {len(files)} sent, 0 failed")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return ok, summary or (lines[-1] if lines else "no output")


def imported_heap(interpreter: str) -> int:
    """Heap bytes the firmware's modules take once all are imported (frozen: objects, no code)."""
    code = ("import gc\ngc.collect()\na=gc.mem_alloc()\n"
            "import modgate.app, modgate.jobs.run, modgate.jobs.send, modgate.device, modgate.console.shell\n"
            "gc.collect()\nprint(gc.mem_alloc()-a)\n")
    out = subprocess.run([interpreter, "-X", "heapsize=256k", "-c", code], capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir()).stdout
    return int(out.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    interpreter = subprocess.run([str(ROOT / "tools" / "build_frozen.sh")], capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
    show_version = "import sys; print('.'.join(str(n) for n in sys.implementation.version[:3]))"
    version = subprocess.run([interpreter, "-c", show_version], capture_output=True, text=True,
                             check=True).stdout.strip()
    print(f"interpreter: {interpreter} (MicroPython {version} unix port x86-64, firmware frozen)")
    print(f"all firmware modules imported: {imported_heap(interpreter)} bytes of heap")
    with tempfile.TemporaryDirectory() as work:
        # The entry point is copied out of firmware/: next to it, the source files would be
        # imported instead of the frozen modules.
        entry = Path(work) / "main.py"
        entry.write_bytes((ROOT / "firmware" / "main.py").read_bytes())
        files = [make_sc(Path(work) / f"sc{i:03d}.dcm", args.rows, args.rows, seed=i)
                 for i in range(args.files)]
        smallest, smallest_summary = None, ""
        with dcmtk_storescp(["--ignore"]) as peer:
            for heap_kb in HEAPS_KB:
                ok, summary = send(interpreter, entry, heap_kb, peer.port, files)
                print(f"-X heapsize={heap_kb}k: {'delivered' if ok else 'FAILED'}  {summary}")
                if not ok:
                    break
                smallest, smallest_summary = heap_kb, summary
    if smallest is None:
        print("the send job did not deliver at any heap tried")
        return 1
    match = re.search(r"heap in use (\d+)", smallest_summary)
    in_use = f" (in use {match.group(1)} bytes at the end)" if match else ""
    print(f"smallest heap that delivered {args.files} x {args.rows}x{args.rows} files: {smallest}k{in_use}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
