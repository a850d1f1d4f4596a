"""Acquisition benchmark: frames/s from `modgate simulate-modality` over TCP into the device.

usage: python tools/bench_ingest.py [--runtime micropython|qemu-armhf ...] [--frames N]
                                    [--size 512x512] [--format GRAY16] [--chunk BYTES] [--stage ingest]

Stage `ingest` (what exists today): the real frame input (TcpInput, FrameLink, FrameReceiver)
on the chosen runtime in front of tests/e2e/ingest_device.py's file sink (each frame written,
fsynced and renamed before its ACK). It measures the frame input alone.
Stage `archive`: the whole device, the emulated board's `run` job under the board heap, with
acquire -> DICOM writer -> spool -> C-STORE; the clock stops when the last object is stored at the
archive (dcmtk storescp with TCP_NODELAY=1), not at the last ACK.
Not a timed test: run it by hand (inside tools/netns) and copy the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from ingest_harness import Device  # noqa: E402
from modgate_host.commands.simulate_modality import run_in_subprocess  # noqa: E402
from modgate_host.runtimes import available  # noqa: E402


def bench_ingest(runtime: str, frames: int, size: str, fmt: str, chunk: int) -> dict[str, object]:
    port = 43000 + int.from_bytes(os.urandom(2), "little") % 10000
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp)
        dev = Device(runtime, "tcp", str(port), folder, "--chunk", str(chunk), "--run-ms", "3600000")
        report = folder / "report.json"
        started = time.monotonic()
        data = run_in_subprocess(f"tcp://127.0.0.1:{port}", report, frames, size, fmt)
        wall = time.monotonic() - started
        dev.stop()
        if data["returncode"] != 0:
            raise SystemExit(f"simulator failed: {data['output']}\n{dev.log()}")
    acked = len(data["acked"])
    return {
        "runtime": runtime,
        "stage": "ingest",
        "frames": frames,
        "acked": acked,
        "frame": f"{size} {fmt}",
        "chunk_bytes": chunk,
        "seconds": round(data["elapsed_s"], 2),
        "frames_per_s": round(acked / data["elapsed_s"], 1),
        "mb_per_s": round(acked * _frame_bytes(size, fmt) / data["elapsed_s"] / 1e6, 1),
        "wall_s": round(wall, 2),
    }


def bench_archive(board: str, frames: int, size: str, fmt: str) -> dict[str, object]:
    sys.path.insert(0, str(REPO / "tests"))
    import peers
    from modgate_host.emulator import BOARD_RUNTIME, Emulator

    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        folder = Path(tmp)
        (folder / "archive").mkdir()
        report = folder / "report.json"
        with (
            peers.dcmtk_storescp(["+xa"], out_dir=folder / "archive", aet="ARCHIVE") as archive,
            Emulator(board, folder / "flash", dests=[f"ARCHIVE@127.0.0.1:{archive.port}"]) as device,
        ):
            data = run_in_subprocess(device.frames_url, report, frames, size, fmt, "--retry-for", "120")
            sent_done = time.monotonic()
            acked = len(data["acked"])
            # The clock runs from the simulator's first frame (its report's elapsed time, without
            # its interpreter start) until the last object is stored at the archive.
            until = sent_done + 600
            while len(list((folder / "archive").iterdir())) < acked and time.monotonic() < until:
                time.sleep(0.01)
            elapsed = data["elapsed_s"] + (time.monotonic() - sent_done)
        if data["returncode"] != 0:
            raise SystemExit(f"simulator failed: {data['output']}")
    return {
        "runtime": BOARD_RUNTIME[board],
        "stage": "archive",
        "frames": frames,
        "acked": acked,
        "busy": data["busy"],
        "frame": f"{size} {fmt}",
        "chunk_bytes": json.loads((REPO / "boards" / board / "board.json").read_text())["frame_chunk_bytes"],
        "seconds": round(elapsed, 2),
        "frames_per_s": round(acked / elapsed, 1),
        "mb_per_s": round(acked * _frame_bytes(size, fmt) / elapsed / 1e6, 1),
    }


def _frame_bytes(size: str, fmt: str) -> int:
    w, _, h = size.partition("x")
    return int(w) * int(h) * {"GRAY8": 1, "GRAY16": 2, "RGB888": 3, "RGB565": 2, "YUYV": 2}[fmt]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", action="append", choices=("cpython", "micropython", "qemu-armhf"))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--format", default="GRAY16")
    parser.add_argument("--chunk", type=int, default=16384)
    parser.add_argument("--stage", choices=("ingest", "archive"), default="ingest")
    args = parser.parse_args()
    rows = []
    for runtime in args.runtime or ["micropython", "qemu-armhf"]:
        if not available(runtime):
            print(f"skipping {runtime}: not installed", file=sys.stderr)
            continue
        frames = args.frames if runtime != "qemu-armhf" else max(10, args.frames // 4)
        if args.stage == "archive":
            board = "unix" if runtime == "micropython" else runtime
            rows.append(bench_archive(board, frames, args.size, args.format))
        else:
            rows.append(bench_ingest(runtime, frames, args.size, args.format, args.chunk))
        print(json.dumps(rows[-1]))
    print("\n| runtime | stage | frame | chunk | frames | frames/s | MB/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['runtime']} | {r['stage']} | {r['frame']} | {r['chunk_bytes']} | {r['acked']} | "
            f"{r['frames_per_s']} | {r['mb_per_s']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
