"""Run the firmware unit tests under each real MicroPython build and print one summary.

usage: python tools/mptest.py [--runtime micropython|qemu-armhf ...] [--jobs N] [MODULE ...]

Each test module runs in its own interpreter process (as a board would run one job), so one
module's heap use cannot hide another's. Exit status 1 on any failure or error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host"))
from modgate_host.runtimes import BOARDS, FIRMWARE, MICROPYTHON_RUNTIMES, interpreter  # noqa: E402

UNIT = REPO / "tests" / "unit"
TIMEOUT_S = 900


def test_modules() -> list[str]:
    return sorted(p.stem for p in UNIT.glob("test_*.py"))


def run_one(runtime: str, module: str) -> tuple[str, str, int, int, int, str]:
    env = dict(os.environ)
    # ".frozen" keeps the build's own frozen modules (asyncio) importable beside the sources.
    env["MICROPYPATH"] = os.pathsep.join(
        [str(FIRMWARE), str(REPO / "tests" / "mpunit"), str(UNIT), str(BOARDS / "unix"), ".frozen"]
    )
    with tempfile.TemporaryDirectory(prefix="mgunit-") as tmp:
        env["MODGATE_TEST_TMP"] = tmp
        cmd = [*interpreter(runtime), str(REPO / "tests" / "mp_run.py"), module]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp)
            out = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = f"{exc.stdout or ''}\nTIMEOUT after {TIMEOUT_S}s"
            return runtime, module, 0, 1, 0, out
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            passed, failed, skipped = (int(x) for x in line.split()[1:4])
            if proc.returncode != 0 and failed == 0:
                failed = 1
            return runtime, module, passed, failed, skipped, out
    return runtime, module, 0, 1, 0, out + f"\n(no RESULT line; exit {proc.returncode})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", action="append", choices=MICROPYTHON_RUNTIMES)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args()
    runtimes = args.runtime or list(MICROPYTHON_RUNTIMES)
    modules = args.modules or test_modules()
    work = [(rt, m) for rt in runtimes for m in modules]
    totals = {rt: [0, 0, 0] for rt in runtimes}
    skips: list[str] = []
    failed_output: list[str] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for runtime, module, passed, failed, skipped, out in pool.map(lambda w: run_one(*w), work):
            totals[runtime][0] += passed
            totals[runtime][1] += failed
            totals[runtime][2] += skipped
            skips += [f"[{runtime}] {line[5:]}" for line in out.splitlines() if line.startswith("SKIP ")]
            if failed:
                failed_output.append(f"===== {runtime} {module}\n{out}")
    for block in failed_output:
        print(block)
    for line in skips:
        print("skipped", line)
    bad = 0
    for runtime, (passed, failed, skipped) in totals.items():
        print(f"firmware unit tests on {runtime}: {passed} passed, {failed} failed, {skipped} skipped")
        bad += failed
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
