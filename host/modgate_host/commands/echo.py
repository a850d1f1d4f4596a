"""`modgate echo`: run the device's C-ECHO SCU (firmware job `echo`), flags as dcmtk's echoscu."""

from __future__ import annotations

import argparse

from modgate_host.commands.send import add_common, job_args, run_job


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("echo", help="C-ECHO a DICOM peer with the device's SCU")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_job(args.runtime, "echo", [*job_args(args), args.host, str(args.port)], args.heap)
