"""Device commands over the console: status, config, provision, queue, logs, set-time, dest.

Each takes the console PORT first: a tty (/dev/ttyUSB0), a pty (/dev/pts/N from `modgate
emulate`) or a pyserial URL (socket://HOST:PORT). Exit codes: 0 done; 1 the device refused or
the work failed (invalid value, PIN needed or wrong, echo failed, provision not verified);
2 usage or environment error (port will not open, device silent, unreadable file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modgate_host.progress import Progress
from modgate_host.transport import DEFAULT_BAUD, DeviceConsole, DeviceError, TransportError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ENV = 2


def add_port_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", metavar="PORT", help="console: /dev/ttyUSB0, /dev/pts/N or socket://HOST:PORT")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="serial speed (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")


def add_pin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pin", help="PIN for privileged commands (unlocks for this session only)")


def open_console(args: argparse.Namespace) -> DeviceConsole:
    return DeviceConsole(args.port, baudrate=args.baud, timeout_s=args.timeout).open()


def fail(message: str) -> None:
    print(f"modgate: {message}", file=sys.stderr)


def guarded(work: Callable[[argparse.Namespace, DeviceConsole], int]) -> Callable[[argparse.Namespace], int]:
    """Open the console, run `work`, and turn every failure into one clear line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            console = open_console(args)
        except TransportError as exc:
            fail(str(exc))
            return EXIT_ENV
        try:
            pin = getattr(args, "pin", None)
            if pin:
                console.unlock(pin)
            return work(args, console)
        except DeviceError as exc:
            fail(f"device refused: {exc.message}")
            return EXIT_FAILED
        except TransportError as exc:
            fail(str(exc))
            return EXIT_ENV
        finally:
            try:
                if getattr(args, "pin", None):
                    console.lock()
            except (DeviceError, TransportError):
                pass
            console.close()

    return run


