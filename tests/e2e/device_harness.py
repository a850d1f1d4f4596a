"""Helpers for end-to-end tests of the whole device: the emulated board (the firmware's run job on
real MicroPython), the host's legacy-modality simulator, and checks of what reached the archive."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from modgate_host.commands.simulate_modality import run_in_subprocess as simulate  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def wait_for_files(folder: Path, count: int, timeout: float = 60.0) -> list[Path]:
    """The archive's files once `count` have arrived (dcmtk writes then renames, so size is final)."""
    until = time.monotonic() + timeout
    files: list[Path] = []
    while time.monotonic() < until:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        if len(files) >= count:
            time.sleep(0.2)
            return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        time.sleep(0.1)
    raise AssertionError(f"{len(files)} of {count} objects reached {folder} within {timeout} s")


def wait_for_uids(folder: Path, uids: set[str], timeout: float = 60.0) -> dict[str, pydicom.Dataset]:
    """Every object in the archive folder once all of `uids` have arrived."""
    until = time.monotonic() + timeout
    seen: dict[Path, str] = {}
    while True:
        for path in folder.rglob("*"):
            if path.is_file() and path not in seen and not path.name.startswith("."):
                try:
                    seen[path] = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
                except Exception:  # noqa: BLE001 - still being written; read it next round
                    continue
        missing = uids - set(seen.values())
        if not missing:
            return by_instance(list(seen))
        if time.monotonic() > until:
            raise AssertionError(
                f"{len(missing)} of {len(uids)} objects missing from {folder}: {sorted(missing)[:3]}"
            )
        time.sleep(0.2)


def expected_frame(fmt: str, width: int, height: int, frame: int, bits: int | None = None) -> np.ndarray:
    """The simulator's pixels for frame `frame` as stored by the device (the firmware test pattern)."""
    sys.path.insert(0, str(ROOT / "firmware"))
    from modgate.testpattern import Pattern

    raw = b"".join(Pattern(fmt, width, height, bits).row(y, frame) for y in range(height))
    if fmt == "GRAY8":
        return np.frombuffer(raw, np.uint8).reshape(height, width)
    if fmt == "GRAY16":
        return np.frombuffer(raw, "<u2").reshape(height, width)
    if fmt == "RGB888":
        return np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    raise ValueError(f"no expectation for {fmt} here")


def by_instance(files: list[Path]) -> dict[str, pydicom.Dataset]:
    out = {}
    for path in files:
        ds = pydicom.dcmread(path)
        out[str(ds.SOPInstanceUID)] = ds
    return out
