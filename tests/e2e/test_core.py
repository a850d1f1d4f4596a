"""The event-driven core on both emulated boards (issue 14): a dead destination delays nobody,
frames keep arriving during a large C-STORE, the device boots and acquires with its network down,
a peer that stops reading is a timeout, and a stuck task makes the watchdog reset the board."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from device_harness import simulate, wait_for_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import peers  # noqa: E402
from modgate_host.emulator import Emulator  # noqa: E402
from modgate_host.transport import DeviceConsole  # noqa: E402
from peers import black_hole  # noqa: E402

BOARDS = ["unix", "qemu-armhf"]


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_file(tmp_path: Path, name: str = "device-config.json", **values: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return path


def delivery_time(board: str, state: Path, config: Path, dests: list[str], archive: Path,
                  count: int) -> float:
    """Seconds from the modality's first frame to `count` objects at `archive`."""
    with Emulator(board, state, config=config, dests=dests) as device:
        started = time.monotonic()
        report = simulate(device.frames_url, state.parent / f"{state.name}.json", count, "32x32", "GRAY8")
        assert len(report["acked"]) == count, report["output"]
        wait_for_files(archive, count, timeout=120)
        return time.monotonic() - started


@pytest.mark.parametrize("board", BOARDS)
def test_a_black_hole_destination_never_delays_the_working_one(board: str, tmp_path: Path) -> None:
    # The measurement: ACSE and DIMSE timeouts of 5 s, 30 small objects.
    config = config_file(tmp_path, connect_timeout_ms=5000, acse_timeout_ms=5000, dimse_timeout_ms=5000,
                         retry_base_ms=500, retry_max_ms=2000, grouping="frame")
    count = 30
    with peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "alone"), aet="ARCHIVE") as archive:
        alone = delivery_time(board, tmp_path / "flash-alone", config, [f"ARCHIVE@127.0.0.1:{archive.port}"],
                              tmp_path / "alone", count)
    with (
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "beside"), aet="ARCHIVE") as archive,
        black_hole() as hole,
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "replacement"), aet="PACS2") as replacement,
        Emulator(board, tmp_path / "flash", config=config,
                 dests=[f"ARCHIVE@127.0.0.1:{archive.port}", f"HOLE@127.0.0.1:{hole}"]) as device,
    ):
        started = time.monotonic()
        report = simulate(device.frames_url, tmp_path / "r.json", count, "32x32", "GRAY8")
        assert len(report["acked"]) == count, report["output"]
        wait_for_files(tmp_path / "beside", count, timeout=120)
        beside = time.monotonic() - started
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            status = console.call("status")
            # Replace the black hole by a real archive: its held queue goes out there (a PIN
            # first: a destination is never changed on an open device, issue 19).
            console.call("config", "set", "pin", "1357")
            console.call("dest", "add", "hole", "PACS2", "127.0.0.1", replacement.port)
            console.call("config", "save")
        wait_for_files(tmp_path / "replacement", count, timeout=120)
    # Within 20 % of the run without the black hole (and half a second of scheduling noise on a
    # shared machine); before the event-driven core this was 39 s against 2 s.
    assert beside <= 1.2 * alone + 0.5, (beside, alone)
    assert status["queue"]["destinations"]["hole"]["pending"] > 0
    assert "dest:archive" in status["tasks"] and "dest:hole" in status["tasks"]
    assert status["loop_stall_max_ms"] >= 0 and status["stuck"] is None


@pytest.mark.parametrize("board", BOARDS)
def test_uart_frames_keep_arriving_during_a_large_c_store(board: str, tmp_path: Path) -> None:
    """A 50 MB multi-frame object goes to an archive that reads at 8 MB/s; meanwhile a modality
    sends frames over the emulated UART at 921600 baud into the board's 8 KB FIFO: every frame is
    ACKed, none NAKed, not one byte overruns, and the C-STORE was in progress all along."""
    config = config_file(tmp_path, spool_budget_bytes=128 << 20)
    with (
        peers.SlowArchive(rate=8e6) as archive,
        Emulator(board, tmp_path / "flash", config=config, dests=[f"ARCHIVE@127.0.0.1:{archive.port}"],
                 frames_serial=True) as device,
    ):
        assert device.uart is not None and device.uart.rate == 92160  # 921600 baud, 8N1
        big = simulate(device.frames_url, tmp_path / "big.json", 200, "512x512", "GRAY8", "--series", "200")
        assert len(big["acked"]) == 200, big["output"]
        until = time.monotonic() + 120
        while archive.received_bytes < 2_000_000 and time.monotonic() < until:
            time.sleep(0.05)
        assert archive.received_bytes >= 2_000_000, "the large C-STORE never started"
        uart = simulate(f"serial://{device.frames_tty}", tmp_path / "uart.json", 40, "64x64", "GRAY8")
        sending_after = archive.received_bytes
        assert not archive.stored, "the large object was done before the UART frames: no overlap"
        assert uart["returncode"] == 0 and len(uart["acked"]) == 40, uart["output"]
        assert uart["nacked"] == [] and uart["busy"] == 0, uart
        assert device.uart.overrun_bytes == 0
        until = time.monotonic() + 240
        while len(archive.stored) < 41 and time.monotonic() < until:
            time.sleep(0.2)
    assert sending_after < 50_000_000
    assert len(archive.stored) == 41, (len(archive.stored), archive.errors)


