"""Benchmark the device's C-STORE SCU against dcmtk storescu and pynetdicom storescu.

usage: tools/netns .venv/bin/python tools/bench_send.py [--runtime micropython] [--runtime qemu-armhf]
       [--heap 64k] [--small 200] [--large 10] [--work DIR]

Makes 200 x 256 KB and 10 x 8 MB Secondary Capture files (pydicom), starts dcmtk
`storescp --ignore` (TCP_NODELAY=1) and sends each set with every sender, in the same run, on the
same files. The device is given each set's folder (its `send` job reads the names one at a time,
as storescu's +sd), the desktop tools the file list. Prints objects/s, MB/s and the ratio to dcmtk
storescu as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "host"), str(ROOT / "firmware")]

from modgate_host.runtimes import available  # noqa: E402
from peers import dcmtk_storescp, make_sc, run_device  # noqa: E402


def make_set(folder: Path, count: int, rows: int, cols: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("*.dcm"))
    if len(files) == count:
        return files
    for old in files:  # the device is given the folder: it must hold this set only
        old.unlink()
    return [make_sc(folder / f"{i:04d}.dcm", rows, cols, seed=i) for i in range(count)]


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed, proc.stdout


def run_seconds(argv: list[str], env: dict[str, str]) -> float:
    return timed(argv, env)[0]


def device_seconds(runtime: str, heap: str | None, port: int, folder: Path) -> float:
    start = time.monotonic()
    proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(port), str(folder)],
                      runtime, heap=heap, timeout=3600)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"device on {runtime} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", action="append", choices=("micropython", "qemu-armhf", "cpython"))
    parser.add_argument("--heap", default="64k")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="runs per sender; the median is reported")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "modgate-bench")
    args = parser.parse_args()
    runtimes = [r for r in (args.runtime or ["micropython", "qemu-armhf"]) if available(r)]
    sets = [
        (f"{args.small} x 256 KB", make_set(args.work / "small", args.small, 362, 362)),
        (f"{args.large} x 8 MB", make_set(args.work / "large", args.large, 2048, 2048)),
    ]
    nodelay = dict(os.environ, TCP_NODELAY="1")
    plain = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    print("| set | sender | s, median (range) | objects/s | MB/s | vs dcmtk storescu |")
    print("|---|---|---|---|---|---|")
    with dcmtk_storescp(["--ignore"]) as peer:
        port = str(peer.port)
        for runtime in runtimes:  # build the images and warm caches outside the timings
            run_device("echo", ["-aec", "STORESCP", "127.0.0.1", port], runtime,
                       heap=None if runtime == "cpython" else args.heap)
        for name, files in sets:
            megabytes = sum(f.stat().st_size for f in files) / 1e6
            storescu = ["/usr/bin/storescu", "-aec", "STORESCP", "127.0.0.1", port, *map(str, files)]
            pynetdicom = [sys.executable, "-m", "pynetdicom", "storescu", "-aec", "STORESCP", "127.0.0.1",
                          port, *map(str, files)]
            senders: list[tuple[str, Callable[[], float]]] = [
                ("dcmtk storescu", partial(run_seconds, storescu, plain)),
                ("dcmtk storescu, TCP_NODELAY=1", partial(run_seconds, storescu, nodelay)),
                ("pynetdicom storescu", partial(run_seconds, pynetdicom, plain)),
            ]
            for runtime in runtimes:
                heap = None if runtime == "cpython" else args.heap
                label = f"modgate on {runtime}" + (f" (-X heapsize={heap})" if heap else "")
                senders.append((label, partial(device_seconds, runtime, heap, peer.port, files[0].parent)))
            # Rounds interleave the senders, so a slow spell of the machine hits all of them alike;
            # the median of the rounds is reported (dcmtk storescu's own time varies the most).
            times: dict[str, list[float]] = {label: [] for label, _ in senders}
            for _ in range(args.rounds):
                for label, run in senders:
                    times[label].append(run())
            base = statistics.median(times[senders[0][0]])
            for label, _ in senders:
                median = statistics.median(times[label])
                spread = f"{min(times[label]):.2f}-{max(times[label]):.2f}"
                print(f"| {name} | {label} | {median:.2f} ({spread}) | {len(files) / median:.1f} | "
                      f"{megabytes / median:.1f} | {base / median:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
