"""`modgate validate FILE...`: pydicom checks and dciodvfy, one verdict per file; exit 1 on any error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modgate_host.validation import ALLOW_LIST, ValidatorUnavailable, load_allow_list, validate_file


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("validate", help="check DICOM files (pydicom + dciodvfy)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--allow", type=Path, default=ALLOW_LIST,
                   help="allow-list of accepted dciodvfy warnings ('text | reason' lines)")
    p.add_argument("--no-dciodvfy", action="store_true", help="pydicom checks only")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the verdict lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        allow = load_allow_list(args.allow)
    except (OSError, ValueError) as exc:
        print(f"modgate validate: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        if not path.is_file():
            print(f"FAIL {path}\n  error: no such file")
            failed += 1
            continue
        try:
            verdict = validate_file(path, allow, dciodvfy=not args.no_dciodvfy)
        except ValidatorUnavailable as exc:
            print(f"modgate validate: {exc}", file=sys.stderr)
            return 2
        lines = verdict.lines()
        print("\n".join(lines[:1] if args.quiet else lines))
        failed += not verdict.ok
    if len(args.files) > 1:
        print(f"{len(args.files) - failed} passed, {failed} failed")
    return 1 if failed else 0
