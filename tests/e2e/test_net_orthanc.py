"""The device's SCU against Orthanc, the real archive: the object comes back with equal pixels."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from modgate_host.runtimes import available
from peers import make_sc, orthanc, run_device

RUNTIMES = [pytest.param(r, marks=pytest.mark.skipif(not available(r), reason=r + " not installed"))
            for r in ("micropython", "qemu-armhf")]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_object_is_retrievable_with_equal_pixels(tmp_path: Path, runtime: str) -> None:
    src = make_sc(tmp_path / "a.dcm", 200, 120, seed=7)
    uid = pydicom.dcmread(src).SOPInstanceUID
    with orthanc() as peer:
        proc = run_device("send", ["-aec", "ORTHANC", "127.0.0.1", str(peer.port), str(src)], runtime)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ids = peer.rest("/instances")
        assert len(ids) == 1
        tags = peer.rest(f"/instances/{ids[0]}/simplified-tags")
        assert tags["SOPInstanceUID"] == uid
        stored = pydicom.dcmread(io.BytesIO(peer.get(f"/instances/{ids[0]}/file")))
    assert stored.PixelData == pydicom.dcmread(src).PixelData
