"""The `modgate` command: one entry point; each subcommand lives in modgate_host.commands.<name>.

Each command module has `add_parser(subparsers)`, which registers its parser and sets
`func=run`, and `run(args) -> int`. Exit codes: 0 success, 1 the work failed (a file invalid,
a delivery refused), 2 usage or environment error (bad flags, device unreachable).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from modgate_host import __version__

COMMANDS = (
    "encode",
    "validate",
    "send",
    "echo",
    "simulate_modality",
    "console",
    "device",
    "receive",
    "verify",
    "emulate",
    "build",
    "deploy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modgate", description="modgate DICOM modality gateway companion")
    parser.add_argument("--version", action="version", version=f"modgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"modgate_host.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("modgate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
