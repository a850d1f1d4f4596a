"""Every console command through a pty against the real firmware on MicroPython (`modgate emulate`),
plus the host CLI against the same emulated board."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modgate_host import transport
from modgate_host.emulator import board_heap
from modgate_host.receiver import Receiver
from modgate_host.transport import DeviceConsole, PermissionDenied, open_port

pytestmark = [pytest.mark.e2e]

MODGATE = [sys.executable, "-m", "modgate_host.cli"]
REPO = Path(__file__).resolve().parents[2]
PIN = "3141"


class Board:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.proc = subprocess.Popen(
            [*MODGATE, "emulate", "--board", "unix", "--state", str(state)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                "modgate emulate printed nothing: " + (self.proc.stderr.read() if self.proc.stderr else "")
            )
        info = json.loads(line)
        self.console: str = info["console"]
        self.frames: str = info["frames"]
        self.pid: int = int(info["pid"])

    def stop(self) -> None:
        for pid in {self.proc.pid, self.pid}:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path / "state")
    yield b
    b.stop()


def human(port: Any, line: bytes, wait_for: bytes = b"modgate", timeout_s: float = 10.0) -> str:
    """Type `line` (raw bytes) on the pty and return what came back up to the next prompt."""
    port.reset_input_buffer()
    port.write(line)
    got = b""
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        got += port.read(4096)
        if got.rstrip().endswith((b"modgate>", b"modgate#")) and wait_for in got:
            break
    return got.decode("utf-8", "replace")


def test_every_command_in_json_through_the_pty(board: Board, tmp_path: Path) -> None:
    rx_port = random.randint(20000, 60000)
    with (
        Receiver("RXE2E", rx_port, tmp_path / "rx", validate=False) as rx,
        DeviceConsole(board.console) as dev,
    ):
        assert "status" in " ".join(r["usage"] for r in dev.call("help"))
        status = dev.call("status")
        assert status["privileged"] == "open"
        ident = dev.call("ident")
        assert ident["firmware_version"] and ident["uid_root"]
        assert dev.call("config", "get", "ae_title")["value"] == "MODGATE"
        assert dev.call("config", "show")["pin_hash"] == ""
        dev.call("config", "set", "station_name", "BENCH1")
        with pytest.raises(PermissionDenied, match="PIN first"):  # commissioning (issue 19)
            dev.call("dest", "add", "rx", "RXE2E", "127.0.0.1", rx_port)
        dev.call("config", "set", "pin", PIN)  # opens the window for whoever set it
        dev.call("dest", "add", "rx", "RXE2E", "127.0.0.1", rx_port)
        assert "rx" in [d["name"] for d in dev.call("dest", "list")]
        echo = dev.call("dest", "echo", "rx", timeout_s=60)
        assert echo["ok"] and echo["rtt_ms"] >= 0
        dev.call("dest", "remove", "archive")
        dev.call("config", "save")
        saved = json.loads((board.state / "config.json").read_text())
        assert saved["station_name"] == "BENCH1"
        dev.call("time", "set", "2031-05-06T07:08:09Z")
        assert dev.call("time", "get")["utc"].startswith("2031-05-06T07:08")
        pending = dev.call("patient", "next", "name=DOE^JOHN", "id=E2E1", "sex=M")
        assert pending["id"] == "E2E1"
        assert dev.call("patient", "show")["name"] == "DOE^JOHN"
        uid = dev.call("test-pattern", "send")["sop_instance_uid"]
        record = rx.wait_for(uid, timeout_s=60)
        assert record is not None, "test pattern did not arrive"
        assert isinstance(dev.call("queue", "list"), list)
        assert isinstance(dev.call("queue", "dead"), list)
        assert "retried" in dev.call("queue", "retry")
        assert dev.call("log", "tail", 5)
        with pytest.raises(transport.InvalidValue):
            dev.call("config", "set", "uid_root", "1.02")
        dev.call("config", "set", "pin", PIN)
        dev.lock()
        with pytest.raises(transport.PermissionDenied):
            dev.call("queue", "purge", "all")
        with pytest.raises(transport.PermissionDenied):
            dev.unlock("0000")
        with pytest.raises(transport.CommandRejected):
            dev.call("launch", "missiles")


def test_human_line_editing_on_the_pty(board: Board) -> None:
    port = open_port(board.console, timeout_s=0.2)
    try:
        assert "clock_set" in human(port, b"statuz\x7fs\r", b"clock_set")
        assert "unknown command 'bogus'" in human(port, b"bogus\r", b"unknown")
        assert "line too long" in human(port, b"y" * 1000 + b"\r", b"too long")
        assert "non-printable" in human(port, b"st\x01atus\r", b"non-printable")
        out = human(port, b"reboo\x03status\r", b"clock_set")
        assert "^C" in out and "clock_set" in out
        assert "[PIN]" in human(port, b"help\r", b"[PIN]")
    finally:
        port.close()


@pytest.mark.slow
def test_random_lines_through_the_pty_then_status(board: Board) -> None:
    """10,000 seeded random lines (command words, noise, control bytes, over-long lines) through the
    pty; the firmware never crashes and still answers `status`. A PIN is set first so the privileged
    commands the salad spells are refused rather than run."""
    with DeviceConsole(board.console) as dev:
        dev.call("config", "set", "pin", PIN)
    words = [
        b"help",
        b"status",
        b"ident",
        b"config",
        b"show",
        b"get",
        b"set",
        b"save",
        b"reset",
        b"dest",
        b"list",
        b"add",
        b"remove",
        b"echo",
        b"queue",
        b"retry",
        b"purge",
        b"dead",
        b"log",
        b"tail",
        b"time",
        b"patient",
        b"next",
        b"test-pattern",
        b"json",
        b"on",
        b"off",
        b"unlock",
        b"lock",
        b"--json",
        b"ae_title",
        b"1",
        b"65536",
        b"'",
        b'"',
        b"\\",
        b"name=X",
        b"__import__('os')",
        b"all",
        b"reboot",
    ]
    rng = random.Random(20261127)
    port = open_port(board.console, timeout_s=0.1)
    stop = threading.Event()
    received = [0]

    def drain() -> None:  # keep reading, or the device blocks writing replies and we block writing lines
        while not stop.is_set():
            received[0] += len(port.read(1 << 16))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        for _ in range(10000):
            kind = rng.random()
            if kind < 0.6:
                line = b" ".join(rng.choice(words) for _ in range(rng.randrange(6)))
            elif kind < 0.8:
                line = bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randrange(80)))
            elif kind < 0.95:
                line = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
            else:
                line = b"x" * rng.randrange(200, 400)
            port.write(line + rng.choice((b"\r", b"\n", b"\r\n")))
        port.write(b"\x03")
        time.sleep(1.0)
    finally:
        stop.set()
        reader.join(timeout=5)
        port.close()
    assert received[0] > 10000
    with DeviceConsole(board.console, timeout_s=60) as dev:
        status = dev.call("status")
        assert "clock_set" in status and status["boot_count"] == 1  # no crash, no reboot
        assert dev.call("ident")["uid_root"]
    # The heap as MicroPython reports it, within the emulated board's heap; no out-of-memory.
    heap, budget = status["heap"], int(board_heap("unix"))
    assert 0 < heap["free_min"] < budget and 0 < heap["free"] < budget, heap
    assert heap["out_of_memory"] == 0, heap


def test_host_cli_against_the_emulator(board: Board, tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MODGATE, *argv], capture_output=True, text=True, timeout=120, cwd=REPO)

    assert json.loads(cli("status", board.console, "--json").stdout)["privileged"] == "open"
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"ae_title": "E2E_ROOM", "institution_name": "Test Hospital", "pin": PIN}))
    done = cli("provision", board.console, str(site))
    assert done.returncode == 0, done.stderr
    assert cli("config", board.console, "get", "ae_title").stdout.strip() == "E2E_ROOM"
    refused = cli("config", board.console, "set", "ae_title", "X")
    assert refused.returncode == 1 and "PIN" in refused.stderr
    assert cli("config", board.console, "set", "ae_title", "Y", "--pin", PIN).returncode == 0
    assert cli("set-time", board.console).returncode == 0
    assert cli("logs", board.console, "-n", "5").returncode == 0
    assert cli("queue", board.console, "list").returncode == 0


def test_verify_commissions_the_emulated_board(board: Board, tmp_path: Path) -> None:
    rx_port = random.randint(20000, 60000)
    with DeviceConsole(board.console) as dev:
        dev.call("config", "set", "pin", PIN)  # no destination without a PIN (issue 19)
        dev.call("dest", "remove", "archive")
        dev.call("dest", "add", "bench", "BENCHRX", "127.0.0.1", rx_port)
        dev.call("time", "set", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out = tmp_path / "report"
    done = subprocess.run(
        [
            *MODGATE,
            "verify",
            board.console,
            "--out",
            str(out),
            "--receive-port",
            str(rx_port),
            "--receive-aet",
            "BENCHRX",
            "--bind",
            "127.0.0.1",
            "--wait",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  test pattern arrived at BENCHRX" in done.stdout
    assert (out / "contact-sheet.png").stat().st_size > 0
    assert ">PASS<" in (out / "report.html").read_text()
