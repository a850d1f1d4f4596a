"""The whole device on both emulated boards: a simulated legacy modality sends frames over TCP, the
firmware (run job, real MicroPython, the board's heap) stores and delivers them, and the archive
(dcmtk storescp, a pynetdicom SCP) receives valid objects with the very pixels that were sent."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from device_harness import by_instance, expected_frame, simulate, wait_for_files, wait_for_uids

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import peers  # noqa: E402
from modgate_host.commands.simulate_modality import simulate_command  # noqa: E402
from modgate_host.emulator import Emulator  # noqa: E402
from modgate_host.validation import validate_file  # noqa: E402

BOARDS = ["unix", "qemu-armhf"]


def config_file(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "device-config.json"
    path.write_text(json.dumps(values))
    return path


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def assert_valid(path: Path) -> None:
    verdict = validate_file(path)
    assert verdict.ok, "\n".join(verdict.lines())


@pytest.mark.parametrize("board", BOARDS)
def test_gray8_frame_reaches_dcmtk_and_pynetdicom(board: str, tmp_path: Path) -> None:
    """The foundation slice: one raw GRAY8 frame (odd size) becomes a Secondary Capture on flash and
    is stored with C-STORE at two real archives, pixel for pixel, valid for dciodvfy."""
    config = config_file(tmp_path, idle_timeout_ms=300)
    with (
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "dcmtk"), aet="DCMTK") as dcmtk,
        peers.pynetdicom_scp(aet="PYSCP") as pyscp,
        Emulator(
            board,
            tmp_path / "flash",
            config=config,
            dests=[f"DCMTK@127.0.0.1:{dcmtk.port}", f"PYSCP@127.0.0.1:{pyscp.port}"],
        ) as device,
    ):
        report = simulate(device.frames_url, tmp_path / "report.json", 1, "97x61", "GRAY8")
        assert report["returncode"] == 0, report["output"]
        [acked] = report["acked"]
        [stored] = wait_for_files(tmp_path / "dcmtk", 1)
        deadline = time.monotonic() + 30
        while not pyscp.received and time.monotonic() < deadline:
            time.sleep(0.1)
        while device.log_tail(200).count("released") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = device.log_tail(200)
    assert log.count("released") == 2, log  # an orderly A-RELEASE with each archive once idle
    ds = by_instance([stored])[acked["sop_instance_uid"]]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(ds.pixel_array, expected_frame("GRAY8", 97, 61, 0))
    assert_valid(stored)
    [other] = pyscp.received
    assert other.SOPInstanceUID == acked["sop_instance_uid"]
    assert np.array_equal(other.pixel_array, expected_frame("GRAY8", 97, 61, 0))


@pytest.mark.parametrize("board", BOARDS)
def test_series_becomes_one_multiframe_object(board: str, tmp_path: Path) -> None:
    """Series markers group frames into one multi-frame object; single frames stay single."""
    with (
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), aet="ARCHIVE") as archive,
        Emulator(board, tmp_path / "flash", dests=[f"ARCHIVE@127.0.0.1:{archive.port}"]) as device,
    ):
        series = simulate(device.frames_url, tmp_path / "series.json", 4, "64x33", "GRAY16", "--series", "4")
        singles = simulate(device.frames_url, tmp_path / "singles.json", 2, "31x17", "RGB888")
        assert series["returncode"] == 0 and singles["returncode"] == 0, series["output"] + singles["output"]
        files = wait_for_files(tmp_path / "archive", 3)
    objects = by_instance(files)
    [mf_uid] = {a["sop_instance_uid"] for a in series["acked"]}
    mf = objects[mf_uid]
    assert mf.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
    assert int(mf.NumberOfFrames) == 4
    for i in range(4):
        assert np.array_equal(mf.pixel_array[i], expected_frame("GRAY16", 64, 33, i)), f"frame {i}"
    for i, acked in enumerate(singles["acked"]):
        ds = objects[acked["sop_instance_uid"]]
        assert np.array_equal(ds.pixel_array, expected_frame("RGB888", 31, 17, i))
    for path in files:
        assert_valid(path)


@pytest.mark.parametrize("board", BOARDS)
def test_frames_over_the_serial_line_reach_the_archive(board: str, tmp_path: Path) -> None:
    """The board's frame UART (a pty pair in the emulator): a short series and a single frame."""
    with (
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), aet="ARCHIVE") as archive,
        Emulator(
            board, tmp_path / "flash", dests=[f"ARCHIVE@127.0.0.1:{archive.port}"], frames_serial=True
        ) as device,
    ):
        line = device.ready_line()
        url = "serial://" + str(line["frames_serial"])
        series = simulate(url, tmp_path / "series.json", 3, "24x16", "GRAY8", "--series", "3")
        single = simulate(url, tmp_path / "single.json", 1, "24x16", "GRAY8")
        assert series["returncode"] == 0 and single["returncode"] == 0, series["output"] + single["output"]
        uids = {a["sop_instance_uid"] for a in series["acked"] + single["acked"]}
        objects = wait_for_uids(tmp_path / "archive", uids)
    [mf_uid] = {a["sop_instance_uid"] for a in series["acked"]}
    assert int(objects[mf_uid].NumberOfFrames) == 3
    for i in range(3):
        assert np.array_equal(objects[mf_uid].pixel_array[i], expected_frame("GRAY8", 24, 16, i))


