"""Runs tests/e2e/ingest_device.py (the real frame input on a chosen runtime) and collects its events."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from modgate_host.runtimes import FIRMWARE, interpreter

REPO = Path(__file__).resolve().parents[2]

DRIVER = REPO / "tests" / "e2e" / "ingest_device.py"


class Device:
    def __init__(self, runtime: str, mode: str, where: str, folder: Path, *options: str) -> None:
        env = dict(os.environ)
        env["MICROPYPATH"] = str(FIRMWARE) + os.pathsep + ".frozen"  # and the build's own asyncio
        env["PYTHONPATH"] = str(FIRMWARE)
        self.folder = folder
        self.stderr_path = folder / "device.log"
        self.proc = subprocess.Popen(
            [*interpreter(runtime, "256k" if runtime != "cpython" else None), str(DRIVER), mode, where,
             str(folder), *options],
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("wb"),
            env=env,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next(60)
        assert first and first["event"] == "ready", f"device did not start: {self.log()}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if not line:
            return None
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event

    def wait_for(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        until = time.monotonic() + timeout
        for event in self.events:
            if predicate(event):
                return event
        while time.monotonic() < until:
            event = self._next(max(0.01, until - time.monotonic()))
            if event is None:
                break
            if predicate(event):
                return event
        raise AssertionError(f"event not seen; events {self.events}; log {self.log()}")

    def stop(self) -> list[dict[str, Any]]:
        (self.folder / "stop").write_text("")
        self.proc.wait(timeout=60)
        while self._next(5) is not None:
            pass
        return self.events

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def commits(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "commit"]


def simulate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "modgate_host.cli", "simulate-modality", *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "host")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
