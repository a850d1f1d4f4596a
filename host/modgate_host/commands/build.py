"""`modgate build --board B`: what the board runs (its image's recipe, the image itself where its
port builds here, the settings deploy writes) and the footprint report of its .mpy tree.

`--mip` (re)writes the root package.json that MicroPython's `mip` installs the firmware from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modgate_host.build import BUILD, BuildError, BuildUnavailable, board_ids, build, write_package_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("build", help="what a board runs: image recipe (or image), settings, footprint")
    p.add_argument("--board", choices=[*board_ids(), "all"], help="board id from boards/, or all")
    p.add_argument("--out", type=Path, default=BUILD, help="output root (default: build/)")
    p.add_argument("--mip", action="store_true", help="also regenerate package.json for mip")
    p.add_argument("--json", action="store_true", help="print the footprint as JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.board and not args.mip:
        print("modgate build: give --board BOARD (or --mip)", file=sys.stderr)
        return 2
    if args.mip:
        try:
            print(f"wrote {write_package_json()}")
        except BuildUnavailable as exc:
            print(f"modgate build: {exc}", file=sys.stderr)
            return 2
    boards = board_ids() if args.board == "all" else [args.board] if args.board else []
    for board_id in boards:
        try:
            result = build(board_id, args.out)
        except BuildError as exc:
            print(f"modgate build: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, BuildUnavailable) else 1
        if args.json:
            print(json.dumps(result.footprint.as_json()))
        else:
            print(result.footprint.as_text(), end="")
            print(f"image recipe: {result.recipe}")
            if result.image is not None:
                print(f"image: {result.image}")
            names = ", ".join(result.settings) or "none: all frozen"
            print(f"settings for deploy: {result.settings_dir} ({names})")
    return 0
