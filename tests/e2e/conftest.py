"""End-to-end checks that hold for every test: no emulated board was reset by its watchdog,
except in the test that makes it happen on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

WATCHDOG_RESET = "emulator: watchdog: not fed"


@pytest.fixture(autouse=True)
def no_watchdog_reset(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("watchdog_reset") is not None:
        return
    for log in tmp_path.rglob("device.log"):
        text = log.read_text(errors="replace")
        assert WATCHDOG_RESET not in text, f"the watchdog reset a board in {log}:\n{text[-3000:]}"