def show(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key in sorted(data):
            print(f"{key:<{width}}  {text(data[key])}")
    elif isinstance(data, list):
        if data and isinstance(data[0], dict):
            print_table(data)
        else:
            for item in data:
                print(text(item))
    else:
        print(text(data))


def text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    cells = [[text(row.get(c)) for c in cols] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


# ---- status ----


def _status(args: argparse.Namespace, console: DeviceConsole) -> int:
    data = console.call("status")
    show(data, args.json)
    return EXIT_OK


# ---- config ----


def _config(args: argparse.Namespace, console: DeviceConsole) -> int:
    if args.action == "show":
        show(console.call("config", "show"), args.json)
    elif args.action == "get":
        data = console.call("config", "get", args.key)
        print(json.dumps(data) if args.json else text(data["value"]))
    elif args.action == "set":
        data = console.call("config", "set", args.key, args.value)
        if not args.no_save:
            console.call("config", "save")
        print(f"{data['key']} = {text(data['value'])}" + ("" if args.no_save else " (saved)"))
    return EXIT_OK


# ---- provision ----


def load_provision_file(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("a provisioning file is a JSON object of setting: value")
    return data


# Secrets the device never shows (config show reads "***"): always applied, never read back.
SECRET_KEYS = ("pin", "user_passcode")


def provision_plan(current: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for each setting that changes; a secret (SECRET_KEYS) is always applied."""
    plan = []
    for key, value in wanted.items():
        if key in SECRET_KEYS:
            plan.append((key, "***", "*** (new " + ("PIN" if key == "pin" else "secret") + ")"))
        elif current.get(key) != value:
            plan.append((key, current.get(key, "(unknown key)"), value))
    return plan


def console_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _provision(args: argparse.Namespace, console: DeviceConsole) -> int:
    try:
        wanted = load_provision_file(Path(args.file))
    except (OSError, ValueError) as exc:
        fail(f"cannot read {args.file}: {exc}")
        return EXIT_ENV
    current = console.call("config", "show")
    plan = provision_plan(current, wanted)
    if not plan:
        print("device already matches " + args.file)
        return EXIT_OK
    print(f"changes for {args.port}:")
    for key, old, new in plan:
        print(f"  {key}: {text(old)} -> {text(new)}")
    if args.dry_run:
        return EXIT_OK
    bar = Progress(len(plan) + 2, "provision")
    for key, _old, new in plan:
        bar.step(key)
        console.call("config", "set", key, wanted[key] if key in SECRET_KEYS else console_value(new))
    bar.step("save")
    console.call("config", "save")
    bar.step("verify")
    after = console.call("config", "show")
    bar.done()
    wrong = [k for k, _o, new in plan if k not in SECRET_KEYS and after.get(k) != new]
    if wrong:
        for key in wrong:
            fail(f"{key}: device has {text(after.get(key))}, wanted {text(wanted[key])}")
        return EXIT_FAILED
    print(f"provisioned: {len(plan)} setting(s) applied, saved and read back")
    return EXIT_OK


# ---- queue, logs, time, dest ----


def _queue(args: argparse.Namespace, console: DeviceConsole) -> int:
    words: list[Any] = ["queue", args.action]
    if args.which:
        words.append(args.which)
    show(console.call(*words), args.json)
    return EXIT_OK


def _logs(args: argparse.Namespace, console: DeviceConsole) -> int:
    seen: list[str] = []
    while True:
        lines = console.call("log", "tail", args.lines if not seen else 64)
        fresh = lines
        if seen:  # print only what follows the last line we printed
            for i in range(len(lines) - 1, -1, -1):
                if lines[i] == seen[-1]:
                    fresh = lines[i + 1 :]
                    break
        for line in fresh:
            print(line, flush=True)
        seen = (seen + fresh)[-64:]
        if not args.follow:
            return EXIT_OK
        time.sleep(1.0)


def _set_time(args: argparse.Namespace, console: DeviceConsole) -> int:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    data = console.call("time", "set", stamp)
    device = dt.datetime.strptime(data["utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    skew = abs((device - now).total_seconds())
    print(f"device clock set to {data['utc']} (host UTC {stamp})")
    if skew > 2:
        fail(f"device reads back {skew:.0f} s away from the host clock")
        return EXIT_FAILED
    return EXIT_OK


def _dest(args: argparse.Namespace, console: DeviceConsole) -> int:
    if args.action == "list":
        show(console.call("dest", "list"), args.json)
    elif args.action == "add":
        if len(args.values) not in (4, 5) or args.values[4:] not in ([], ["tls"]):
            fail("usage: dest PORT add NAME AET HOST PORT [tls]")
            return EXIT_ENV
        show(console.call("dest", "add", *args.values), args.json)
        console.call("config", "save")
    elif args.action == "remove":
        if len(args.values) != 1:
            fail("usage: dest PORT remove NAME")
            return EXIT_ENV
        show(console.call("dest", "remove", args.values[0]), args.json)
        console.call("config", "save")
    else:
        name = args.values[0] if args.values else "all"
        data = console.call("dest", "echo", name, timeout_s=max(args.timeout, 60.0))
        rows = data if isinstance(data, list) else [data]
        show(rows, args.json)
        return EXIT_OK if all(r.get("ok") for r in rows) else EXIT_FAILED
    return EXIT_OK


DEST_ARGS = "add: NAME AET HOST PORT [tls]; remove: NAME; echo: [NAME] (default all)"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="what the device is doing")
    add_port_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=guarded(_status))

    p = subparsers.add_parser("config", help="show, read or change device settings")
    add_port_arguments(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("show", help="every setting")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("get", help="one setting")
    a.add_argument("key", metavar="KEY")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("set", help="change and save one setting")
    a.add_argument("key", metavar="KEY")
    a.add_argument("value", metavar="VALUE")
    a.add_argument("--no-save", action="store_true", help="change it in RAM only")
    add_pin_argument(a)
    p.set_defaults(func=guarded(_config), json=False)

    p = subparsers.add_parser("provision", help="apply a JSON settings file: diff, apply, save, verify")
    add_port_arguments(p)
    p.add_argument("file", metavar="FILE", help='JSON object {"ae_title": "CT1", "pin": "2468", ...}')
    p.add_argument("--dry-run", action="store_true", help="show the diff only")
    add_pin_argument(p)
    p.set_defaults(func=guarded(_provision))

    p = subparsers.add_parser("queue", help="the store-and-forward queue")
    add_port_arguments(p)
    p.add_argument("action", choices=("list", "dead", "retry", "purge"))
    p.add_argument("which", nargs="?", help="list: how many; retry: ID|all; purge: ID|all|dead")
    p.add_argument("--json", action="store_true")
    add_pin_argument(p)
    p.set_defaults(func=guarded(_queue))

    p = subparsers.add_parser("logs", help="the device log")
    add_port_arguments(p)
    p.add_argument("-n", "--lines", type=int, default=20, help="how many lines (max 64)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=guarded(_logs))

    p = subparsers.add_parser("set-time", help="set the device clock from this host's clock (UTC)")
    add_port_arguments(p)
    p.set_defaults(func=guarded(_set_time))

    p = subparsers.add_parser("dest", help="destinations: list, add, remove, echo")
    add_port_arguments(p)
    p.add_argument("action", choices=("list", "add", "remove", "echo"))
    p.add_argument("values", nargs="*", metavar="ARG", help=DEST_ARGS)
    p.add_argument("--json", action="store_true")
    add_pin_argument(p)
    p.set_defaults(func=guarded(_dest))
