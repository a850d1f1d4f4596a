"""The host side of frame protocol v1 (modgate_host.frameproto) and `modgate simulate-modality`,
checked against the spec's example and against the firmware's receiver running in this process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_fakes import FakeSink
from modgate.ingest import frameproto as fp
from modgate.ingest.tcp import TcpInput
from modgate_host import frameproto as hp
from modgate_host.cli import main as cli_main
from modgate_host.commands import simulate_modality as sim
from test_ingest_frameproto import EXAMPLE


def receive(data: bytes, sink: FakeSink | None = None) -> tuple[FakeSink, list[hp.Response]]:
    sink = sink or FakeSink()
    rx = fp.FrameReceiver(sink, "host-test")
    buf = bytearray(data)
    rx.feed(buf, 0, len(buf))
    return sink, hp.ResponseParser().feed(bytes(rx.outbox))


def test_encoder_reproduces_spec_example() -> None:
    assert hp.encode_frame(hp.FrameHeader(7, 2, 2, "GRAY8"), bytes([0, 0x40, 0x80, 0xFF])) == EXAMPLE
    assert b"".join(hp.frame_parts(hp.FrameHeader(7, 2, 2, "GRAY8"), [b"\x00\x40", b"\x80\xff"])) == EXAMPLE


@pytest.mark.parametrize("fmt", sorted(hp.PIXEL_FORMATS))
def test_every_format_accepted_by_firmware(fmt: str) -> None:
    head = hp.FrameHeader(1234, 6, 3, fmt, bits_stored=12 if fmt == "GRAY16" else None)
    payload = bytes(random.Random(fmt).randrange(256) for _ in range(head.payload_length()))
    ctx = {"patient_name": "Doe^Jane", "study_description": "Ångström"}
    sink, responses = receive(hp.encode_frame(head, payload, ctx))
    assert [(r.name, r.sequence) for r in responses] == [("ACK", 1234)]
    header, stored = sink.stored[0]
    assert stored == payload
    assert (header["pixel_format"], header["width"], header["height"]) == (fmt, 6, 3)
    assert header["context"] == ctx


def test_series_and_bare_end_marker() -> None:
    msgs = [hp.encode_frame(hp.FrameHeader(i, 4, 4, "GRAY8", k, 9, i), bytes(16))
            for i, k in enumerate(("series_start", "series_frame"))]
    msgs.append(hp.encode_frame(hp.FrameHeader(2, 4, 4, "GRAY8", "series_end", 9, 2, bare_end=True), b""))
    sink, responses = receive(b"".join(msgs))
    assert [r.name for r in responses] == ["ACK"] * 3
    assert [h["kind"] for h, _ in sink.stored] == ["series_start", "series_frame", "series_end"]


def test_response_parser_skips_noise_and_bad_crc() -> None:
    good = fp.encode_response(fp.NAK, 5, fp.NAK_CRC, 0, "CRC mismatch")
    bad = bytearray(fp.encode_response(fp.ACK, 4, 0, 0, "1.2.3"))
    bad[-1] ^= 1
    parser = hp.ResponseParser()
    got = []
    stream = b"\x00MGR" + bytes(bad) + b"noise" + good + fp.encode_response(fp.BUSY, 6, 0, 300, "")
    for i in range(0, len(stream), 7):
        got += parser.feed(stream[i : i + 7])
    assert [(r.name, r.sequence, r.reason_name if r.type == hp.NAK else r.retry_after_ms) for r in got] == [
        ("NAK", 5, "CRC"),
        ("BUSY", 6, 300),
    ]


def test_damage_kinds() -> None:
    msg = hp.encode_frame(hp.FrameHeader(1, 16, 16, "GRAY8"), bytes(256))
    rng = random.Random(3)
    for _ in range(50):
        flipped = sim.damage(msg, "crc", rng)
        diffs = [i for i in range(len(msg)) if msg[i] != flipped[i]]
        assert len(diffs) == 1 and diffs[0] >= 40
        cut = sim.damage(msg, "truncate", rng)
        assert 40 <= len(cut) < len(msg) and msg.startswith(cut)
        noisy = sim.damage(msg, "garbage", rng)
        assert noisy.endswith(msg) and hp.FRAME_MAGIC not in noisy[: len(noisy) - len(msg)]


@pytest.fixture
def device() -> Iterator[tuple[int, FakeSink]]:
    sink = FakeSink()
    port = 42000 + int.from_bytes(os.urandom(2), "little") % 15000
    tcp = TcpInput(sink, "127.0.0.1", port, frame_timeout_ms=300)
    stop = threading.Event()

    def serve() -> None:
        asyncio.run(tcp.serve(stop=stop.is_set))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, sink
    stop.set()
    thread.join(5)


def test_simulator_report_against_firmware_input(device: tuple[int, FakeSink], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    port, sink = device
    report = tmp_path / "r.json"
    rc = cli_main(["simulate-modality", "--to", f"tcp://127.0.0.1:{port}", "--frames", "20", "--size", "16x8",
                   "--format", "GRAY8", "--faults", "0.4", "--seed", "11", "--report", str(report),
                   "--context", '{"patient_id": "SIM-1", "modality": "XA"}'])
    assert rc == 0
    data = json.loads(report.read_text())
    assert set(data) >= {"acked", "nacked", "busy"}
    assert all(set(a) == {"frame", "sop_instance_uid"} for a in data["acked"])
    assert all(set(n) == {"frame", "reason"} for n in data["nacked"])
    damaged = sorted(f["frame"] for f in data["faults"] if f["kind"] != "garbage")
    assert damaged and sorted(n["frame"] for n in data["nacked"]) == damaged
    assert len(sink.stored) == len(data["acked"]) == 20 - len(damaged)
    assert sink.stored[0][0]["context"] == {"patient_id": "SIM-1", "modality": "XA", **sim.SOURCE_FACTS}
    out = capsys.readouterr().out
    assert f"ACK {20 - len(damaged)}, NAK {len(damaged)}" in out


def test_simulator_usage_and_unreachable(tmp_path: Path) -> None:
    assert cli_main(["simulate-modality", "--to", "http://x", "--frames", "1"]) == 2
    assert cli_main(["simulate-modality", "--to", "tcp://127.0.0.1:1", "--frames", "1"]) == 2
