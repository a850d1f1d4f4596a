"""`modgate encode`: run the device encoder on the deterministic test pattern and write a Part 10 file.

The firmware's `encode` job runs on the chosen runtime (CPython, x86-64 MicroPython, armhf under
QEMU; MicroPython runtimes in a 64 KB heap unless --heap says otherwise), so the file is exactly
what a device would make. Unsupported IOD/format combinations are refused before anything runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from modgate_host.runtimes import RUNTIMES, RuntimeUnavailable, firmware_module, firmware_process

IODS = ("sc", "mf-gray8", "mf-gray16", "mf-rgb", "dx", "us", "us-mf", "vl-photo")
FORMATS = ("GRAY8", "GRAY16", "RGB888", "RGB565", "YUYV")
DEFAULT_HEAP = "64k"


def check_combination(iod: str, fmt: str, width: int, height: int, frames: int, bits: int | None) -> None:
    """Raise the firmware's EncodeError when the device would refuse this object."""
    pixels = firmware_module("modgate.dicom.pixels")
    iods = firmware_module("modgate.dicom.iods")
    pixels.layout(fmt, width, height, bits)
    iods.choose(iod, fmt, frames > 1)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--context is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--context must be a JSON object")
    return value


def parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH")
    return int(w), int(h)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("encode", help="encode the test pattern with the device encoder")
    p.add_argument("--iod", required=True, choices=IODS)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--size", required=True, type=parse_size, help="WxH")
    p.add_argument("--frames", type=int, default=1)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--runtime", choices=RUNTIMES, default="cpython")
    p.add_argument("--bits-stored", type=int, help="GRAY16 Bits Stored: 10, 12, 14 or 16")
    p.add_argument("--uid-root", help="UID root (default: the 2.25 form)")
    p.add_argument("--serial", default="1", help="device serial used in UIDs")
    p.add_argument("--heap", default=DEFAULT_HEAP, help="MicroPython heap size (default 64k)")
    p.add_argument("--context", type=_json_object, help='context values as JSON, e.g. '
                   '\'{"pixel_spacing": "0.1\\\\0.1", "laterality": "U"}\' (dx needs both)')
    p.set_defaults(func=run)


def encode(iod: str, fmt: str, width: int, height: int, out: Path, *, frames: int = 1,
           runtime: str = "cpython", bits_stored: int | None = None, uid_root: str | None = None,
           serial: str = "1", heap: str | None = DEFAULT_HEAP, timeout: float = 3600,
           context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the firmware encode job; returns its JSON result. Raises RuntimeError with its message."""
    args = ["--iod", iod, "--format", fmt, "--size", f"{width}x{height}", "--frames", str(frames),
            "--out", str(out), "--serial", serial]
    if bits_stored is not None:
        args += ["--bits-stored", str(bits_stored)]
    if uid_root:
        args += ["--uid-root", uid_root]
    if context:
        args += ["--context", json.dumps(context)]
    cmd, env = firmware_process(runtime, "encode", *args, heap=heap)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"encode job exited {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> int:
    width, height = args.size
    errors = firmware_module("modgate.errors")
    try:
        check_combination(args.iod, args.format, width, height, args.frames, args.bits_stored)
    except errors.EncodeError as exc:
        print(f"modgate encode: refused: {exc}", file=sys.stderr)
        return 2
    if args.frames < 1:
        print("modgate encode: --frames must be at least 1", file=sys.stderr)
        return 2
    try:
        result = encode(args.iod, args.format, width, height, args.out, frames=args.frames,
                        runtime=args.runtime, bits_stored=args.bits_stored, uid_root=args.uid_root,
                        serial=args.serial, heap=args.heap, context=args.context)
    except RuntimeUnavailable as exc:
        print(f"modgate encode: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"modgate encode: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), "runtime": args.runtime, **result}))
    return 0
