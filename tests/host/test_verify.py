"""`modgate verify`: commissioning against the firmware console with a device that really talks DICOM
(C-ECHO and C-STORE by pynetdicom, objects from the device encoder), a host-run receiver, and the
HTML report with its contact sheet."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from console_fakes import FakeDevice
from console_server import ConsoleServer
from modgate.errors import ModgateError
from modgate_host.cli import main
from modgate_host.commands.encode import encode
from PIL import Image
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


class DicomDevice(FakeDevice):  # type: ignore[misc]
    """FakeDevice whose echo and test pattern go over the network to the configured destinations."""

    def __init__(self, config_path: str, work: Path) -> None:
        super().__init__(config_path)
        self.work = work
        self.queue = []
        self.dead = []

    def _dest(self, name: str) -> dict[str, object]:
        for d in self.destinations():
            if d["name"] == name:
                return dict(d)
        raise ModgateError("no destination '" + name + "'")

    async def echo(self, name: str) -> int:
        d = self._dest(name)
        ae = AE(ae_title=self.config.get("ae_title"))
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 5
        start = time.monotonic()
        assoc = ae.associate(str(d["host"]), int(str(d["port"])), ae_title=str(d["aet"]))
        if not assoc.is_established:
            raise ModgateError("association to " + str(d["aet"]) + " refused or unreachable")
        status = assoc.send_c_echo()
        assoc.release()
        if not status or status.Status != 0:
            raise ModgateError("C-ECHO failed")
        return int((time.monotonic() - start) * 1000)

    def send_test_pattern(self) -> str:
        path = self.work / f"tp{len(self.sent)}.dcm"
        encode("sc", "GRAY8", 96, 64, path)
        ds = pydicom.dcmread(path)
        for d in self.destinations():
            ae = AE(ae_title=self.config.get("ae_title"))
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            ae.acse_timeout = ae.network_timeout = 5
            assoc = ae.associate(str(d["host"]), int(d["port"]), ae_title=str(d["aet"]))
            if assoc.is_established:
                assoc.send_c_store(ds)
                assoc.release()
            else:
                self.queue.append(
                    {"id": 7, "uid": ds.SOPInstanceUID, "pending": [d["name"]]}
                )
        self.sent.append(ds.SOPInstanceUID)
        return str(ds.SOPInstanceUID)


@pytest.fixture
def rx_port() -> int:
    return random.randint(20000, 60000)


@pytest.fixture
def server(tmp_path: Path, rx_port: int) -> Iterator[ConsoleServer]:
    device = DicomDevice(str(tmp_path / "config.json"), tmp_path)
    device.config.set("destinations", f'[{{"name":"rx","aet":"RXV","host":"127.0.0.1","port":{rx_port}}}]')
    device.config.set("pin", "2468")  # commissioned: verify checks that a PIN guards the settings
    srv = ConsoleServer(tmp_path, device)
    yield srv
    srv.close()


def test_verify_passes_with_a_host_receiver(
    server: ConsoleServer, tmp_path: Path, rx_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = [
        "verify",
        server.url,
        "--out",
        str(out),
        "--receive-port",
        str(rx_port),
        "--receive-aet",
        "RXV",
        "--bind",
        "127.0.0.1",
        "--wait",
        "30",
    ]
    code = main(argv)
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "PASS  C-ECHO rx" in stdout
    assert "PASS  settings guarded by a PIN" in stdout
    assert "PASS  test pattern arrived at RXV" in stdout
    html = (out / "report.html").read_text()
    assert ">PASS<" in html and "FAIL" not in html
    assert server.device.sent[0] in html
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.size[0] >= 96 and sheet.getextrema() != ((24, 24), (24, 24), (24, 24))  # not blank
    assert (out / "received" / f"{server.device.sent[0]}.dcm").exists()


def test_verify_fails_and_says_why(
    server: ConsoleServer, tmp_path: Path, rx_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_port = rx_port + 1 if rx_port < 60000 else rx_port - 1
    server.device.add_destination("gone", "GONE", "127.0.0.1", dead_port)
    out = tmp_path / "report"
    code = main(["verify", server.url, "--out", str(out), "--wait", "3"])  # no receiver: watch the queue
    stdout = capsys.readouterr().out
    assert code == 1
    assert "FAIL  C-ECHO gone" in stdout
    assert "FAIL  test pattern delivered" in stdout
    html = (out / "report.html").read_text()
    assert "GONE@127.0.0.1" in html and ">FAIL<" in html


def test_verify_without_console_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "cannot open" in capsys.readouterr().err
