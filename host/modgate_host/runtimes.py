"""Where the firmware runs on this host: CPython, the x86-64 MicroPython build, or armhf under QEMU.

Every host command that runs device code (encode, send, emulate, the tests, the benchmarks) builds
its command line here, so there is one definition of "run the firmware on runtime X".
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

# The data the host runs on (firmware, boards, docs, the image build's tools) ships inside the
# package (`share/`), so an installed `modgate` works from any folder. In a development checkout
# share/ holds symbolic links into the checkout, so the same paths see the files being edited.
SHARE = Path(str(resources.files("modgate_host") / "share"))
FIRMWARE = SHARE / "firmware"
BOARDS = SHARE / "boards"
DOCS = SHARE / "docs"
TOOLS = SHARE / "tools"
ENTRY = FIRMWARE / "main.py"
# The checkout share/ links into, or None when installed from a wheel: only checkout work
# (the MicroPython unit tests, mip's package.json) needs it.
CHECKOUT = FIRMWARE.resolve().parent if FIRMWARE.is_symlink() else None


def user_cache() -> Path:
    """Where an installed host keeps what it builds and fetches (XDG base directory spec)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modgate"


def _toolchain() -> Path:
    """MicroPython sources, sysroots and firmware images: MODGATE_TOOLCHAIN if set, else the
    checkout's .toolchain/ (what `make setup` fills), else the user cache."""
    if os.environ.get("MODGATE_TOOLCHAIN"):
        return Path(os.environ["MODGATE_TOOLCHAIN"])
    return CHECKOUT / ".toolchain" if CHECKOUT is not None else user_cache()


TOOLCHAIN = _toolchain()

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


def firmware_module(name: str) -> ModuleType:
    """Import firmware module `name` (e.g. "modgate.testpattern") into this host process, from the
    package's own firmware without putting firmware/ on sys.path: the `modgate` package is
    loaded from its folder, and its submodules resolve through the package's __path__."""
    if "modgate" not in sys.modules:
        init = FIRMWARE / "modgate" / "__init__.py"
        spec = importlib.util.spec_from_file_location("modgate", init, submodule_search_locations=[
            str(init.parent)])
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["modgate"] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules["modgate"]
            raise
    return importlib.import_module(name)


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
