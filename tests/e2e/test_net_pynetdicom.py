"""The device's SCU against a scripted pynetdicom SCP: warnings, retryable and permanent failures,
an abort before the response, and a peer that never answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from peers import make_sc, pynetdicom_scp, run_device


def send(port: int, *files: Path, extra: tuple[str, ...] = ()) -> Any:
    return run_device("send", [*extra, "-aec", "PYSCP", "127.0.0.1", str(port), *map(str, files)])


@pytest.mark.parametrize(("code", "reason"), [(0xB000, "coercion")])
def test_warning_is_delivered_and_logged(tmp_path: Path, code: int, reason: str) -> None:
    src = make_sc(tmp_path / "a.dcm")
    with pynetdicom_scp([code]) as peer:
        proc = send(peer.port, src)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"WARNING 0x{code:04X} "), proc.stdout
    assert reason in proc.stdout + proc.stderr
    assert "warning" in proc.stderr
    assert len(peer.received) == 1


def test_duplicate_instance_is_not_counted_as_delivered(tmp_path: Path) -> None:
    """0111: the archive holds an instance with this UID, maybe another object (net.status
    DUPLICATE); only the caller can tell, so the session does not report it as stored."""
    src = make_sc(tmp_path / "a.dcm")
    with pynetdicom_scp([0x0111]) as peer:
        proc = send(peer.port, src)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED permanent") and "0x0111 duplicate" in proc.stdout, proc.stdout


def test_out_of_resources_is_transient_then_success(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm")
    with pynetdicom_scp([0xA700, 0x0000]) as peer:
        proc = send(peer.port, src, src)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAILED transient") and "0xA700" in lines[0], proc.stdout
    assert lines[1].startswith("OK 0x0000"), proc.stdout
    assert proc.returncode == 1


def test_cannot_understand_is_permanent(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm")
    with pynetdicom_scp([0xC000]) as peer:
        proc = send(peer.port, src)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED permanent") and "0xC000" in proc.stdout, proc.stdout


def test_abort_before_response_is_transient(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm", 256, 256)

    def abort(event: Any) -> int:
        event.assoc.abort()
        return 0

    with pynetdicom_scp(abort) as peer:
        proc = send(peer.port, src)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED transient"), proc.stdout
    assert "abort" in proc.stdout or "closed" in proc.stdout, proc.stdout


def test_peer_that_never_answers_times_out(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm")
    started = time.monotonic()
    with pynetdicom_scp() as peer:
        def hang(event: Any) -> int:
            peer.release.wait(30)
            return 0

        with pynetdicom_scp(hang) as hung:
            proc = send(hung.port, src, extra=("--timeouts", "2000,2000,1500"))
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED transient") and "C-STORE-RSP" in proc.stdout, proc.stdout
    assert time.monotonic() - started < 20
    assert peer.received == []


def test_sop_classes_the_device_never_makes_are_proposed_when_met(tmp_path: Path) -> None:
    import pydicom

    sc = make_sc(tmp_path / "sc.dcm", seed=1)
    ct = make_sc(tmp_path / "ct.dcm", seed=2)
    ds = pydicom.dcmread(ct)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.save_as(ct, enforce_file_format=True)
    with pynetdicom_scp() as peer:
        proc = send(peer.port, sc, ct, sc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [ds.SOPClassUID for ds in peer.received] == [
        "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7"]
