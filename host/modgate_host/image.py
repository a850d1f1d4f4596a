"""Firmware images: MicroPython's unix port (the emulated boards) or a bare-metal port (qemu-mps2)
with the firmware frozen in.

A real board's image carries the firmware frozen: bytecode in flash, only module objects and data
in the GC heap. The emulators run the same way, so their heap limit means what a board's does:
`tools/build_frozen.sh` builds the unix port (x86-64, or armhf with the cross compiler named in
board.json) with firmware/modgate, main.py, the board module and the board's data frozen in.
Every device process on a MicroPython runtime (emulate, send, echo, encode, the demo, the
end-to-end tests and the benchmarks) starts from here; firmware unit tests run the sources.
Images live in TOOLCHAIN/images/<board>: the checkout's .toolchain/, or an installed host's user
cache (runtimes.TOOLCHAIN).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from modgate_host.build import board_ids, load_board
from modgate_host.runtimes import BOARDS, FIRMWARE, SHARE, TOOLCHAIN, TOOLS, RuntimeUnavailable

IMAGES = TOOLCHAIN / "images"
BUILD_SCRIPT = TOOLS / "build_frozen.sh"
# Bare-metal boards (kind "qemu-system") are built by their MicroPython port's own make.
BAREMETAL_SCRIPT = TOOLS / "build_baremetal.sh"
BAREMETAL_KIND = "qemu-system"
# The emulated board whose image each MicroPython runtime runs, from board.json ("kind", "runtime").
BOARD_OF_RUNTIME = {
    str(data["runtime"]): board
    for board, data in ((b, load_board(b)) for b in board_ids())
    if data["kind"] == "emulator"
}


def _baremetal(board_id: str) -> bool:
    return load_board(board_id)["kind"] == BAREMETAL_KIND


def _sources(board_id: str) -> list[Path]:
    """Every file whose content is in the image: a change to any of them rebuilds it."""
    files = sorted((FIRMWARE / "modgate").rglob("*.py"))
    files += [FIRMWARE / "main.py", BOARDS / board_id / "board.py", BOARDS / board_id / "board.json"]
    if _baremetal(board_id):
        port_board = BOARDS / board_id / str(load_board(board_id)["image_board_dir"])
        files += [BOARDS / board_id / "manifest.py", *sorted(p for p in port_board.iterdir() if p.is_file())]
        files += [BAREMETAL_SCRIPT]
    else:
        files += [BUILD_SCRIPT, TOOLS / "mbedtls_config_image.h"]
    files += [TOOLS / "image_build_lib.sh", TOOLS / "versions.env"]
    return files


def _digest(board_id: str) -> str:
    digest = hashlib.sha256()
    for path in _sources(board_id):
        digest.update(path.relative_to(SHARE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def image(board_id: str) -> Path:
    """The board's firmware image (the unix port's interpreter, or a bare-metal board's
    firmware.elf) with the firmware frozen in, rebuilt when a source changed. Concurrent callers
    (parallel tests, a demo beside a test run) wait for one build."""
    out = IMAGES / board_id
    out.mkdir(parents=True, exist_ok=True)
    baremetal = _baremetal(board_id)
    executable = out / ("firmware.elf" if baremetal else "micropython")
    stamp = out / "sources.sha256"
    want = _digest(board_id)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if executable.exists() and stamp.exists() and stamp.read_text() == want:
            return executable
        script = BAREMETAL_SCRIPT if baremetal else BUILD_SCRIPT
        proc = subprocess.run(["bash", str(script), board_id, str(out)], capture_output=True,
                              text=True, env={**os.environ, "MODGATE_TOOLCHAIN": str(TOOLCHAIN)})
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeUnavailable(f"building the {board_id} firmware image failed:\n{tail}")
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(want)
        os.replace(tmp, stamp)
    return executable


def interpreter(board_id: str, heap: str | None = None) -> list[str]:
    """argv prefix that starts the board's image (under its runner, e.g. qemu-arm), heap capped."""
    runner = load_board(board_id).get("image_runner") or []
    assert isinstance(runner, list)
    if runner and not shutil.which(runner[0]):
        raise RuntimeUnavailable(f"{runner[0]} not found (run `make setup`)")
    heap_args = ["-X", f"heapsize={heap}"] if heap else []
    return [*map(str, runner), str(image(board_id)), *heap_args]


def command(board_id: str, job: str, *args: str, heap: str | None = None) -> list[str]:
    """argv that runs firmware job `job` from the board's image, through its frozen main.py
    (image_main: frozen modules only, whatever the current folder holds)."""
    return [*interpreter(board_id, heap), "-m", "image_main", job, *args]


def imported_heap(board_id: str, modules: list[str]) -> int | None:
    """Heap bytes the firmware modules `modules` take once imported from the board's image
    (module objects and their tables: the bytecode stays in the image), in a big heap."""
    script = (
        "import gc\ngc.collect()\nbase = gc.mem_alloc()\n"
        f"for name in {modules!r}:\n    __import__(name)\n"
        "gc.collect()\nprint(gc.mem_alloc() - base)\n"
    )
    # Run outside the repository, so no folder on sys.path shadows a frozen module.
    proc = subprocess.run([*interpreter(board_id, "4m"), "-c", script], env=environment(),
                          capture_output=True, text=True, timeout=300, cwd="/")
    return int(proc.stdout.split()[-1]) if proc.returncode == 0 and proc.stdout.strip() else None


def environment() -> dict[str, str]:
    """Only the frozen modules on the import path: nothing is loaded from a folder into the heap."""
    return {**os.environ, "MICROPYPATH": ".frozen"}


def main() -> int:
    """`python -m modgate_host.image BOARD...`: build (or check) the images; `make setup` runs it."""
    import sys

    for board_id in sys.argv[1:]:
        print(f"image {board_id}: {image(board_id)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
