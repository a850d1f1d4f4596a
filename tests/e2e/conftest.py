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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with the last lines of each board's log: on a CI machine
    the device's own account of what went wrong is otherwise lost with the temporary folder."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = item.funcargs.get("tmp_path") if hasattr(item, "funcargs") else None
    if not report.failed or not isinstance(tmp_path, Path):
        return
    for log in sorted(tmp_path.rglob("device.log")):
        lines = log.read_text(errors="replace").splitlines()[-40:]
        report.sections.append((f"device log {log.relative_to(tmp_path)} (last 40 lines)", "\n".join(lines)))
