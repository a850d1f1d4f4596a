"""`modgate console PORT` as a script would use it: keys from a pipe, device output to stdout."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_server import ConsoleServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConsoleServer]:
    srv = ConsoleServer(tmp_path)
    yield srv
    srv.close()


def test_piped_session_shows_replies_and_edits(server: ConsoleServer) -> None:
    keys = b"statux\x7fs\rident\rbogus\r"
    proc = subprocess.run(
        [sys.executable, "-m", "modgate_host.cli", "console", server.url],
        input=keys,
        capture_output=True,
        timeout=30,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "queue_depth" in out  # status ran after the backspace fixed the typo
    assert "FAKE0001" in out
    assert "error: unknown command 'bogus'" in out


def test_bad_port_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modgate_host.cli", "console", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("modgate: cannot open")
