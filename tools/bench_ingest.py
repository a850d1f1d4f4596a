"""Acquisition benchmark: frames/s from `modgate simulate-modality` over TCP into the device.

usage: python tools/bench_ingest.py [--runtime micropython|qemu-armhf ...] [--frames N]
                                    [--size 512x512] [--format GRAY16] [--chunk BYTES] [--stage ingest]

Stage `ingest` (what exists today): the real frame input (TcpInput, FrameLink, FrameReceiver)
on the chosen runtime in front of tests/e2e/ingest_device.py's file sink (each frame written,
fsynced and renamed before its ACK). It measures the frame input alone.
Stage `archive`: the whole device, the emulated board's `run` job under the board heap, with
acquire -> DICOM writer -> spool -> C-STORE; the clock stops when the last object is stored at the
archive (dcmtk storescp with TCP_NODELAY=1), not at the last ACK.
Stage `during-send`: the whole device again. With its network cable pulled it acquires one large
object (`--big-mb`, a series of 512x512 GRAY16 frames), then the frame rate is measured twice:
with nothing being sent, and while that object streams to an archive that reads at `--archive-mbps`
(so the C-STORE lasts longer than the frames take); each measured run is one cine series. Reports
both rates, their ratio, whether the
send was still running when the frames were done, and the loop's longest stall (`status`).
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


def bench_during_send(board: str, frames: int, size: str, fmt: str, big_mb: int,
                      archive_mbps: float) -> dict[str, object]:
    sys.path.insert(0, str(REPO / "tests"))
    import peers
    from modgate_host.emulator import BOARD_RUNTIME, Emulator
    from modgate_host.transport import DeviceConsole

    big_frames = max(1, big_mb * 1_000_000 // (512 * 512 * 2))
    with tempfile.TemporaryDirectory(prefix="bench-during-") as tmp:
        folder = Path(tmp)
        config = folder / "config.json"
        config.write_text(json.dumps({"spool_budget_bytes": (big_mb + 300) << 20}))
        archive = peers.SlowArchive(rate=archive_mbps * 1e6)
        with archive, Emulator(board, folder / "flash", config=config,
                               dests=[f"ARCHIVE@127.0.0.1:{archive.port}"]) as device:
            device.set_link(False)  # hold deliveries while the large object and the baseline go in
            big = run_in_subprocess(device.frames_url, folder / "big.json", big_frames, "512x512", "GRAY16",
                                    "--series", str(big_frames), timeout_s=3600)
            assert len(big["acked"]) == big_frames, big["output"]
            # The measured acquisition is a cine run: one queue entry, as a real series is.
            alone = run_in_subprocess(device.frames_url, folder / "alone.json", frames, size, fmt,
                                      "--series", str(frames))
            device.set_link(True)
            until = time.monotonic() + 120
            while archive.received_bytes < 1_000_000 and time.monotonic() < until:
                time.sleep(0.01)
            busy = run_in_subprocess(device.frames_url, folder / "busy.json", frames, size, fmt,
                                     "--series", str(frames))
            refused = (alone["nacked"][:3], busy["nacked"][:3],
                       [line for line in device.log_tail(400).splitlines() if "ERROR" in line][:5])
            assert len(busy["acked"]) == frames == len(alone["acked"]), refused
            overlapped = not archive.stored  # the large object was still on its way
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                status = console.call("status")
    rate_alone = len(alone["acked"]) / alone["elapsed_s"]
    rate_busy = len(busy["acked"]) / busy["elapsed_s"]
    return {
        "runtime": BOARD_RUNTIME[board],
        "stage": "during-send",
        "frame": f"{size} {fmt}",
        "frames": frames,
        "big_object_mb": round(big_frames * 512 * 512 * 2 / 1e6),
        "frames_per_s_alone": round(rate_alone, 1),
        "frames_per_s_during_send": round(rate_busy, 1),
        "ratio": round(rate_busy / rate_alone, 2),
        "send_outlasted_frames": overlapped,
        "loop_stall_max_ms": status["loop_stall_max_ms"],
        "loop_stall_max_after": status["loop_stall_max_after"],
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
    parser.add_argument("--stage", choices=("ingest", "archive", "during-send"), default="ingest")
    parser.add_argument("--big-mb", type=int, default=256, help="during-send: the object being sent")
    parser.add_argument("--archive-mbps", type=float, default=40.0, help="during-send: the archive's rate")
    args = parser.parse_args()
    rows = []
    for runtime in args.runtime or ["micropython", "qemu-armhf"]:
        if not available(runtime):
            print(f"skipping {runtime}: not installed", file=sys.stderr)
            continue
        frames = args.frames if runtime != "qemu-armhf" else max(10, args.frames // 4)
        board = "unix" if runtime == "micropython" else runtime
        if args.stage == "during-send":
            rows.append(bench_during_send(board, frames, args.size, args.format, args.big_mb,
                                          args.archive_mbps))
            print(json.dumps(rows[-1]))
            continue
        if args.stage == "archive":
            rows.append(bench_archive(board, frames, args.size, args.format))
        else:
            rows.append(bench_ingest(runtime, frames, args.size, args.format, args.chunk))
        print(json.dumps(rows[-1]))
    if args.stage == "during-send":
        print("\n| runtime | frame | frames | object sent | frames/s alone | frames/s during send | ratio "
              "| send outlasted the frames | longest loop stall |")
        print("|---|---|---:|---:|---:|---:|---:|---|---:|")
        for r in rows:
            print(f"| {r['runtime']} | {r['frame']} | {r['frames']} | {r['big_object_mb']} MB | "
                  f"{r['frames_per_s_alone']} | {r['frames_per_s_during_send']} | {r['ratio']} | "
                  f"{'yes' if r['send_outlasted_frames'] else 'no'} | {r['loop_stall_max_ms']} ms "
                  f"(after {r['loop_stall_max_after']}) |")
        return 0
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
