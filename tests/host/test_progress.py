"""The host's progress bar: drawn on a terminal, silent into a log or a pipe."""

from __future__ import annotations

import io

from modgate_host.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_the_bar_move_and_the_step_named() -> None:
    screen = Terminal()
    bar = Progress(3, "provision", stream=screen, keep=True)
    bar.step("dest PACS")
    bar.step("save")
    bar.done()
    text = screen.getvalue()
    assert "provision" in text and "2/3, save" in text
    assert "\r" in text


def test_a_log_gets_no_control_characters() -> None:
    log = io.StringIO()
    bar = Progress(3, "verify", stream=log)
    for what in ("echo", "pattern", "deliver", "one too many"):
        bar.step(what)
    bar.done()
    assert log.getvalue() == ""
    assert bar.count == 3  # never past the total


def test_quiet_draws_nothing_even_on_a_terminal() -> None:
    screen = Terminal()
    bar = Progress(10, "frames", stream=screen, quiet=True)
    bar.advance_to(10, "ack 10")
    bar.done()
    assert screen.getvalue() == ""
