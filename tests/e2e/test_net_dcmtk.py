"""The device's C-STORE/C-ECHO SCU against dcmtk storescp (run inside tools/netns)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from modgate_host.runtimes import available
from peers import IMPLICIT, dcmtk_storescp, make_sc, run_device

RUNTIMES = [pytest.param(r, marks=pytest.mark.skipif(not available(r), reason=r + " not installed"))
            for r in ("micropython", "qemu-armhf")]


def received(out_dir: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(out_dir.iterdir()) if p.is_file()]


def same_pixels(a: Path, b: pydicom.Dataset) -> bool:
    return bool(pydicom.dcmread(a).PixelData == b.PixelData)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_implicit_only_peer_gets_reencoded_object(tmp_path: Path, runtime: str) -> None:
    src = make_sc(tmp_path / "a.dcm", 128, 96, seed=1)
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp(["+xi"], out) as peer:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(peer.port), str(src)], runtime)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK 0x0000 "), proc.stdout
    [ds] = received(out)
    assert ds.file_meta.TransferSyntaxUID == IMPLICIT
    assert ds.SOPInstanceUID == pydicom.dcmread(src).SOPInstanceUID
    assert same_pixels(src, ds)


def test_explicit_only_peer_and_several_files_share_one_association(tmp_path: Path) -> None:
    files = [make_sc(tmp_path / f"{i}.dcm", 32, 32 + i, seed=i) for i in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp(["+xe", "-v"], out) as peer:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(peer.port), *map(str, files)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = received(out)
    assert len(got) == 3
    assert all(ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" for ds in got)
    assert peer.log.count("Association Acknowledged") == 1, peer.log
    assert "(MsgID 1, SC)" in peer.log and "(MsgID 3, SC)" in peer.log  # message IDs increment
    assert peer.log.rstrip().endswith("Association Release")  # orderly A-RELEASE, not an abort


def test_sop_class_the_peer_refuses_is_a_permanent_failure(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm")
    ds = pydicom.dcmread(src)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.999.1"
    ds.save_as(src, enforce_file_format=True)
    with dcmtk_storescp() as peer:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(peer.port), str(src)])
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED permanent") and "no accepted presentation context" in proc.stdout, \
        proc.stdout


def test_peer_max_pdu_4096_is_honoured(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "big.dcm", 512, 300, seed=3)
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp(["-pdu", "4096"], out) as peer:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(peer.port), str(src)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sending 4096" in proc.stderr
    [ds] = received(out)
    assert same_pixels(src, ds)


@pytest.mark.parametrize("syntax", ["+xe", "+xi"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pdus_as_large_as_the_peer_accepts_stream_from_a_small_buffer(tmp_path: Path, runtime: str,
                                                                      syntax: str) -> None:
    """Our max PDU (the buffer) is 4096; the peer accepts 131072: each PDU goes out at the peer's
    size in several writes, with its length stated up front, in either syntax (Implicit VR is
    counted before it is re-encoded)."""
    src = make_sc(tmp_path / "big.dcm", 512, 300, seed=4)
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp([syntax, "-pdu", "131072"], out) as peer:
        proc = run_device("send", ["-v", "-pdu", "4096", "-aec", "STORESCP", "127.0.0.1", str(peer.port),
                                   str(src)], runtime)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "peer max PDU 131072, sending 131072" in proc.stderr, proc.stderr
    [ds] = received(out)
    assert ds.file_meta.TransferSyntaxUID == (IMPLICIT if syntax == "+xi" else "1.2.840.10008.1.2.1")
    assert same_pixels(src, ds)


def test_refusing_peer_gives_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm")
    with dcmtk_storescp(["--refuse"]) as peer:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(peer.port), str(src)])
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout and "rejected" in proc.stdout, proc.stdout


def test_echo(tmp_path: Path) -> None:
    with dcmtk_storescp() as peer:
        proc = run_device("echo", ["-aec", "STORESCP", "127.0.0.1", str(peer.port)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK ")


def test_nobody_listening_is_a_transient_failure(tmp_path: Path) -> None:
    from peers import free_port

    src = make_sc(tmp_path / "a.dcm")
    proc = run_device("send", ["--timeouts", "2000,2000,2000", "127.0.0.1", str(free_port()), str(src)])
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED transient"), proc.stdout


def test_a_folder_argument_sends_every_file_in_it(tmp_path: Path) -> None:
    """As storescu's +sd: the job reads the folder's names one at a time (no argv per file)."""
    folder = tmp_path / "set"
    folder.mkdir()
    files = [make_sc(folder / f"{i}.dcm", 16, 16 + i, seed=i) for i in range(4)]
    (folder / "sub").mkdir()  # not descended into
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp(["+xe"], out) as peer:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(peer.port), str(folder)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUMMARY 4 sent, 0 failed" in proc.stdout, proc.stdout
    got = {ds.SOPInstanceUID for ds in received(out)}
    assert got == {pydicom.dcmread(f).SOPInstanceUID for f in files}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_jobs_run_frozen_even_from_inside_the_firmware_folder(tmp_path: Path, runtime: str) -> None:
    """The image's entry point drops the current folder from sys.path: started inside firmware/,
    the job still runs the frozen modules (the sources would not even compile in 64 KB)."""
    import subprocess

    from modgate_host.runtimes import FIRMWARE, firmware_process

    src = make_sc(tmp_path / "a.dcm")
    with dcmtk_storescp() as peer:
        argv, env = firmware_process(runtime, "send", "-aec", "STORESCP", "127.0.0.1", str(peer.port),
                                     str(src), heap="64k")
        proc = subprocess.run(argv, env=env, cwd=FIRMWARE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK 0x0000 "), proc.stdout


def test_two_hundred_file_arguments_fit_the_64k_heap(tmp_path: Path) -> None:
    """`modgate send` hands the names over in a list file: as arguments, 200 paths took ~13 KB of
    the device's heap, and at 64k every file failed with "out of memory"."""
    import subprocess
    import sys

    files = [make_sc(tmp_path / f"{i:03d}.dcm", 16, 16, seed=i) for i in range(200)]
    out = tmp_path / "out"
    out.mkdir()
    with dcmtk_storescp([], out) as peer:
        proc = subprocess.run(
            [sys.executable, "-m", "modgate_host.cli", "send", "--heap", "64k", "-aec", "STORESCP",
             "127.0.0.1", str(peer.port), *map(str, files)],
            capture_output=True, text=True, timeout=300,
        )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("OK 0x0000 ") == 200
    assert "SUMMARY 200 sent, 0 failed" in proc.stdout
    assert len(received(out)) == 200


def test_summary_gives_no_rate_when_nothing_was_sent(tmp_path: Path) -> None:
    proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", "1", str(tmp_path / "missing.dcm")])
    assert proc.returncode == 1
    summary = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY")][0]
    assert summary.startswith("SUMMARY 0 sent, 1 failed, ")
    assert "objects/s" not in summary and "MB/s" not in summary, summary
