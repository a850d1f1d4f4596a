"""Power-cut soak for the spool: SIGKILL the real firmware spool at seeded random moments.

usage: python tools/soak_spool.py [--trials N] [--seed S] [--runtime micropython|qemu-armhf|cpython]
                                  [--kills K] [--count C]

Each trial runs tests/spool_crash_driver.py K times on one flash folder, killing it after a
seeded random delay (during acquisition, commit, forwarding or recovery), then once more to
drain. It then checks that every acknowledged object and frame is in the fake archive, byte
for byte, and that nothing (temporary or queued) is left in the spool. Exit 1 on any failure.
tests/e2e/test_spool_crash.py runs a short version of this in the test suite.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
from modgate_host.runtimes import environment, interpreter  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

DRIVER = REPO / "tests" / "spool_crash_driver.py"


@dataclass
class Trial:
    seed: int
    kills: int = 0
    acked: int = 0
    last_lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _header(uid: str, frames: int) -> bytes:
    return f"UID={uid}\nFRAMES={frames:08d}\n".encode()


def _frame(uid: str, k: int, size: int) -> bytes:
    unit = f"{uid}#{k}|".encode()
    return (unit * (size // len(unit) + 1))[:size]


def _complete_lines(data: bytes) -> list[str]:
    """Lines the driver finished writing (a kill may cut the last one)."""
    text = data.decode(errors="replace")
    lines = text.split("\n")
    return lines[:-1]


def _driver(runtime: str, *args: str) -> list[str]:
    return [*interpreter(runtime), str(DRIVER), *args]


def run_trial(seed: int, workdir: Path, runtime: str = "micropython", kills: int = 2, count: int = 40,
              window_s: tuple[float, float] = (0.01, 0.45)) -> Trial:
    """Run one trial on a fresh folder; returns what was acknowledged and any problem found."""
    trial = Trial(seed)
    rng = random.Random(seed)
    root = workdir / "spool"
    archive = workdir / "archive"
    env = environment(runtime)
    acked: dict[str, tuple[int, int]] = {}  # uid -> (frames acknowledged, frame size)

    def note(lines: list[str]) -> None:
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] in ("ACK", "FRAME"):
                uid, frames, size = parts[1], int(parts[2]), int(parts[3])
                if frames > acked.get(uid, (0, 0))[0]:
                    acked[uid] = (frames, size)

    mode = "flaky" if seed % 2 else "steady"  # odd seeds: stores break off and are retried
    for run in range(1, kills + 1):
        argv = _driver(runtime, str(root), str(archive), str(seed), str(run), str(count), mode)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(*window_s))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        trial.kills += 1 if proc.returncode == -signal.SIGKILL else 0
        lines = _complete_lines(out)
        trial.last_lines.append(lines[-1] if lines else "(nothing yet)")
        note(lines)
    done = subprocess.run(_driver(runtime, str(root), str(archive), str(seed), "0", "0", "drain"),
                          env=env, capture_output=True, timeout=120)
    lines = _complete_lines(done.stdout)
    if done.returncode != 0 or "DRAINED" not in lines:
        trial.problems.append(f"drain run failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    trial.problems += [f"left behind: {line[5:]}" for line in lines if line.startswith("LEFT ")]
    trial.acked = len(acked)
    for uid, (frames, size) in sorted(acked.items()):
        path = archive / (uid + ".dcm")
        if not path.exists():
            trial.problems.append(f"{uid}: acknowledged ({frames} frame(s)) but not in the archive")
            continue
        data = path.read_bytes()
        head = data[: len(_header(uid, 0))]
        try:
            got_frames = int(head.split(b"FRAMES=")[1])
        except (IndexError, ValueError):
            trial.problems.append(f"{uid}: archived object has a damaged header")
            continue
        if got_frames < frames:
            trial.problems.append(f"{uid}: {frames} frame(s) acknowledged, {got_frames} archived")
        want = _header(uid, got_frames) + b"".join(_frame(uid, k, size) for k in range(got_frames))
        if data != want:
            trial.problems.append(f"{uid}: archived bytes differ ({len(data)} vs {len(want)} expected)")
    return trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--runtime", default="micropython", choices=("micropython", "qemu-armhf", "cpython"))
    parser.add_argument("--kills", type=int, default=3, help="kills per flash folder before the drain")
    parser.add_argument("--count", type=int, default=400, help="objects each run tries to acquire")
    args = parser.parse_args()
    window = (0.01, 0.45) if args.runtime != "qemu-armhf" else (0.05, 4.0)
    failed = kills = acked = 0
    started = time.monotonic()
    for i in range(args.trials):
        seed = args.seed + i
        work = Path(tempfile.mkdtemp(prefix="mgsoak-"))
        try:
            trial = run_trial(seed, work, args.runtime, args.kills, args.count, window)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        kills += trial.kills
        acked += trial.acked
        if trial.problems:
            failed += 1
            print(f"seed {seed}: FAILED (killed after: {trial.last_lines})")
            for problem in trial.problems:
                print("   ", problem)
    seeds = f"seeds {args.seed}..{args.seed + args.trials - 1}, {args.runtime}"
    print(f"{args.trials} trials, {kills} SIGKILLs, {acked} acknowledged objects checked, {failed} failed, "
          f"{time.monotonic() - started:.1f} s ({seeds})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
