"""Benchmark the device's C-STORE SCU against dcmtk storescu at its best setting, on the same CPU.

usage: tools/netns .venv/bin/python tools/bench_send.py [--cpu x86-64] [--cpu armhf] [--heap 64k ...]
       [--small 200] [--large 10] [--rounds 5] [--work DIR] [--tls]

Makes 200 x 256 KB and 10 x 8 MB Secondary Capture files (pydicom) and sends each set into one
dcmtk `storescp --ignore` (TCP_NODELAY=1), in the same run, on the same files, in interleaved
rounds (the median is reported, with the range):
- x86-64: the unix firmware image (x86-64 MicroPython, code frozen) against the host's native
  dcmtk storescu 3.6.7 and pynetdicom's storescu;
- armhf: the qemu-armhf firmware image against Debian's armhf dcmtk storescu (the same 3.6.7,
  tools/fetch_armhf_dcmtk.sh) under the same qemu-arm.
dcmtk storescu runs with TCP_NODELAY=1 in its environment: without it Nagle's algorithm holds
each object's last segment ~40 ms, which measures Nagle, not the sender; that run is kept as a
footnote row. Each time is the wall clock of the sender's whole process (start-up included). The
device is given the set's folder (its `send` job reads the names one at a time); the others the
file list. `vs ceiling` divides the receiver's own limit (tools/bench_receiver.py: the set's
bytes prebuilt and written at once) by the sender's time. Prints a Markdown table.

--tls runs the same over DICOM TLS (PS3.15 B.9): storescp and storescu with +tls (dcmtk's
default BCP 195 profile, OpenSSL), the device's `send --tls-ca`, certificates made with openssl
for the run (tests/tls_peers.py); no pynetdicom row and no ceiling (the ceiling is plain TCP).
The device's heaps default to 96k and 192k there: a TLS association does not fit in 64k.
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "host"), str(ROOT / "tools")]

from bench_receiver import ceiling_seconds  # noqa: E402
from modgate_host.runtimes import available  # noqa: E402
from peers import dcmtk_storescp, make_sc, run_device  # noqa: E402
from tls_peers import Pki, storescp_tls  # noqa: E402

RUNTIME_OF_CPU = {"x86-64": "micropython", "armhf": "qemu-armhf"}


def make_set(folder: Path, count: int, rows: int, cols: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("*.dcm"))
    if len(files) == count:
        return files
    for old in files:  # the device is given the folder: it must hold this set only
        old.unlink()
    return [make_sc(folder / f"{i:04d}.dcm", rows, cols, seed=i) for i in range(count)]


def run_seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed


def device_seconds(runtime: str, heap: str, port: int, folder: Path, tls: list[str]) -> float:
    start = time.monotonic()
    proc = run_device("send", ["-aec", "STORESCP", *tls, "127.0.0.1", str(port), str(folder)],
                      runtime, heap=heap, timeout=3600)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"device on {runtime} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed


def armhf_storescu() -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment of Debian's armhf storescu under qemu-arm."""
    sysroot = subprocess.run(["bash", str(ROOT / "tools" / "fetch_armhf_dcmtk.sh")], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    env = dict(os.environ, DCMDICTPATH=f"{sysroot}/usr/share/libdcmtk17/dicom.dic")
    return ["qemu-arm", "-L", sysroot, f"{sysroot}/usr/bin/storescu"], env


Sender = tuple[str, Callable[[], float]]


class Tls:
    """The run's TLS material: a CA and a certificate for 127.0.0.1 (client and server alike)."""

    def __init__(self, work: Path) -> None:
        pki = Pki(work / "pki")
        self.ca = pki.ca
        self.cert, self.key = pki.issue("bench", "IP:127.0.0.1")

    def storescp(self) -> list[str]:
        return storescp_tls(self.ca, self.cert, self.key)

    def storescu(self) -> list[str]:
        return ["+tls", str(self.key), str(self.cert), "-pw", "+cf", str(self.ca)]

    def device(self) -> list[str]:
        return ["--tls-ca", str(self.ca)]


def senders_for(cpu: str, heaps: list[str], port: int, files: list[Path],
                tls: Tls | None = None) -> list[Sender]:
    """(label, run) of each sender on `cpu`, the baseline (dcmtk at its best) first."""
    secure = tls.storescu() if tls else []
    args = ["-aec", "STORESCP", *secure, "127.0.0.1", str(port), *map(str, files)]
    over = " over TLS" if tls else ""
    device_tls = tls.device() if tls else []
    if cpu == "x86-64":
        prefix, env = ["/usr/bin/storescu"], dict(os.environ)
    else:
        prefix, env = armhf_storescu()
    env.pop("TCP_NODELAY", None)
    nodelay = dict(env, TCP_NODELAY="1")
    runtime = RUNTIME_OF_CPU[cpu]
    senders: list[Sender] = [
        (f"dcmtk storescu {cpu}{over}, TCP_NODELAY=1", partial(run_seconds, prefix + args, nodelay)),
    ]
    for heap in heaps:  # the job sizes its PDU buffer to the heap it has (jobs/send.py)
        senders.append((f"modgate {runtime} image{over} (-X heapsize={heap})",
                        partial(device_seconds, runtime, heap, port, files[0].parent, device_tls)))
    if cpu == "x86-64" and not tls:
        pynetdicom = [sys.executable, "-m", "pynetdicom", "storescu", *args]
        senders.append(("pynetdicom storescu x86-64", partial(run_seconds, pynetdicom, dict(os.environ))))
    footnote = f"footnote: dcmtk storescu {cpu}{over}, Nagle on (its default)"
    senders.append((footnote, partial(run_seconds, prefix + args, env)))
    return senders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="append", choices=tuple(RUNTIME_OF_CPU))
    parser.add_argument("--heap", action="append", help="device heaps (default 64k, 96k)")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="runs per sender; the median is reported")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "modgate-bench")
    parser.add_argument("--tls", action="store_true", help="every sender over DICOM TLS")
    args = parser.parse_args()
    cpus = [c for c in (args.cpu or list(RUNTIME_OF_CPU)) if available(RUNTIME_OF_CPU[c])]
    heaps = args.heap or (["96k", "192k"] if args.tls else ["64k", "96k"])
    tls = Tls(args.work) if args.tls else None
    sets = [
        (f"{args.small} x 256 KB", make_set(args.work / "small", args.small, 362, 362)),
        (f"{args.large} x 8 MB", make_set(args.work / "large", args.large, 2048, 2048)),
    ]
    print("| set | CPU | sender | s, median (range) | objects/s | MB/s | vs dcmtk at its best | vs ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    with dcmtk_storescp(["--ignore", *(tls.storescp() if tls else [])]) as peer:
        for cpu in cpus:  # build the image and warm caches outside the timings
            device_tls = tls.device() if tls else []
            run_device("echo", ["-aec", "STORESCP", *device_tls, "127.0.0.1", str(peer.port)],
                       RUNTIME_OF_CPU[cpu], heap=heaps[0])
        for name, files in sets:
            megabytes = sum(f.stat().st_size for f in files) / 1e6
            ceiling = None
            if not tls:  # the receiver's limit over plain TCP only
                ceiling = statistics.median(ceiling_seconds(peer.port, files) for _ in range(args.rounds))
            for cpu in cpus:
                senders = senders_for(cpu, heaps, peer.port, files, tls)
                # Rounds interleave the senders, so a slow spell of the machine hits all alike.
                times: dict[str, list[float]] = {label: [] for label, _ in senders}
                for _ in range(args.rounds):
                    for label, run in senders:
                        times[label].append(run())
                base = statistics.median(times[senders[0][0]])
                for label, _ in senders:
                    median = statistics.median(times[label])
                    spread = f"{min(times[label]):.2f}-{max(times[label]):.2f}"
                    versus = "-" if ceiling is None else f"{ceiling / median:.2f}"
                    print(f"| {name} | {cpu} | {label} | {median:.2f} ({spread}) | "
                          f"{len(files) / median:.1f} | {megabytes / median:.1f} | {base / median:.2f}x | "
                          f"{versus} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
