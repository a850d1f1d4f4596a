"""Where the firmware runs on this host: CPython, the x86-64 MicroPython build, or armhf under QEMU.

Every host command that runs device code (encode, send, emulate, the tests, the benchmarks) builds
its command line here, so there is one definition of "run the firmware on runtime X".
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
TOOLCHAIN = Path(os.environ.get("MODGATE_TOOLCHAIN", REPO / ".toolchain"))
ENTRY = FIRMWARE / "main.py"

RUNTIMES = ("cpython", "micropython", "qemu-armhf")
MICROPYTHON_RUNTIMES = ("micropython", "qemu-armhf")


class RuntimeUnavailable(RuntimeError):
    """The requested runtime is not installed here; `make setup` installs it."""


def venv_tool(name: str) -> str | None:
    """A command `make setup` installs into the .venv: beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def _micropython_unix() -> str:
    found = venv_tool("micropython")
    if found is None:
        raise RuntimeUnavailable("x86-64 MicroPython not found (run `make setup`)")
    return found


def _armhf_sysroot() -> Path:
    sysroot = TOOLCHAIN / "sysroot-armhf"
    if not (sysroot / "usr/bin/micropython").exists():
        raise RuntimeUnavailable(f"armhf MicroPython not found in {sysroot} (run `make setup`)")
    if not shutil.which("qemu-arm"):
        raise RuntimeUnavailable("qemu-arm not found (apt-get install qemu-user)")
    return sysroot


def interpreter(runtime: str, heap: str | None = None) -> list[str]:
    """The argv prefix that starts a Python interpreter of `runtime`, with a heap limit if given."""
    if runtime == "cpython":
        return [sys.executable]
    heap_args = ["-X", f"heapsize={heap}"] if heap else []
    if runtime == "micropython":
        return [_micropython_unix(), *heap_args]
    if runtime == "qemu-armhf":
        sysroot = _armhf_sysroot()
        return ["qemu-arm", "-L", str(sysroot), str(sysroot / "usr/bin/micropython"), *heap_args]
    raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")


def environment(runtime: str) -> dict[str, str]:
    """Environment for firmware sources (CPython jobs, test drivers): the firmware tree plus the
    unix board's folder on the import path. MicroPython jobs run the image (firmware_process)."""
    env = dict(os.environ)
    path = os.pathsep.join([str(FIRMWARE), str(BOARDS / "unix")])
    if runtime == "cpython":
        env["PYTHONPATH"] = path
    else:
        env["MICROPYPATH"] = path + os.pathsep + ".frozen"  # the build's own frozen asyncio
    return env


def firmware_process(runtime: str, job: str, *args: str, heap: str | None = None) -> tuple[
        list[str], dict[str, str]]:
    """(argv, env) that run firmware job `job` through main.py, the entry point a board boots:
    from the sources on CPython, from the board's firmware image (code frozen in, as on a board;
    see image.py) on the MicroPython runtimes."""
    if runtime == "cpython":
        return [*interpreter(runtime), str(ENTRY), job, *args], environment(runtime)
    from modgate_host import image

    board = image.BOARD_OF_RUNTIME.get(runtime)
    if board is None:
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    return image.command(board, job, *args, heap=heap), image.environment()


def available(runtime: str) -> bool:
    try:
        interpreter(runtime)
    except RuntimeUnavailable:
        return False
    return True
