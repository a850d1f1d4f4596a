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
    "worklist",
    "receive",
    "verify",
    "emulate",
    "build",
    "deploy",
)
# The command words a module other than the one of the same name registers. Running a command
# imports only its module: `modgate send` must not pay ~0.5 s for pydicom and numpy, which
# only validation needs.
MODULE_OF = {
    "simulate-modality": "simulate_modality",
    "status": "device",
    "config": "device",
    "provision": "device",
    "queue": "device",
    "logs": "device",
    "set-time": "device",
    "dest": "device",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command module `only` alone."""
    parser = argparse.ArgumentParser(prog="modgate", description="modgate DICOM modality gateway companion")
    parser.add_argument("--version", action="version", version=f"modgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"modgate_host.commands.{name}").add_parser(sub)
    return parser


def module_for(argv: list[str]) -> str | None:
    """The command module the first word of `argv` names, None when it names none (help, usage)."""
    word = argv[0] if argv else ""
    module = MODULE_OF.get(word, word)
    return module if module in COMMANDS and not word.startswith("-") else None


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(module_for(words))
    args = parser.parse_args(words)
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
