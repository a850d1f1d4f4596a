"""Power cuts at random moments: SIGKILL the real spool on MicroPython during acquisition, commit,
forwarding and recovery; afterwards every acknowledged object and frame is archived byte for byte
and no file is left in the spool. The longer soak is tools/soak_spool.py."""

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
    phases: Counter[str] = Counter()
    for i in range(TRIALS):
        seed = BASE_SEED + i
        trial = soak.run_trial(seed, tmp_path / str(seed), "micropython", KILLS_PER_TRIAL, count=400)
        kills += trial.kills
        acked += trial.acked
        phases.update(line.split()[0] for line in trial.last_lines)
        problems += [f"seed {seed}: {p}" for p in trial.problems]
    assert not problems, "\n".join(problems[:40])
    assert kills >= 100, f"only {kills} runs were killed mid-work"
    assert acked > 10 * TRIALS
    # The kills landed while frames of open objects and whole objects were being acknowledged.
    assert phases["FRAME"] and phases["ACK"], phases
