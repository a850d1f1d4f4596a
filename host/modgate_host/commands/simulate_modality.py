"""`modgate simulate-modality`: a legacy modality that sends test-pattern frames with frame protocol v1.

It sends one frame at a time and waits for its answer (docs/frame-protocol.md, exchange rule 1).
With --faults it damages that fraction of frames on the wire (seeded): `crc` (a flipped byte:
the device must NAK CRC), `truncate` (the frame stops: NAK TIMEOUT after the device's frame
timeout) and `garbage` (noise before an intact frame: the device must resynchronise and ACK).
A damaged frame is not resent. With --retry-for it behaves like a modality that keeps its images
until they are acknowledged: after a dropped connection it reconnects and resends.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modgate_host.frameproto import (
    ACK,
    BUSY,
    NAK,
    PIXEL_FORMATS,
    FrameHeader,
    Response,
    ResponseParser,
    encode_frame,
)
from modgate_host.progress import Progress
from modgate_host.runtimes import firmware_module
from modgate_host.transport import TransportError, open_port

FAULT_KINDS = ("crc", "truncate", "garbage")

# The frame context facts of a synthetic test pattern (docs/frame-protocol.md, Context).
SOURCE_FACTS = {"conversion_type": "SYN", "burned_in_annotation": "NO"}


class LinkDown(Exception):
    """The connection to the device dropped (or could not be opened)."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate-modality",
        help="send test-pattern frames to a device like a legacy modality (frame protocol v1)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", required=True, help="tcp://HOST:PORT or serial:///dev/ttyX")
    p.add_argument("--frames", type=int, default=10, help="number of frames (default 10)")
    p.add_argument("--size", default="512x512", help="WxH (default 512x512)")
    p.add_argument("--format", default="GRAY16", choices=sorted(PIXEL_FORMATS), help="pixel format")
    p.add_argument("--bits", type=int, default=None, help="bits stored for GRAY16 (default 16)")
    p.add_argument(
        "--series",
        type=int,
        default=0,
        metavar="K",
        help="group frames into series of K (series markers); default: single frames",
    )
    p.add_argument(
        "--rate", type=float, default=0.0, metavar="FPS", help="frames per second (default: flat out)"
    )
    p.add_argument(
        "--faults", type=float, default=0.0, metavar="RATE", help="fraction of frames damaged on the wire"
    )
    p.add_argument("--seed", type=int, default=1, help="seed for the fault choice (default 1)")
    p.add_argument(
        "--retry-for",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after a dropped connection, reconnect and resend for up to this long",
    )
    p.add_argument(
        "--response-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for an answer before resending (default 10)",
    )
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    p.add_argument("--context", default=None,
                   help="JSON object sent as the frame context (patient, study, facts); it adds to or "
                        "replaces the facts the simulator states: synthetic, no burned-in annotation")
    p.add_argument("--sequence-start", type=int, default=None, help="first sequence number (default random)")
    p.add_argument(
        "--report", type=Path, default=None, metavar="FILE.json", help="write the JSON report here"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# -- pixel content ------------------------------------------------------------------------------


def pattern_rows(fmt: str, width: int, height: int, bits: int | None) -> Callable[[int], Iterator[bytes]]:
    """rows(frame) of the firmware's deterministic test pattern (the device's own code, shipped
    with the host), so the receiving end can compare pixels."""
    pattern = firmware_module("modgate.testpattern").Pattern(fmt, width, height, bits)

    def rows(frame: int) -> Iterator[bytes]:
        for y in range(height):
            yield bytes(pattern.row(y, frame))

    return rows


# -- transport -----------------------------------------------------------------------------------


def serial_url(to: str) -> str:
    if to.startswith("tcp://"):
        return "socket://" + to[len("tcp://") :]
    if to.startswith("serial://"):
        return to[len("serial://") :]
    raise ValueError(f"--to must be tcp://HOST:PORT or serial:///dev/ttyX, not {to!r}")


class Device:
    """The connection to the device: pyserial for both TCP (socket://) and serial lines."""

    def __init__(self, url: str, baud: int) -> None:
        self.url = url
        self.baud = baud
        self.port: Any = None
        self.parser = ResponseParser()

    def open(self) -> None:
        try:
            self.port = open_port(self.url, self.baud, timeout_s=0.05, write_timeout_s=30)
        except TransportError as exc:
            raise LinkDown(str(exc)) from exc
        self.parser = ResponseParser()

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except OSError:
                pass
            self.port = None

    def send(self, data: bytes) -> None:
        if self.port is None:
            raise LinkDown("not connected")
        try:
            self.port.write(data)
            self.port.flush()
        except OSError as exc:
            raise LinkDown(str(exc)) from exc

    def wait_for(self, sequence: int, timeout_s: float) -> Response | None:
        """The response for `sequence`, or None when none came in time; others are ignored."""
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            try:
                # read(n) waits for all n bytes or the timeout: ask for one, then what is waiting.
                data = self.port.read(1)
                if data:
                    data += self.port.read(self.port.in_waiting or 0)
            except (OSError, AttributeError) as exc:
                raise LinkDown(str(exc)) from exc
            for r in self.parser.feed(data):
                if r.sequence == sequence:
                    return r
        return None


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    acked: list[dict[str, Any]] = field(default_factory=list)
    nacked: list[dict[str, Any]] = field(default_factory=list)
    busy: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    reconnects: int = 0


def frame_header(args: argparse.Namespace, i: int, seq: int, series_base: int) -> FrameHeader:
    width, height = parse_size(args.size)
    if args.series and args.series > 1:
        index = i % args.series
        last = index == args.series - 1 or i == args.frames - 1
        kind = "series_start" if index == 0 else "series_end" if last else "series_frame"
        if index == 0 and last:
            return FrameHeader(seq, width, height, args.format, bits_stored=args.bits)  # a series of one
        series_id = series_base + i // args.series
        return FrameHeader(seq, width, height, args.format, kind, series_id, index, args.bits)
    return FrameHeader(seq, width, height, args.format, bits_stored=args.bits)


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def damage(message: bytes, kind: str, rng: random.Random) -> bytes:
    if kind == "crc":
        i = rng.randrange(40, len(message))
        return message[:i] + bytes((message[i] ^ (1 << rng.randrange(8)),)) + message[i + 1 :]
    if kind == "truncate":
        return message[: rng.randrange(40, len(message))]
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(16, 256)))
    return noise.replace(b"MGFR", b"MGFX") + message