def test_archive_down_then_up_delivers_everything(tmp_path: Path) -> None:
    """Frames are acknowledged while the archive is unreachable, then delivered when it comes up."""
    port = peers.free_port()
    config = config_file(tmp_path, retry_base_ms=200, retry_max_ms=500)
    with Emulator("unix", tmp_path / "flash", config=config, dests=[f"ARCHIVE@127.0.0.1:{port}"]) as device:
        report = simulate(device.frames_url, tmp_path / "r.json", 3, "40x30", "GRAY8")
        assert len(report["acked"]) == 3
        time.sleep(1.5)  # several failed attempts against nothing
        with peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), port=port, aet="ARCHIVE"):
            files = wait_for_files(tmp_path / "archive", 3)
    assert {a["sop_instance_uid"] for a in report["acked"]} == set(by_instance(files))


@pytest.mark.parametrize("board", BOARDS)
def test_power_cut_loses_no_acknowledged_frame(board: str, tmp_path: Path) -> None:
    """SIGKILL the firmware at seeded random moments while a modality keeps sending (and resending
    what was not acknowledged); after the last restart every acknowledged frame is at the archive,
    pixel-identical, and the flash holds no temporary file."""
    rng = random.Random(20261127)
    trials = 6 if board == "unix" else 3
    flash = tmp_path / "flash"
    acked: dict[str, int] = {}
    with peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), aet="ARCHIVE") as archive:
        device = Emulator(board, flash, dests=[f"ARCHIVE@127.0.0.1:{archive.port}"])
        try:
            for trial in range(trials):
                device.start()
                report_path = tmp_path / f"r{trial}.json"
                cmd = simulate_command(device.frames_url, report_path, 12, "48x40", "GRAY8",
                                       "--sequence-start", str(trial * 1000))
                connected = device.log_tail(10000).count("source connected")
                sim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                until = time.monotonic() + 30
                while (
                    device.log_tail(10000).count("source connected") == connected and time.monotonic() < until
                ):
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 1.0))
                device.kill()
                sim.wait(timeout=120)
                # Killed before the modality connected: it wrote no report and got no ACK.
                report = json.loads(report_path.read_text()) if report_path.exists() else {"acked": []}
                for a in report["acked"]:
                    acked[a["sop_instance_uid"]] = a["frame"]
            device.start()
            objects = wait_for_uids(tmp_path / "archive", set(acked), timeout=120)
            device.stop()
        finally:
            device.close()
    assert acked, "no frame was acknowledged in any trial"
    for uid, frame in acked.items():
        assert uid in objects, f"acknowledged frame {frame} ({uid}) never reached the archive"
        assert np.array_equal(objects[uid].pixel_array, expected_frame("GRAY8", 48, 40, frame))
    leftovers = [p for p in flash.rglob("*") if p.suffix in (".tmp", ".part")]
    assert not leftovers, leftovers
