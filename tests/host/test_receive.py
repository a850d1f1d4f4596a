"""`modgate receive`: dcmtk storescu sends device-encoded objects (and a broken one); every file is
stored, validated with pydicom + dciodvfy, shown in the live table, and the exit code tells."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from modgate_host.commands.encode import encode
from modgate_host.receiver import Receiver

STORESCU = "/usr/bin/storescu"


def free_port() -> int:
    return random.randint(20000, 60000)


@pytest.fixture
def objects(tmp_path: Path) -> list[Path]:
    good_sc = tmp_path / "sc.dcm"
    encode("sc", "GRAY8", 64, 48, good_sc)
    good_dx = tmp_path / "dx.dcm"
    dx_facts = {"pixel_spacing": "0.1\\0.1", "laterality": "U"}  # what a dx source must state
    encode("dx", "GRAY16", 32, 32, good_dx, bits_stored=12, context=dx_facts)
    broken = tmp_path / "broken.dcm"
    ds = pydicom.dcmread(good_sc)
    del ds.PatientID  # Type 2 in the Patient Module (PS3.3 C.7.1.1): dciodvfy must object
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(broken, enforce_file_format=True)
    return [good_sc, good_dx, broken]


def storescu(port: int, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STORESCU, "-aet", "DEVICE1", "-aec", "RX", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(
    not os.path.exists(STORESCU) or not shutil.which("dciodvfy"), reason="dcmtk/dciodvfy missing"
)
def test_receive_cli_validates_each_object(tmp_path: Path, objects: list[Path]) -> None:
    port = free_port()
    out = tmp_path / "rx"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modgate_host.cli",
            "receive",
            "--aet",
            "RX",
            "--port",
            str(port),
            "--out",
            str(out),
            "--bind",
            "127.0.0.1",
            "--count",
            "3",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # wait until it listens
            sent = storescu(port, objects[0])
            if sent.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert sent.returncode == 0, sent.stderr
        assert storescu(port, objects[1], objects[2]).returncode == 0
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr  # one object failed validation
    lines = stdout.splitlines()
    assert lines[0].startswith("TIME")
    rows = [x for x in lines[1:] if x[:2].isdigit()]
    assert len(rows) == 3
    assert sum("PASS" in r for r in rows) == 2
    assert any("FAIL" in r and "DEVICE1" in r for r in rows)
    assert "Secondary Capture Image" in stdout
    assert "2 passed, 1 failed" in stderr
    for path in objects:
        uid = pydicom.dcmread(path).SOPInstanceUID
        stored = out / f"{uid}.dcm"
        assert stored.exists()
        assert pydicom.dcmread(stored).SOPInstanceUID == uid
    assert not list(out.glob("*.part"))


def test_receiver_wait_for_and_status(tmp_path: Path, objects: list[Path]) -> None:
    from pynetdicom import AE

    port = free_port()
    seen = []
    with Receiver("RX2", port, tmp_path / "rx2", validator=lambda p: (True, []), on_update=seen.append) as rx:
        ae = AE(ae_title="SCU")
        ds = pydicom.dcmread(objects[1])
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="RX2")
        assert assoc.is_established
        status = assoc.send_c_store(ds)
        assoc.release()
        assert status.Status == 0x0000
        record = rx.wait_for(ds.SOPInstanceUID, timeout_s=10)
        assert record is not None and record.ok is True and record.calling_aet == "SCU"
        assert rx.wait_for("1.2.3.4", timeout_s=0.2) is None
    assert [r.sop_instance_uid for r in seen] == [ds.SOPInstanceUID]


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "modgate_host.cli",
                "receive",
                "--port",
                str(port),
                "--out",
                str(tmp_path),
                "--bind",
                "127.0.0.1",
                "--timeout",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert "cannot listen" in proc.stderr
