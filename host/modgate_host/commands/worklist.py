"""`modgate worklist PORT refresh|list|show N|select N|clear`: the device's Modality Worklist.

`list` fetches every page of the cached worklist (the device answers 20 items a line) and prints
one table; `show N` every field of one item; `select N` makes item N the patient and study of
the next acquisitions; `clear` forgets the selection. `--json` prints the data as the device
gave it. Exit codes as the other device commands: 1 when the device refused (no worklist SCP
configured, a refresh that failed, an item that cannot be selected).
"""

from __future__ import annotations

import argparse
from typing import Any

from modgate_host.commands.device import EXIT_ENV, EXIT_OK, add_port_arguments, fail, guarded, show
from modgate_host.transport import DeviceConsole

PAGE = 20  # the device's page (console `worklist list [FROM]`)
REFRESH_WAIT_S = 60.0  # the device answers within 30 s (it waits at most half a task's bound)
COLUMNS = ("n", "selected", "patient_name", "patient_id", "birth_date", "sex", "accession", "step_id", "date",
           "time", "modality", "description", "note")


def all_rows(console: DeviceConsole) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = console.call("worklist", "list", len(rows) + 1)
        rows += page
        if len(page) < PAGE:
            return rows


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their columns in a fixed order and the selected one marked."""
    out = []
    for row in rows:
        shaped = {c: row.get(c, "") for c in COLUMNS if c in row}
        shaped["selected"] = "*" if row.get("selected") else ""
        out.append(shaped)
    return out


def _worklist(args: argparse.Namespace, console: DeviceConsole) -> int:
    if args.action in ("show", "select") and args.n is None:
        fail(f"worklist {args.action} needs N (the number `list` shows)")
        return EXIT_ENV
    if args.action == "refresh":
        data = console.call("worklist", "refresh", timeout_s=max(args.timeout, REFRESH_WAIT_S))
        show(data, args.json)
    elif args.action == "list":
        rows = all_rows(console)
        if args.json:
            show(rows, True)
        elif rows:
            show(table_rows(rows), False)
        else:
            print("(the cached worklist is empty: refresh it, or check `modgate status` for the last error)")
    elif args.action == "show":
        show(console.call("worklist", "show", args.n), args.json)
    elif args.action == "select":
        show(console.call("worklist", "select", args.n), args.json)
    else:
        show(console.call("worklist", "clear"), args.json)
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("worklist", help="the Modality Worklist: refresh, list, show, select, clear")
    add_port_arguments(p)
    p.add_argument("action", choices=("refresh", "list", "show", "select", "clear"))
    p.add_argument("n", nargs="?", type=int, metavar="N", help="show/select: the item's number in `list`")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=guarded(_worklist))
