"""A one-line progress bar on stderr for long work (only when stderr is a terminal)."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done_count = 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def step(self, what: str = "") -> None:
        self.done_count = min(self.done_count + 1, self.total)
        if not self.live:
            return
        filled = WIDTH * self.done_count // self.total
        bar = "#" * filled + "." * (WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done_count}/{self.total} {what[:30]:<30}")
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * (len(self.label) + WIDTH + 45) + "\r")
            self.stream.flush()
