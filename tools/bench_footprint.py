"""Footprint benchmark (not a timed test): .mpy bytes per layer and per board, the heap the whole
module set takes once imported, and, per emulated board, idle heap after boot and boot-to-ready.

usage: python tools/bench_footprint.py [--board ID ...] [--runs N] [--write-docs]

Boot numbers come from `modgate emulate --verbose`: the time from spawning it to its ready JSON
line, and the `heap_free=` the firmware logs when ready (idle heap = heap budget - heap_free).
--write-docs replaces the "## Footprint" section of docs/benchmarks.md (other sections stay).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
from modgate_host import image  # noqa: E402
from modgate_host.build import (  # noqa: E402
    FOOTPRINT_TARGET_BYTES,
    LAYERS,
    BuildError,
    board_ids,
    build,
    load_board,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
EMULATED = {board: runtime for runtime, board in image.BOARD_OF_RUNTIME.items()}
READY_TIMEOUT_S = 60.0
IDLE_HEAP_TARGET = 24 * 1024
READY_TARGET_S = 0.5
HEAP_FREE = re.compile(rb"heap_free=(-?\d+)")


def resident_heap(board: str, files: list[str]) -> int | None:
    """Heap bytes the firmware's modules take once all are imported from the board's image."""
    names = []
    for path in files:
        if path.startswith("modgate/") and path.endswith(".mpy"):
            name = path[: -len(".mpy")].replace("/", ".")
            names.append(name[: -len(".__init__")] if name.endswith(".__init__") else name)
    return image.imported_heap(board, names)


# What the run job imports before it is ready (the rest loads on first use).
BOOT_MODULES = (
    "board",
    "modgate.jobs.run",
    "modgate.device",
    "modgate.console.shell",
    "modgate.ingest.tcp",
    "modgate.ingest.link",
    "modgate.ingest.frameproto",
)


def boot_once(board: str, heap: int | None = None) -> tuple[float, int | None]:
    """(seconds from starting the firmware to its ready line, heap in use at ready) of one boot of
    the emulated board through the same entry point `modgate emulate` uses, at the board's
    emulated heap unless `heap` is given."""
    from modgate_host.emulator import Emulator, board_heap

    budget = heap or int(board_heap(board))
    with tempfile.TemporaryDirectory(prefix="mgbench-") as state:
        emu = Emulator(board, Path(state), heap=str(budget))
        image.image(board)  # build outside the timed part
        start = time.perf_counter()
        try:
            emu.start()
        except Exception as exc:  # noqa: BLE001 - the report shows why it did not boot
            emu.close()
            raise RuntimeError(failure_reason(b"", Path(state) / "device.log")) from exc
        elapsed = time.perf_counter() - start
        emu.close()
        log = (Path(state) / "device.log").read_bytes()
    found = HEAP_FREE.findall(log)
    in_use = budget - int(found[0]) if found and int(found[0]) >= 0 else None
    return elapsed, in_use


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def failure_reason(stderr: bytes, device_log: Path) -> str:
    """The last error line of emulate's stderr or of the device log, for the report."""
    lines = stderr.decode(errors="replace").splitlines()
    if device_log.exists():
        lines += device_log.read_text(errors="replace").splitlines()
    lines = [line.strip() for line in lines if line.strip()]
    errors = [line for line in lines if "Error" in line]
    if errors:
        return errors[-1]
    return lines[-1].split("; see ")[0] if lines else "emulate printed no ready line"


DIAGNOSTIC_HEAP = 1024 * 1024


def boot_stats(board: str, runs: int) -> dict[str, object]:
    """Median ready time and idle heap at the board's budget; when it cannot boot there, one
    diagnostic boot with a 1 MB heap says how far off the budget the firmware is."""
    try:
        samples = [boot_once(board) for _ in range(runs)]
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        stats: dict[str, object] = {"error": str(exc)}
        try:
            ready, idle = boot_once(board, DIAGNOSTIC_HEAP)
            stats.update({"diagnostic_ready_s": ready, "diagnostic_idle_heap": idle})
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            pass
        return stats
    idles = [idle for _, idle in samples if idle is not None]
    return {
        "ready_s": statistics.median(t for t, _ in samples),
        "idle_heap": max(idles) if idles else None,
        "boot_modules": image.imported_heap(board, list(BOOT_MODULES)),
    }


def kb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f} KB"


def verdicts(rows: dict[str, dict[str, object]]) -> list[str]:
    """One "met"/"not met" phrase per target, from the measured rows."""
    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = []
    largest = max(int(str(row["firmware"])) for row in rows.values())
    ok = largest <= FOOTPRINT_TARGET_BYTES
    out.append(f"firmware .mpy <= {FOOTPRINT_TARGET_BYTES // 1024} KB {met(ok)}"
               f" ({largest / 1024:.1f} KB on the largest board)")
    for board in EMULATED:
        boot = rows.get(board, {}).get("boot")
        if not isinstance(boot, dict) or boot.get("idle_heap") is None:
            continue
        idle = int(boot["idle_heap"])
        out.append(f"idle heap <= {IDLE_HEAP_TARGET // 1024} KB on {board} {met(idle <= IDLE_HEAP_TARGET)}"
                   f" ({kb(idle)})")
        if board == "unix" and boot.get("ready_s") is not None:
            ready = float(boot["ready_s"])
            ok = ready <= READY_TARGET_S
            out.append(f"ready within {READY_TARGET_S} s on x86-64 {met(ok)} ({ready:.3f} s)")
    return out


