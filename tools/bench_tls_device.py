"""Heap of a DICOM TLS delivery on the whole emulated device, at each heap tried.

usage: tools/netns .venv/bin/python tools/bench_tls_device.py [--board qemu-armhf] [--heap 98304 ...]
       [--objects 3] [--plain]

Boots the board's firmware image (`modgate emulate`'s Emulator) at each `-X heapsize=` with one
TLS destination, a dcmtk `storescp +tls` whose certificate a CA made with openssl for the run
signs (tests/tls_peers.py), sends `--objects` frames from `modgate simulate-modality`, and prints
a Markdown row per heap: the `status` heap fields after boot and after the deliveries (or the
last error when nothing arrived within 90 s). tools/bench_heap.py --tls measures the send job
alone; this measures the device with its other tasks, whose heap is fragmented by then. Not a
timed test. --plain does the same over plain TCP, for comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e"), str(ROOT / "host")]

import peers  # noqa: E402
import tls_peers  # noqa: E402
from device_harness import simulate, wait_for_files  # noqa: E402
from modgate_host.emulator import Emulator  # noqa: E402
from modgate_host.transport import DeviceConsole  # noqa: E402

PIN = "7531"


def heap_status(device: Emulator) -> dict:
    with DeviceConsole(device.console_path, timeout_s=60) as console:
        return dict(console.call("status"))


def one_heap(board: str, heap: int, objects: int, work: Path, pki: tls_peers.Pki,
             cert: tuple[Path, Path], tls: bool) -> str:
    rx = work / "rx"
    rx.mkdir(parents=True)
    secure = tls_peers.storescp_tls(pki.ca, *cert) if tls else []
    with peers.dcmtk_storescp(["+xa", *secure], out_dir=rx, aet="PACS") as scp:
        state = work / "flash"
        (state / "tls").mkdir(parents=True)
        shutil.copy(pki.ca, state / "tls" / "ca.pem")  # tls_ca_file's default place
        dest = {"name": "pacs", "aet": "PACS", "host": "127.0.0.1", "port": scp.port, "tls": tls}
        cfg = work / "config.json"
        cfg.write_text(json.dumps({"pin": PIN, "destinations": [dest]}))
        with Emulator(board, state, config=cfg, heap=str(heap)) as device:
            boot = heap_status(device)["heap"]
            simulate(device.frames_url, work / "modality.json", objects, "64x64", "GRAY16")
            try:
                arrived = len(wait_for_files(rx, objects, timeout=90))
            except AssertionError:
                arrived = len(list(rx.iterdir()))
            after = heap_status(device)
    queue = after["queue"]["destinations"]["pacs"]
    outcome = f"{arrived} of {objects} delivered"
    if arrived < objects:
        outcome += f": {queue['last_error']}"
    lowest = after["heap"]["free_min"]
    label = board if tls else board + ", plain TCP"
    return f"| {label} | {heap // 1024} KB | {boot['free']} | {boot['free_min']} | {lowest} | {outcome} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="qemu-armhf", choices=["qemu-armhf", "unix"])
    parser.add_argument("--heap", type=int, action="append")
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="a plain TCP destination instead")
    args = parser.parse_args()
    print("| board | -X heapsize | status heap.free, booted | heap.free_min, booted | heap.free_min, after"
          " | outcome |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="mg-tlsdev-") as tmp:
        work = Path(tmp)
        pki = tls_peers.Pki(work / "pki")
        cert = pki.issue("archive", "IP:127.0.0.1")
        for heap in args.heap or [98304, 114688, 131072, 147456, 163840, 196608]:
            print(one_heap(args.board, heap, args.objects, work / str(heap), pki, cert, not args.plain),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
