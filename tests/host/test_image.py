"""The emulated boards' firmware images: when they are rebuilt, and how a job is started."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from modgate_host import image, runtimes


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the files an image is built from, standing in for the package's share/."""
    root = tmp_path / "repo"
    shutil.copytree(runtimes.FIRMWARE, root / "firmware", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "boards").mkdir()
    for board in ("unix", "qemu-armhf"):
        shutil.copytree(runtimes.BOARDS / board, root / "boards" / board, symlinks=False)
    (root / "tools").mkdir()
    for name in ("build_frozen.sh", "image_build_lib.sh", "versions.env", "mbedtls_config_image.h"):
        shutil.copy(runtimes.TOOLS / name, root / "tools" / name)
    monkeypatch.setattr(image, "SHARE", root)
    monkeypatch.setattr(image, "TOOLS", root / "tools")
    monkeypatch.setattr(image, "FIRMWARE", root / "firmware")
    monkeypatch.setattr(image, "BOARDS", root / "boards")
    monkeypatch.setattr(image, "BUILD_SCRIPT", root / "tools" / "build_frozen.sh")
    return root


def test_the_digest_follows_every_source_of_the_image(tree: Path) -> None:
    before = image._digest("unix")
    assert image._digest("unix") == before  # stable while nothing changes
    for changed in ("firmware/modgate/net/pdu.py", "firmware/main.py", "boards/unix/board.json",
                    "tools/build_frozen.sh", "tools/image_build_lib.sh", "tools/mbedtls_config_image.h"):
        path = tree / changed
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert image._digest("unix") != before, changed
        path.write_bytes(original)
    assert image._digest("unix") == before
    # Another board's data is not in this board's image.
    (tree / "boards/qemu-armhf/board.json").write_text("{}")
    assert image._digest("unix") == before


def test_a_job_starts_from_the_frozen_entry_point_with_only_frozen_modules() -> None:
    argv = image.command("qemu-armhf", "send", "HOST", "1", heap="64k")
    assert argv[:3] == ["qemu-arm", "-L", "/usr/arm-linux-gnueabihf"]
    assert argv[4:] == ["-X", "heapsize=64k", "-m", "image_main", "send", "HOST", "1"]
    assert image.environment()["MICROPYPATH"] == ".frozen"
