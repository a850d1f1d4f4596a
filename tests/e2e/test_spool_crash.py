"""Power cuts at random moments: SIGKILL the real acquisition and spool on MicroPython while single
frames and cine series are acquired, committed, forwarded and recovered; afterwards every
acknowledged frame is archived once, byte for byte, in the object its ACK named, series killed
midway went on in the same object, and no file is left in the spool. The longer soak is
tools/soak_spool.py."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("soak_spool", ROOT / "tools" / "soak_spool.py")
assert _spec is not None and _spec.loader is not None
soak = importlib.util.module_from_spec(_spec)
sys.modules["soak_spool"] = soak
_spec.loader.exec_module(soak)

from modgate_host.runtimes import available  # noqa: E402

TRIALS = 50
KILLS_PER_TRIAL = 2
BASE_SEED = 20261127


@pytest.mark.e2e
@pytest.mark.skipif(not available("micropython"), reason="x86-64 MicroPython not installed (make setup)")
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    problems: list[str] = []
    kills = 0
    acked = 0
    resumed = 0
    phases: Counter[str] = Counter()
    for i in range(TRIALS):
        seed = BASE_SEED + i
        trial = soak.run_trial(seed, tmp_path / str(seed), "micropython", KILLS_PER_TRIAL, count=400)
        kills += trial.kills
        acked += trial.acked
        resumed += trial.resumed
        phases.update(line.split()[0] for line in trial.last_lines)
        problems += [f"seed {seed}: {p}" for p in trial.problems]
    assert not problems, "\n".join(problems[:40])
    assert kills >= 100, f"only {kills} runs were killed mid-work"
    assert acked > 10 * TRIALS
    # The kills landed while series frames and single frames were being acknowledged, and series
    # cut by a kill went on in the same object after the restart.
    assert phases["FRAME"] and phases["ACK"], phases
    assert resumed > 0, "no series was resumed across a kill"