def tally(out: Outcome) -> str:
    return f"ack {len(out.acked)}  nak {len(out.nacked)}  busy {out.busy}"


def send_frame(dev: Device, message: bytes, seq: int, args: argparse.Namespace) -> Response | None:
    dev.send(message)
    return dev.wait_for(seq, args.response_timeout)


def run(args: argparse.Namespace) -> int:
    try:
        url = serial_url(args.to)
        width, height = parse_size(args.size)
        given = json.loads(args.context) if args.context else {}
        if not isinstance(given, dict):
            raise ValueError("--context must be a JSON object")
        # What this source knows of its pictures, as a real one should say (docs/frame-protocol.md):
        # synthetic, no burned-in text. --context may add to or replace it.
        context = {**SOURCE_FACTS, **given}
    except ValueError as exc:
        print(f"simulate-modality: {exc}", file=sys.stderr)
        return 2
    rows = pattern_rows(args.format, width, height, args.bits)
    rng = random.Random(args.seed)
    seq0 = args.sequence_start
    if seq0 is None:
        seq0 = int.from_bytes(os.urandom(4), "little")
    series_base = 1 + int.from_bytes(os.urandom(2), "little") * 1000
    out = Outcome()
    dev = Device(url, args.baud)
    progress = Progress(args.frames, "frames", quiet=args.quiet, keep=True)
    try:
        dev.open()
    except LinkDown as exc:
        print(f"simulate-modality: cannot open {args.to}: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    ok = True
    for i in range(args.frames):
        if args.rate > 0:
            delay = started + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        seq = (seq0 + i) & 0xFFFFFFFF
        header = frame_header(args, i, seq, series_base)
        message = encode_frame(header, b"".join(rows(i)), context if header.frame_index == 0 else None)
        fault = rng.choice(FAULT_KINDS) if args.faults and rng.random() < args.faults else None
        if fault:
            out.faults.append({"frame": i, "kind": fault})
        if not deliver(dev, message, fault, seq, i, args, rng, out):
            ok = False
            for j in range(i, args.frames):
                out.nacked.append({"frame": j, "reason": "NOT_DELIVERED"})
            break
        if i + 1 < args.frames:
            progress.advance_to(i + 1, tally(out))
    elapsed = time.monotonic() - started
    dev.close()
    progress.advance_to(args.frames, tally(out))
    progress.done()
    expected_nak = {f["frame"] for f in out.faults if f["kind"] != "garbage"}
    unexpected = [n for n in out.nacked if n["frame"] not in expected_nak]
    print(
        f"{args.frames} frames in {elapsed:.2f} s ({args.frames / elapsed if elapsed else 0:.1f} frames/s): "
        f"ACK {len(out.acked)}, NAK {len(out.nacked)} ({len(expected_nak)} damaged on purpose), "
        f"BUSY {out.busy}" + (f", reconnects {out.reconnects}" if out.reconnects else "")
    )
    if args.report:
        report = {
            "acked": out.acked,
            "nacked": out.nacked,
            "busy": out.busy,
            "faults": out.faults,
            "reconnects": out.reconnects,
            "elapsed_s": round(elapsed, 3),
            "frames_per_s": round(args.frames / elapsed, 2) if elapsed else None,
        }
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if ok and not unexpected else 1


def deliver(
    dev: Device,
    message: bytes,
    fault: str | None,
    seq: int,
    frame: int,
    args: argparse.Namespace,
    rng: random.Random,
    out: Outcome,
) -> bool:
    """Send one frame until it is answered ACK or NAK; False when the device is gone for good."""
    wire = damage(message, fault, rng) if fault else message
    lost_since: float | None = None
    attempts = 0
    while True:
        try:
            if dev.port is None:
                dev.open()
                out.reconnects += 1
            reply = send_frame(dev, wire, seq, args)
        except LinkDown as exc:
            dev.close()
            if args.retry_for <= 0:
                print(f"\nsimulate-modality: connection lost: {exc}", file=sys.stderr)
                return False
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > args.retry_for:
                print(f"\nsimulate-modality: device unreachable for {args.retry_for} s", file=sys.stderr)
                return False
            time.sleep(0.2)
            wire = message  # a resend goes out intact
            continue
        lost_since = None
        if reply is None:
            attempts += 1
            if attempts >= 3:
                out.nacked.append({"frame": frame, "reason": "NO_RESPONSE"})
                return True
            continue
        if reply.type == ACK:
            out.acked.append({"frame": frame, "sop_instance_uid": reply.text})
            return True
        if reply.type == NAK:
            out.nacked.append({"frame": frame, "reason": reply.reason_name})
            return True
        if reply.type == BUSY:
            out.busy += 1
            time.sleep(max(reply.retry_after_ms, 10) / 1000)
            wire = message
            continue
        return True


def run_in_subprocess(
    frames_url: str, report: Path, frames: int, size: str, fmt: str, *extra: str, timeout_s: float = 300
) -> dict[str, Any]:
    """Play the modality as its own process (as a real one is) and return its report, plus its
    exit code and output; for the demo, the benchmarks and the end-to-end tests."""
    cmd = simulate_command(frames_url, report, frames, size, fmt, *extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not report.exists():
        raise RuntimeError(f"simulate-modality wrote no report: {proc.stdout}{proc.stderr}")
    data: dict[str, Any] = json.loads(report.read_text())
    data["returncode"] = proc.returncode
    data["output"] = proc.stdout + proc.stderr
    return data


def simulate_command(
    frames_url: str, report: Path, frames: int, size: str, fmt: str, *extra: str
) -> list[str]:
    """argv of a quiet `modgate simulate-modality` writing its JSON report to `report`."""
    return [
        sys.executable,
        "-m",
        "modgate_host.cli",
        "simulate-modality",
        "--to",
        frames_url,
        "--frames",
        str(frames),
        "--size",
        size,
        "--format",
        fmt,
        "--report",
        str(report),
        "--quiet",
        *extra,
    ]
