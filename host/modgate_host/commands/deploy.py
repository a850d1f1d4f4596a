"""`modgate deploy PORT --board B`: put a board's settings on it with mpremote; the code is in its image.

A board runs the firmware frozen into its MicroPython image (`modgate build --board B` writes
the recipe, and builds the image where its port builds here), so deploy writes data only, in one
mpremote run: it removes code a `.mpy` deploy left on the file system (a module there shadows the
frozen one, and loads its bytecode into the heap), makes the state folder, copies the board data
(board.json on the real boards), the settings (`--config FILE`, as <state_dir>/config.json) and
the Wi-Fi credentials (`--secrets FILE`, as <fs_root>/secrets.json), then resets the board.

`--with-code` is for a board still on a stock MicroPython image: it also copies the .mpy tree and
installs the board's mip dependencies, and the heap then holds the bytecode the budgets leave out.
Emulator boards are not deployable: they run from their images (`modgate emulate`).
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

DEPLOYABLE_KINDS = ("hardware", "qemu-system")
# Run on the board by `mpremote exec`: make each folder, tolerating one left by a previous deploy
# (mpremote's own `fs mkdir` fails on an existing folder).
MKDIRS = """import os
for d in {}:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""
# Code a `.mpy` deploy left at the file-system root: removed, so the frozen modules are the ones
# that import (the current folder comes first on sys.path). Settings and state stay.
REMOVE_CODE = """import os
def _rm(p):
    try:
        if os.stat(p)[0] & 0x4000:
            for n in os.listdir(p):
                _rm(p + "/" + n)
            os.rmdir(p)
        else:
            os.remove(p)
    except OSError:
        pass
for p in {}:
    _rm(p)
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("deploy", help="write a board's settings with mpremote (code is frozen)")
    p.add_argument("port", help="the board's serial device (e.g. /dev/ttyACM0), as mpremote connect takes it")
    p.add_argument("--board", choices=board_ids(), help="board id from boards/ (required)")
    p.add_argument("--config", type=Path, help="device settings (JSON) to write as <state_dir>/config.json")
    p.add_argument("--secrets", type=Path, help="secrets.json (Wi-Fi credentials) for the board's root")
    p.add_argument("--with-code", action="store_true",
                   help="also copy the .mpy tree, for a board on a stock MicroPython image")
    p.add_argument("--out", type=Path, default=BUILD, help="build root (default: build/)")
    p.add_argument("--no-reset", action="store_true", help="leave the board in the REPL after copying")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote command instead of running it")
    p.set_defaults(func=run)


def remote(fs_root: str, device_path: str) -> str:
    """mpremote's remote-path spelling (leading ':') of a device path under the board's root."""
    return ":" + fs_root.rstrip("/") + "/" + device_path.lstrip("/")


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


def code_paths(result: BuildResult) -> list[str]:
    """Top-level code entries a `.mpy` deploy puts at the root: modgate/, the modules, main.py."""
    tops = {path.split("/")[0] for path in result.files if path.endswith((".mpy", ".py"))}
    return sorted(tops)


def deploy_command(port: str, result: BuildResult, reset: bool = True, config: Path | None = None,
                   secrets: Path | None = None, with_code: bool = False) -> list[str]:
    """The mpremote argv (chained with '+') that deploys `result` to the board at `port`."""
    data = result.board
    root = str(data["fs_root"]).rstrip("/")
    state_dir = str(data["state_dir"])
    cmd = [sys.executable, "-m", "mpremote", "connect", port]
    if data.get("deploy_resume"):
        cmd += ["resume"]  # no soft reset first: it would unmount the board's file system
    if not with_code:
        cmd += ["+", "exec", REMOVE_CODE.format(json.dumps([root + "/" + p for p in code_paths(result)]))]
    dirs = [state_dir] + ([root + "/" + folder for folder in folders(result.files)] if with_code else [])
    cmd += ["+", "exec", MKDIRS.format(json.dumps(dirs))]
    copies = [(result.settings_dir / name, remote(root, name)) for name in result.settings]
    if with_code:
        copies += [(result.mpy_dir / path, remote(root, path)) for path in result.files
                   if path not in result.settings]
    if config is not None:
        copies.append((config, ":" + state_dir.rstrip("/") + "/config.json"))
    if secrets is not None:
        copies.append((secrets, remote(root, "secrets.json")))
    for local, target in copies:
        cmd += ["+", "fs", "cp", str(local), target]
    deps = data.get("mip_deps") or []
    assert isinstance(deps, list)
    if with_code:  # a frozen image carries them (the manifest's require())
        for dep in deps:
            cmd += ["+", "mip", "install", str(dep)]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def refuse(message: str) -> int:
    print(f"modgate deploy: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    deployable = deployable_boards()
    if not args.board:
        return refuse(f"no board given: use --board with one of {', '.join(deployable)}")
    if args.board not in deployable:
        return refuse(f"board {args.board} is an emulator: run it with `modgate emulate --board ...`")
    for given in (args.config, args.secrets):
        if given is not None and not given.is_file():
            return refuse(f"no such file: {given}")
    if args.config is not None:
        try:
            json.loads(args.config.read_text())
        except ValueError as exc:
            return refuse(f"{args.config} is not JSON: {exc}")
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
    cmd = deploy_command(args.port, result, reset=not args.no_reset, config=args.config,
                         secrets=args.secrets, with_code=args.with_code)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    what = "code and settings" if args.with_code else "settings (the code is frozen in the board's image)"
    print(f"deploying {what} to {args.board} on {args.port}")
    if not args.with_code:
        print(f"the image: {result.recipe}")
    return 0 if subprocess.run(cmd).returncode == 0 else 1


def deployable_boards() -> list[str]:
    return [b for b in board_ids() if load_board(b).get("kind") in DEPLOYABLE_KINDS]
