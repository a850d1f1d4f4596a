"""The progress bar of long host work (provision, verify, simulate-modality), drawn by tqdm.

A bar is drawn on stderr only when stderr is a terminal: a log file, a pipe or a CI run gets the
commands' own result lines and no carriage returns.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

BAR_FORMAT = "{desc} {bar} {n_fmt}/{total_fmt}{postfix}"


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None, quiet: bool = False,
                 keep: bool = False) -> None:
        """`keep` leaves the finished bar on screen (a summary worth reading); else it is erased."""
        stream = stream or sys.stderr
        self.live = not quiet and stream.isatty()
        self.total = max(total, 1)
        self.count = 0
        self._bar = tqdm(total=self.total, desc=label, file=stream, disable=not self.live, leave=keep,
                         dynamic_ncols=True, mininterval=0.1, bar_format=BAR_FORMAT)

    def step(self, what: str = "") -> None:
        """One more unit done; `what` names the one now under way."""
        self.advance_to(self.count + 1, what)

    def advance_to(self, done: int, what: str = "") -> None:
        done = min(done, self.total)
        self._bar.set_postfix_str(what, refresh=False)
        self._bar.update(done - self.count)
        self.count = done

    def done(self) -> None:
        self._bar.close()
