"""`modgate verify PORT`: commissioning. C-ECHO every destination, send a test pattern through the
device's real path, confirm it arrived (at a receiver this command runs, or by the queue draining),
and write an HTML report with a contact sheet and a pass/fail list.

Exit codes: 0 every check passed; 1 a check failed (the report says which); 2 usage or
environment error (console will not open, receiver port in use).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from modgate_host.commands.device import add_port_arguments
from modgate_host.progress import Progress
from modgate_host.receiver import Receiver
from modgate_host.report import Check, contact_sheet, received_rows, write_report
from modgate_host.transport import DeviceConsole, DeviceError, TransportError

ECHO_TIMEOUT_S = 60.0


def _echo_all(console: DeviceConsole, dests: list[dict[str, Any]], bar: Progress) -> list[Check]:
    checks = []
    for d in dests:
        bar.step(f"echo {d['name']}")
        label = f"C-ECHO {d['name']} ({d['aet']}@{d['host']}:{d['port']})"
        try:
            result = console.call("dest", "echo", d["name"], timeout_s=ECHO_TIMEOUT_S)
            checks.append(Check(label, True, f"round trip {result['rtt_ms']} ms"))
        except DeviceError as exc:
            checks.append(Check(label, False, exc.message))
    if not dests:
        checks.append(Check("destinations configured", False, "the device has no destination"))
    return checks


def _uid(item: dict[str, Any]) -> Any:
    return item.get("uid", item.get("sop_instance_uid"))


def _in_queue(console: DeviceConsole, uid: str) -> tuple[bool, bool]:
    """(still queued, dead) for the object `uid`."""
    queued = any(_uid(item) == uid for item in console.call("queue", "list", 100))
    dead = any(_uid(item) == uid for item in console.call("queue", "dead"))
    return queued, dead


def _wait_delivered(console: DeviceConsole, uid: str, timeout_s: float) -> Check:
    until = time.monotonic() + timeout_s
    while True:
        queued, dead = _in_queue(console, uid)
        if dead:
            return Check("test pattern delivered", False, f"{uid} became a dead letter (see `queue dead`)")
        if not queued:
            return Check("test pattern delivered", True, f"{uid} left the queue: every destination took it")
        if time.monotonic() > until:
            return Check("test pattern delivered", False, f"{uid} still queued after {timeout_s:g} s")
        time.sleep(1.0)


def _wait_received(receiver: Receiver, console: DeviceConsole, uid: str, timeout_s: float) -> Check:
    record = receiver.wait_for(uid, timeout_s)
    name = f"test pattern arrived at {receiver.aet}@{receiver.port}"
    if record is None:
        _queued, dead = _in_queue(console, uid)
        why = "it is a dead letter on the device" if dead else f"nothing within {timeout_s:g} s"
        return Check(name, False, f"{uid}: {why}")
    if not record.ok:
        return Check(name + " and is valid", False, "; ".join(record.problems[:3]) or "validation failed")
    return Check(name + " and is valid", True, f"{uid}, {record.size} bytes, pydicom + dciodvfy clean")


def verify(
    args: argparse.Namespace, console: DeviceConsole, receiver: Receiver | None
) -> tuple[list[Check], dict[str, Any]]:
    checks = [Check("console answers", True, args.port)]
    facts: dict[str, Any] = {}
    ident = console.call("ident")
    status = console.call("status")
    facts.update({f"ident.{k}": v for k, v in ident.items()})
    facts.update({f"status.{k}": v for k, v in status.items()})
    clock_set = status.get("clock_set")
    if clock_set is not None:
        detail = console.call("time", "get")["utc"]
        checks.append(
            Check("device clock set", bool(clock_set), detail + ("" if clock_set else "; run set-time"))
        )
    privileged = status.get("privileged")
    if privileged is not None:
        # No open doors (issue 19): a commissioned device guards its settings with a PIN.
        guarded = privileged != "open"
        advice = "" if guarded else "; set one: config set pin NNNN"
        checks.append(Check("settings guarded by a PIN", guarded, f"privileged: {privileged}{advice}"))
    dests = console.call("dest", "list")
    bar = Progress(len(dests) + 2, "verify")
    checks += _echo_all(console, dests, bar)
    if receiver is not None:
        ours = [d for d in dests if d["aet"] == receiver.aet and int(d["port"]) == receiver.port]
        if not ours:
            checks.append(
                Check(
                    f"a destination points at this receiver ({receiver.aet}, port {receiver.port})",
                    False,
                    f"add one: modgate dest {args.port} add NAME {receiver.aet} HOST {receiver.port}",
                )
            )
    bar.step("test pattern")
    try:
        uid = console.call("test-pattern", "send", timeout_s=60)["sop_instance_uid"]
        checks.append(Check("test pattern queued", True, uid))
    except DeviceError as exc:
        bar.done()
        checks.append(Check("test pattern queued", False, exc.message))
        return checks, facts
    bar.step("waiting for delivery")
    if receiver is not None:
        checks.append(_wait_received(receiver, console, uid, args.wait))
    else:
        checks.append(_wait_delivered(console, uid, args.wait))
    bar.done()
    return checks, facts


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    receiver = None
    if args.receive_port:
        receiver = Receiver(args.receive_aet, args.receive_port, out / "received", host=args.bind)
        try:
            receiver.start()
        except OSError as exc:
            print(f"modgate: cannot listen on {args.bind}:{args.receive_port}: {exc}", file=sys.stderr)
            return 2
    try:
        try:
            console = DeviceConsole(args.port, baudrate=args.baud, timeout_s=args.timeout).open()
        except TransportError as exc:
            print(f"modgate: {exc}", file=sys.stderr)
            return 2
        try:
            checks, facts = verify(args, console, receiver)
        except (DeviceError, TransportError) as exc:
            print(f"modgate: verify stopped: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, TransportError) else 1
        finally:
            console.close()
        received = receiver.received if receiver is not None else []
    finally:
        if receiver is not None:
            receiver.stop()
    sheet = contact_sheet([r.path for r in received], out / "contact-sheet.png") if received else None
    rows = received_rows(received)
    report = write_report(out / "report.html", args.port, checks, facts, rows, sheet)
    for c in checks:
        print(f"{'PASS' if c.ok else 'FAIL'}  {c.name}" + (f": {c.detail}" if c.detail else ""))
    print(f"report: {report}")
    return 0 if all(c.ok for c in checks) else 1


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("verify", help="commissioning: echo, test pattern, report")
    add_port_arguments(p)
    p.add_argument("--out", default="modgate-report", help="folder for report.html (default %(default)s)")
    p.add_argument("--receive-port", type=int, default=0, help="run a validating receiver on this port")
    p.add_argument("--receive-aet", default="MODGATE_RX", help="its AE title (default %(default)s)")
    p.add_argument("--bind", default="0.0.0.0", help="receiver address (default all)")
    p.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for delivery (default %(default)s)"
    )
    p.set_defaults(func=run)
