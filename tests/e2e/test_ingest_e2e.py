"""Frame input end to end: the host simulator (CPython) against the real frame input running on
real MicroPython (x86-64 and armhf under QEMU), over TCP and over a pseudo-terminal serial pair.

The device side is tests/e2e/ingest_device.py: TcpInput / FrameLink in front of a file sink that
commits each frame by rename, so "stored" and "left behind" can be checked on disk.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_harness import Device, simulate
from modgate.testpattern import Pattern
from modgate_host import frameproto as hp
from modgate_host.runtimes import available
from modgate_host.wires import UartWire

RUNTIMES = [pytest.param(rt, marks=pytest.mark.skipif(not available(rt), reason=f"{rt} not installed"))
            for rt in ("micropython", "qemu-armhf")]


def free_port() -> int:
    return 41000 + int.from_bytes(os.urandom(2), "little") % 20000


def pattern_bytes(fmt: str, w: int, h: int, frame: int, bits: int | None = None) -> bytes:
    p = Pattern(fmt, w, h, bits)
    return b"".join(bytes(p.row(y, frame)) for y in range(h))


def check_run(folder: Path, dev: Device, report: dict, fmt: str, w: int, h: int, frames: int) -> None:
    """Every ACK is a durable commit with the pixels sent; damaged frames left nothing behind."""
    commits = dev.commits()
    assert len(report["acked"]) + len(report["nacked"]) == frames
    assert len(commits) == len(report["acked"])
    damaged = {f["frame"] for f in report["faults"] if f["kind"] != "garbage"}
    assert {n["frame"] for n in report["nacked"]} == damaged
    assert {n["reason"] for n in report["nacked"]} <= {"CRC", "TIMEOUT"}
    assert not list(folder.glob("*.tmp")), "an aborted frame left a file behind"
    assert {a["sop_instance_uid"] for a in report["acked"]} == {c["uid"] for c in commits}
    for c in commits:
        data = (folder / f"{c['uid']}-{c['frame_index']}.raw").read_bytes()
        assert len(data) == w * h * {"GRAY8": 1, "GRAY16": 2, "RGB888": 3}[fmt]
    # The pixels of each acknowledged frame are the pattern the simulator sent.
    for ack, c in zip(report["acked"], commits, strict=True):
        data = (folder / f"{c['uid']}-{c['frame_index']}.raw").read_bytes()
        assert data == pattern_bytes(fmt, w, h, ack["frame"]), f"frame {ack['frame']} pixels differ"


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tcp_series_with_faults(runtime: str, folder: Path) -> None:
    port = free_port()
    dev = Device(runtime, "tcp", str(port), folder, "--frame-timeout-ms", "700")
    try:
        result = simulate("--to", f"tcp://127.0.0.1:{port}", "--frames", "24", "--size", "64x48",
                          "--format", "GRAY16", "--series", "6", "--faults", "0.3", "--seed", "7",
                          "--report", str(folder / "report.json"), "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr + dev.log()
    finally:
        dev.stop()
    report = json.loads((folder / "report.json").read_text())
    assert report["faults"], "seed 7 at 30% should damage some frames"
    check_run(folder, dev, report, "GRAY16", 64, 48, 24)
    # One series UID per series of 6, shared by its frames.
    uids = {a["frame"] // 6: a["sop_instance_uid"] for a in report["acked"]}
    for a in report["acked"]:
        assert a["sop_instance_uid"] == uids[a["frame"] // 6]
    assert "ACK" in result.stdout and "BUSY 0" in result.stdout


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tcp_two_sources_and_busy(runtime: str, folder: Path) -> None:
    port = free_port()
    dev = Device(runtime, "tcp", str(port), folder, "--busy-first", "2")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "host"))
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "modgate_host.cli", "simulate-modality", "--to",
                 f"tcp://127.0.0.1:{port}", "--frames", "8", "--size", "32x16", "--format", "GRAY8",
                 "--report", str(folder / f"r{i}.json"), "--quiet"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)
        ]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], "".join(outputs) + dev.log()
    finally:
        dev.stop()
    reports = [json.loads((folder / f"r{i}.json").read_text()) for i in range(2)]
    assert sum(len(r["acked"]) for r in reports) == 16
    assert sum(r["busy"] for r in reports) == 2
    assert len(dev.commits()) == 16
    assert len({c["source"] for c in dev.commits()}) == 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tcp_source_vanishes_mid_series(runtime: str, folder: Path) -> None:
    port = free_port()
    dev = Device(runtime, "tcp", str(port), folder)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        parser = hp.ResponseParser()
        for i, kind in enumerate(("series_start", "series_frame")):
            head = hp.FrameHeader(100 + i, 16, 8, "GRAY8", kind, 4242, i)
            sock.sendall(hp.encode_frame(head, bytes(128), {"patient_id": "P1"} if i == 0 else None))
            got: list[hp.Response] = []
            while not got:
                got = parser.feed(sock.recv(4096))
            assert got[0].name == "ACK"
        third = hp.encode_frame(hp.FrameHeader(102, 16, 8, "GRAY8", "series_frame", 4242, 2), bytes(128))
        sock.sendall(third[:100])
        time.sleep(0.2)
        sock.close()
        lost = dev.wait_for(lambda e: e["event"] == "source_lost", 30)
        assert lost["open_series"] == [4242]
        dev.wait_for(lambda e: e["event"] == "abort" and e["sequence"] == 102, 5)
        assert dev.commits()[0]["context"] == {"patient_id": "P1"}
    finally:
        dev.stop()
    assert len(dev.commits()) == 2
    assert not list(folder.glob("*.tmp"))


def serial_pair(folder: Path) -> tuple[UartWire, str, str]:
    """A lossless serial cable between two ptys (no line rate: these tests check the protocol)."""
    a, b = folder / "ttyDEV", folder / "ttySRC"
    return UartWire(a, b), str(a), str(b)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_serial_pty_series_with_faults(runtime: str, folder: Path) -> None:
    wire, dev_tty, src_tty = serial_pair(folder)
    try:
        dev = Device(runtime, "serial", dev_tty, folder, "--frame-timeout-ms", "700")
        try:
            result = simulate("--to", f"serial://{src_tty}", "--frames", "12", "--size", "32x32",
                              "--format", "RGB888", "--series", "4", "--faults", "0.25", "--seed", "5",
                              "--report", str(folder / "report.json"), "--quiet")
            assert result.returncode == 0, result.stdout + result.stderr + dev.log()
        finally:
            dev.stop()
        report = json.loads((folder / "report.json").read_text())
        check_run(folder, dev, report, "RGB888", 32, 32, 12)
    finally:
        wire.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_serial_source_goes_quiet_mid_series(runtime: str, folder: Path) -> None:
    import serial

    wire, dev_tty, src_tty = serial_pair(folder)
    try:
        dev = Device(runtime, "serial", dev_tty, folder, "--frame-timeout-ms", "500",
                     "--idle-timeout-ms", "1500")
        try:
            port = serial.serial_for_url(src_tty, timeout=0.1)
            parser = hp.ResponseParser()
            port.write(hp.encode_frame(hp.FrameHeader(7, 8, 8, "GRAY8", "series_start", 99, 0), bytes(64)))
            half = hp.encode_frame(hp.FrameHeader(8, 8, 8, "GRAY8", "series_frame", 99, 1), bytes(64))[:60]
            responses: list[hp.Response] = []
            deadline = time.monotonic() + 30
            sent_half = False
            while len(responses) < 2 and time.monotonic() < deadline:
                responses += parser.feed(port.read(256))
                if responses and not sent_half:
                    port.write(half)  # then the modality is switched off
                    sent_half = True
            assert [(r.name, r.sequence) for r in responses] == [("ACK", 7), ("NAK", 8)]
            assert responses[1].reason_name == "TIMEOUT"
            lost = dev.wait_for(lambda e: e["event"] == "source_lost", 30)
            assert lost["open_series"] == [99]
            port.close()
        finally:
            dev.stop()
        assert len(dev.commits()) == 1
        assert not list(folder.glob("*.tmp"))
    finally:
        wire.close()


def test_retry_for_resends_after_device_restart(folder: Path) -> None:
    if not available("micropython"):
        pytest.skip("micropython not installed")
    port = free_port()
    first, second = folder / "a", folder / "b"
    first.mkdir()
    second.mkdir()
    dev = Device("micropython", "tcp", str(port), first)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "host"))
    sim = subprocess.Popen(
        [sys.executable, "-m", "modgate_host.cli", "simulate-modality", "--to", f"tcp://127.0.0.1:{port}",
         "--frames", "30", "--size", "32x32", "--format", "GRAY8", "--rate", "20", "--retry-for", "30",
         "--report", str(folder / "report.json"), "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dev.wait_for(lambda e: len(dev.commits()) >= 8, 60)
    dev.kill()  # the gateway loses power mid-run
    time.sleep(1.0)
    dev2 = Device("micropython", "tcp", str(port), second)
    try:
        out = sim.communicate(timeout=120)[0]
        assert sim.returncode == 0, out + dev2.log()
    finally:
        dev2.stop()
    report = json.loads((folder / "report.json").read_text())
    assert len(report["acked"]) == 30 and report["reconnects"] >= 1
    stored = {c["uid"] for c in dev.commits() + dev2.commits()}
    assert {a["sop_instance_uid"] for a in report["acked"]} <= stored