def report(rows: dict[str, dict[str, object]]) -> str:
    boards = list(rows)
    out = ["## Footprint", ""]
    out.append(
        "`python tools/bench_footprint.py --write-docs` (mpy-cross of tools/versions.env). Bytes of the"
        " compiled `.mpy` per layer; *firmware* is every layer but the board's own modules. Targets:"
        f" firmware <= {FOOTPRINT_TARGET_BYTES // 1024} KB of .mpy,"
        f" idle heap <= {IDLE_HEAP_TARGET // 1024} KB,"
        f" ready within {READY_TARGET_S} s on x86-64."
    )
    out += ["", "| layer | " + " | ".join(boards) + " |", "|---|" + "---:|" * len(boards)]
    for layer in LAYERS:
        out.append(f"| {layer} | " + " | ".join(str(rows[b]["layers"][layer]) for b in boards) + " |")  # type: ignore[index]
    out.append("| **firmware** | " + " | ".join(f"**{rows[b]['firmware']}**" for b in boards) + " |")
    out.append("| total | " + " | ".join(str(rows[b]["total"]) for b in boards) + " |")
    out += [
        "",
        "| emulated board | heap budget | emulated heap | modules resident (all imported) |"
        " idle heap after boot (module objects at boot) | boot to ready |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for board in boards:
        if board not in EMULATED:
            continue
        row = rows[board]
        boot = row.get("boot") or {}
        assert isinstance(boot, dict)
        if "error" in boot and "diagnostic_idle_heap" in boot:
            idle = f"{kb(boot['diagnostic_idle_heap'])} (at a 1 MB heap)"  # type: ignore[arg-type]
            ready = f"{boot['diagnostic_ready_s']:.3f} s (at a 1 MB heap); at the budget: {boot['error']}"
        elif "error" in boot:
            idle, ready = "not measured", f"not measured: {boot['error']}"
        else:
            idle = f"{kb(boot.get('idle_heap'))} ({kb(boot.get('boot_modules'))})"  # type: ignore[arg-type]
            ready = "n/a" if boot.get("ready_s") is None else f"{boot['ready_s']:.3f} s"
        resident = row.get("resident")
        emulated = int(str(load_board(board)["emulated_heap_bytes"]))
        out.append(f"| {board} | {kb(row['heap'])} | {kb(emulated)} | {kb(resident)} | {idle} | {ready} |")  # type: ignore[arg-type]
    out += ["", "Against the targets: " + "; ".join(verdicts(rows)) + "."]
    out += [
        "",
        "The emulators run the board's firmware image: MicroPython with the firmware frozen in"
        " (`tools/build_frozen.sh`), as a board carries it, so bytecode stays in the image (\"flash\")"
        " and the heap holds module objects and data only. *Modules resident* is the heap every"
        " firmware module's objects take once imported; *idle heap after boot* is all the heap in use"
        " at the ready line (the PDU buffer, reserved at boot while the heap is unfragmented, and the"
        " 4 KB log ring included), with the module objects the boot imported in brackets. *Boot to"
        " ready*: from starting the firmware (the emulator's entry point, image already built) to its"
        " ready log line. The 32-bit armhf figures model the boards (x86-64 objects are twice as wide).",
        "",
    ]
    return "\n".join(out)


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    start = text.find("## Footprint")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section.rstrip("\n") + "\n\n" + (text[end + 1 :] if end >= 0 else "")
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", action="append", choices=board_ids())
    parser.add_argument("--runs", type=int, default=3, help="boots per emulated board (median)")
    parser.add_argument("--no-boot", action="store_true", help="footprint only, no emulator boots")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the Footprint section of the docs")
    args = parser.parse_args()
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="mgbuild-") as out:
        for board in args.board or board_ids():
            try:
                result = build(board, Path(out))
            except BuildError as exc:
                print(f"bench_footprint: {exc}", file=sys.stderr)
                return 2
            fp = result.footprint
            row: dict[str, object] = {
                "layers": fp.layers(),
                "firmware": fp.firmware_bytes(),
                "total": fp.total(),
                "heap": result.board["heap_budget_bytes"],
            }
            if board in EMULATED:
                row["resident"] = resident_heap(board, result.files)
                if not args.no_boot:
                    row["boot"] = boot_stats(board, args.runs)
            rows[board] = row
            print(
                f"{board}: firmware {fp.firmware_bytes()} bytes, total {fp.total()}"
                + (f", resident {row.get('resident')}" if "resident" in row else "")
                + (f", boot {row.get('boot')}" if "boot" in row else ""),
                flush=True,
            )
    section = report(rows)
    print()
    print(section)
    if args.write_docs:
        write_docs(section)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