@pytest.mark.parametrize("board", BOARDS)
def test_boot_with_the_network_down_acquire_then_deliver(board: str, tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), aet="ARCHIVE") as archive:
        device = Emulator(board, flash, dests=[f"ARCHIVE@127.0.0.1:{archive.port}"], frames_serial=True)
        device.set_link(False)  # the cable is out before power-up
        try:
            started = time.monotonic()
            device.start()
            assert time.monotonic() - started < 30  # boot never waits for the network
            assert "network=down" in device.log_tail(50)
            report = simulate(f"serial://{device.frames_tty}", tmp_path / "r.json", 20, "48x32", "GRAY8")
            assert len(report["acked"]) == 20, report["output"]
            pid = device.proc.pid if device.proc else None
            with DeviceConsole(device.console_path, timeout_s=30) as console:
                status = console.call("status")
                assert status["network"] == "down" and status["queue"]["depth"] == 20
                time.sleep(1.0)
                assert not list((tmp_path / "archive").iterdir())
                device.set_link(True)
                files = wait_for_files(tmp_path / "archive", 20, timeout=120)
                after = console.call("status")
            assert len(files) == 20
            assert after["network"] == "up" and after["boot_count"] == status["boot_count"]
            assert device.proc is not None and device.proc.pid == pid and device.proc.poll() is None
            assert "link up" in device.log_tail(200)
        finally:
            device.close()


@pytest.mark.parametrize("board", BOARDS)
def test_a_peer_that_stops_reading_mid_pdu_is_a_timeout(board: str, tmp_path: Path) -> None:
    config = config_file(tmp_path, dimse_timeout_ms=2000, acse_timeout_ms=2000, retry_base_ms=500,
                         retry_max_ms=1000, grouping="frame")
    with (
        peers.SlowArchive(stall_first=1, stall_s=20, rcvbuf=4096) as archive,
        Emulator(board, tmp_path / "flash", config=config,
                 dests=[f"STALL@127.0.0.1:{archive.port}"]) as device,
    ):
        # 8 MB: more than the socket buffers on both sides take, so the device's write stalls.
        first = simulate(device.frames_url, tmp_path / "one.json", 1, "2048x2048", "GRAY16")
        assert len(first["acked"]) == 1
        until = time.monotonic() + 30
        while not archive.stalls and time.monotonic() < until:
            time.sleep(0.05)
        assert archive.stalls == 1
        # The peer sits on the first association; the device goes on acquiring and answering.
        more = simulate(device.frames_url, tmp_path / "more.json", 5, "32x32", "GRAY8")
        assert len(more["acked"]) == 5, more["output"]
        with DeviceConsole(device.console_path, timeout_s=10) as console:
            assert console.call("status")["frames_acked"] == 6
        until = time.monotonic() + 60
        while len(archive.stored) < 6 and time.monotonic() < until:
            time.sleep(0.1)
        log = device.log_tail(400)
    assert len(archive.stored) == 6, (archive.stored, archive.errors)
    assert "send to 127.0.0.1" in log and "timed out after 2000 ms" in log, log


@pytest.mark.watchdog_reset
@pytest.mark.parametrize("board", BOARDS)
def test_a_stuck_task_makes_the_watchdog_reset_the_board(board: str, tmp_path: Path) -> None:
    # Short network timeouts make a short task bound (their sum plus 5 s): the reset comes soon.
    config = config_file(tmp_path, connect_timeout_ms=1000, acse_timeout_ms=1000, dimse_timeout_ms=1000)
    device = Emulator(board, tmp_path / "flash", config=config)
    try:
        device.start()
        with DeviceConsole(device.console_path, timeout_s=30) as console:
            boot = console.call("status")["boot_count"]
            reply = console.call("selftest", "watchdog", "series")
        assert reply["watchdog"] is True and reply["reset_within_ms"] <= 12000
        started = time.monotonic()
        assert device.proc is not None
        device.proc.wait(timeout=60)
        assert device.reset_by_watchdog and device.watchdog_resets == 1
        assert 8 <= time.monotonic() - started <= 40
        log = device.log_tail(100)
        assert "task series made no progress" in log and "emulator: watchdog: not fed" in log, log
        device.start()  # what `modgate emulate` does after a reset
        with DeviceConsole(device.console_path, timeout_s=30) as console:
            status = console.call("status")
        assert status["boot_count"] == boot + 1
        assert status["last_reset"].startswith("task series made no progress"), status["last_reset"]
    finally:
        device.close()
