"""`modgate deploy PORT --board B`: build, then copy the device tree to a real board with mpremote.

One mpremote run: make the folders, copy each file to its full path (mpremote skips files whose
hash already matches), install the board's mip dependencies, then reset the board so it boots
into main.py. Emulator boards are not deployable: they run from the tree (`modgate emulate`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

from modgate_host.build import BUILD, BuildError, BuildResult, BuildUnavailable, board_ids, build, load_board

# Run on the board by `mpremote exec`: make each folder, tolerating one left by a previous deploy
# (mpremote's own `fs mkdir` fails on an existing folder).
MKDIRS = """import os
for d in {}:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("deploy", help="copy the built firmware to a real board with mpremote")
    p.add_argument("port", help="the board's serial device (e.g. /dev/ttyACM0), as mpremote connect takes it")
    p.add_argument("--board", choices=board_ids(), help="board id from boards/ (required)")
    p.add_argument("--out", type=Path, default=BUILD, help="build root (default: build/)")
    p.add_argument("--no-reset", action="store_true", help="leave the board in the REPL after copying")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote command instead of running it")
    p.set_defaults(func=run)


def remote(fs_root: str, device_path: str) -> str:
    """mpremote's remote-path spelling (leading ':') of a device path under the board's root."""
    return ":" + fs_root.rstrip("/") + "/" + device_path


def folders(files: list[str]) -> list[str]:
    """Every folder the files need, parents first."""
    out: list[str] = []
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if folder not in out:
                out.append(folder)
    return out


def deploy_command(port: str, result: BuildResult, reset: bool = True) -> list[str]:
    """The mpremote argv (chained with '+') that installs `result` on the board at `port`."""
    data = result.board
    root = str(data["fs_root"])
    cmd = [sys.executable, "-m", "mpremote", "connect", port]
    mkdirs = [root.rstrip("/") + "/" + folder for folder in folders(result.files)]
    if mkdirs:
        code = MKDIRS.format(json.dumps(mkdirs))
        cmd += ["+", "exec", code]
    for path in result.files:
        cmd += ["+", "fs", "cp", str(result.device_dir / path), remote(root, path)]
    deps = data.get("mip_deps") or []
    assert isinstance(deps, list)
    for dep in deps:
        cmd += ["+", "mip", "install", str(dep)]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def refuse(message: str) -> int:
    print(f"modgate deploy: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    hardware = hardware_boards()
    if not args.board:
        return refuse(f"no board given: use --board with one of {', '.join(hardware)}")
    if args.board not in hardware:
        return refuse(f"board {args.board} is an emulator: run it with `modgate emulate --board ...`")
    if not args.dry_run:
        if args.port.startswith("/dev/") and not Path(args.port).exists():
            return refuse(f"no board at {args.port} (is it plugged in? `mpremote devs` lists ports)")
        if importlib.util.find_spec("mpremote") is None:
            return refuse("mpremote is not installed: pip install mpremote (or --dry-run to see the steps)")
    try:
        result = build(args.board, args.out)
    except BuildError as exc:
        print(f"modgate deploy: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, BuildUnavailable) else 1
    cmd = deploy_command(args.port, result, reset=not args.no_reset)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    print(f"deploying {len(result.files)} files to {args.board} on {args.port}")
    return 0 if subprocess.run(cmd).returncode == 0 else 1


def hardware_boards() -> list[str]:
    return [b for b in board_ids() if load_board(b).get("kind") == "hardware"]
