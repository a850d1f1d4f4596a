"""Power-cut soak for the spool: SIGKILL the real firmware acquisition and spool at seeded moments.

usage: python tools/soak_spool.py [--trials N] [--seed S] [--runtime micropython|qemu-armhf|cpython]
                                  [--kills K] [--count C]

Each trial runs tests/spool_crash_driver.py K times on one flash folder, killing it after a
seeded random delay (during acquisition of single frames and cine series, commit, forwarding or
recovery); each run sends the modality's script on from the first frame whose ACK the last run
did not print, as a modality resends what was not acknowledged. A last run drains. Then every
archived object is read with pydicom, and the trial fails unless: every acknowledged frame is in
the archive, once, in the object its ACK named, byte for byte; each object holds consecutive
frames of one series (or one single frame); and nothing (temporary or queued) is left in the
spool. Exit 1 on any failure. tests/e2e/test_spool_crash.py runs a short version of this.
"""

from __future__ import annotations

import argparse
import importlib.util
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
FIRMWARE = REPO / "firmware"

DRIVER = REPO / "tests" / "spool_crash_driver.py"
sys.path.insert(0, str(FIRMWARE))
_spec = importlib.util.spec_from_file_location("spool_crash_driver", DRIVER)
assert _spec is not None and _spec.loader is not None
driver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(driver)


@dataclass
class Trial:
    seed: int
    kills: int = 0
    acked: int = 0
    resumed: int = 0  # series objects whose frames were acknowledged by runs on both sides of a kill
    last_lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _complete_lines(data: bytes) -> list[str]:
    """Lines the driver finished writing (a kill may cut the last one)."""
    text = data.decode(errors="replace")
    lines = text.split("\n")
    return lines[:-1]


def _driver(runtime: str, *args: str) -> list[str]:
    return [*interpreter(runtime), str(DRIVER), *args]


def _archived(archive: Path, seed: int, frames: list[tuple], problems: list[str]) -> dict[str, list[int]]:
    """{SOP Instance UID: [script frame number of each of its frames]} of the archive's objects."""
    import pydicom

    out: dict[str, list[int]] = {}
    for path in sorted(archive.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.PixelData
            count = int(ds.get("NumberOfFrames", 1))
            size = int(ds.Rows) * int(ds.Columns)
        except Exception as exc:  # noqa: BLE001 - any damage is a finding
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        if len(pixels) != count * size + (count * size) % 2:
            problems.append(f"{path.name}: {len(pixels)} pixel bytes for {count} frames of {size}")
            continue
        numbers = []
        for k in range(count):
            frame = pixels[k * size:(k + 1) * size]
            try:
                number = int(frame[1:frame.index(b">")].split(b":")[1])
            except (ValueError, IndexError):
                problems.append(f"{path.name}: frame {k} is no frame of the script")
                break
            if number >= len(frames) or frame != driver.payload(seed, number, size):
                problems.append(f"{path.name}: frame {k} is not the bytes of script frame {number}")
                break
            numbers.append(number)
        out[str(ds.SOPInstanceUID)] = numbers
    return out


def run_trial(seed: int, workdir: Path, runtime: str = "micropython", kills: int = 2, count: int = 40,
              window_s: tuple[float, float] = (0.01, 0.45)) -> Trial:
    """Run one trial on a fresh folder; returns what was acknowledged and any problem found."""
    trial = Trial(seed)
    rng = random.Random(seed)
    root = workdir / "flash"
    archive = workdir / "archive"
    env = environment(runtime)
    frames = driver.script(seed, count)
    acked: dict[int, str] = {}  # script frame number -> the UID its ACK named
    run_of: dict[int, int] = {}  # script frame number -> the run that printed its ACK
    start = 0
    mode = "flaky" if seed % 2 else "steady"  # odd seeds: stores break off and are retried
    for run in range(kills):
        argv = _driver(runtime, str(root), str(archive), str(seed), str(start), str(count), mode)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(*window_s))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        trial.kills += 1 if proc.returncode == -signal.SIGKILL else 0
        if proc.returncode not in (0, -signal.SIGKILL):
            trial.problems.append(f"run {run} failed ({proc.returncode}): {err.decode()[-400:]}")
        lines = _complete_lines(out)
        trial.last_lines.append(lines[-1] if lines else "(nothing yet)")
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("ACK", "FRAME"):
                number = int(parts[1])
                if acked.setdefault(number, parts[2]) != parts[2]:
                    trial.problems.append(f"frame {number} acknowledged as {acked[number]} and as {parts[2]}")
                run_of.setdefault(number, run)
                start = max(start, number + 1)
            elif parts and parts[0] == "NAK":
                trial.problems.append("refused: " + line)
    done = subprocess.run(_driver(runtime, str(root), str(archive), str(seed), "0", "0", "drain"),
                          env=env, capture_output=True, timeout=120)
    lines = _complete_lines(done.stdout)
    if done.returncode != 0 or "DRAINED" not in lines:
        trial.problems.append(f"drain run failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    trial.problems += [f"left behind: {line[5:]}" for line in lines if line.startswith("LEFT ")]
    trial.acked = len(acked)
    objects = _archived(archive, seed, frames, trial.problems)
    holder: dict[int, str] = {}
    for uid, numbers in objects.items():
        for number in numbers:
            if number in holder:
                trial.problems.append(f"frame {number} is in {holder[number]} and in {uid}")
            holder[number] = uid
        if numbers and (numbers != list(range(numbers[0], numbers[0] + len(numbers)))
                        or len({frames[n][1] for n in numbers}) != 1
                        or (frames[numbers[0]][0] == "single" and len(numbers) != 1)):
            trial.problems.append(f"{uid}: frames {numbers} are not one series in order")
    for number, uid in sorted(acked.items()):
        if holder.get(number) != uid:
            trial.problems.append(f"frame {number} acknowledged as {uid}, archived in {holder.get(number)}")
    for numbers in objects.values():
        trial.resumed += len({run_of[n] for n in numbers if n in run_of}) > 1
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
    failed = kills = acked = resumed = 0
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
        resumed += trial.resumed
        if trial.problems:
            failed += 1
            print(f"seed {seed}: FAILED (killed after: {trial.last_lines})")
            for problem in trial.problems:
                print("   ", problem)
    seeds = f"seeds {args.seed}..{args.seed + args.trials - 1}, {args.runtime}"
    print(f"{args.trials} trials, {kills} SIGKILLs, {acked} acknowledged frames checked, {resumed} series "
          f"resumed across a kill, {failed} failed, "
          f"{time.monotonic() - started:.1f} s ({seeds})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
