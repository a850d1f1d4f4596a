"""Secure transport and access (issue 19) on both emulated boards, against real peers on 127.0.0.1:
DICOM TLS (PS3.15 B.9) to dcmtk storescp and Orthanc with a CA and certificates made by openssl
here, the certificates the device must refuse, a peer that stalls in the handshake, User Identity
negotiation (PS3.7 D.3.3.7) with pynetdicom, the clock set by SNTP (RFC 4330), and the frame
input's allow-list.

TLS runs at the heap of a board that offers it (board.json tls_heap_bytes: nucleo-f767zi's
budget on the 32-bit qemu-armhf): at pico-w's 96 KB a TLS association does not fit, which the
board data says (tls, tls_why) and docs/benchmarks.md measures.
"""

from __future__ import annotations

import calendar
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from device_harness import simulate, wait_for_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import peers  # noqa: E402
import tls_peers  # noqa: E402
from modgate_host import build  # noqa: E402
from modgate_host.emulator import Emulator  # noqa: E402
from modgate_host.frameproto import FrameHeader, ResponseParser, encode_frame  # noqa: E402
from modgate_host.transport import DeviceConsole, DeviceError, PermissionDenied  # noqa: E402
from peers import black_hole  # noqa: E402

BOARDS = ["unix", "qemu-armhf"]
PIN = "7531"


def tls_heap(board: str) -> str:
    return str(build.load_board(board)["tls_heap_bytes"])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA with the certificates of every case, and a second CA the device does not trust."""
    root = tmp_path_factory.mktemp("pki")
    ca = tls_peers.Pki(root / "ca")
    rogue = tls_peers.Pki(root / "rogue", "some other CA")
    return {
        "ca": ca.ca,
        "server": ca.issue("archive", "IP:127.0.0.1,DNS:localhost"),
        "device": ca.issue("modgate-device", "DNS:modgate-device"),
        "expired": ca.issue("old-archive", "IP:127.0.0.1", expired=True),
        "elsewhere": ca.issue("elsewhere", "DNS:pacs.elsewhere.example"),
        "rogue": rogue.issue("rogue-archive", "IP:127.0.0.1"),
    }


def flash(state: Path, pki: dict[str, Any], client: bool) -> dict[str, str]:
    """Put the CA bundle (and our certificate) on the board's flash; the settings naming them."""
    tls = state / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki["ca"], tls / "ca.pem")  # tls_ca_file's default place
    if not client:
        return {}
    shutil.copy(pki["device"][0], tls / "device.pem")
    shutil.copy(pki["device"][1], tls / "device.key")
    return {"tls_cert_file": "tls/device.pem", "tls_key_file": "tls/device.key"}


def dest(name: str, aet: str, port: int, tls: bool = True) -> dict[str, Any]:
    return {"name": name, "aet": aet, "host": "127.0.0.1", "port": port, "tls": tls}


def config(tmp_path: Path, dests: list[dict[str, Any]], **values: Any) -> Path:
    path = tmp_path / "device-config.json"
    path.write_text(json.dumps({"destinations": dests, "pin": PIN, **values}))
    return path


def status(device: Emulator) -> dict[str, Any]:
    with DeviceConsole(device.console_path, timeout_s=60) as console:
        return dict(console.call("status"))


def wait_log(device: Emulator, pattern: str, timeout: float = 60.0) -> str:
    """The first device log line matching `pattern` (a regular expression), once it is there."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        for line in device.log_path.read_text(errors="replace").splitlines():
            if re.search(pattern, line):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no log line like {pattern!r} within {timeout} s:\n"
                         + device.log_path.read_text(errors="replace")[-3000:])


def send_frames(device: Emulator, tmp_path: Path, count: int) -> None:
    report = simulate(device.frames_url, tmp_path / "modality.json", count, "64x64", "GRAY16")
    assert len(report["acked"]) == count, report["output"]


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- DICOM TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("board", BOARDS)
def test_frames_reach_dcmtk_over_mutual_tls(board: str, pki: dict[str, Any], tmp_path: Path) -> None:
    cert, key = pki["server"]
    rx = folder(tmp_path / "rx")
    args = ["+xa", *tls_peers.storescp_tls(pki["ca"], cert, key, require_client=True)]
    with peers.dcmtk_storescp(args, out_dir=rx, aet="TLSPACS") as scp:
        # The archive really is TLS with client certificates: echoscu gets in with one only.
        echo = ["/usr/bin/echoscu", "-aec", "TLSPACS", "+tls", str(pki["device"][1]), str(pki["device"][0]),
                "-pw", "+cf", str(pki["ca"]), "127.0.0.1", str(scp.port)]
        assert subprocess.run(echo, capture_output=True, timeout=60).returncode == 0
        rogue_ca = str(tls_peers_rogue_ca(pki))
        anonymous = ["/usr/bin/echoscu", "-aec", "TLSPACS", "+tls", str(pki["server"][1]),
                     str(pki["server"][0]), "-pw", "+cf", rogue_ca, "127.0.0.1", str(scp.port)]
        assert subprocess.run(anonymous, capture_output=True, timeout=60).returncode != 0
        state = tmp_path / "flash"
        files = flash(state, pki, client=True)
        cfg = config(tmp_path, [dest("pacs", "TLSPACS", scp.port)], **files)
        with Emulator(board, state, config=cfg, heap=tls_heap(board)) as device:
            send_frames(device, tmp_path, 3)
            arrived = wait_for_files(rx, 3, timeout=180)
            line = wait_log(device, rf"TLS with 127\.0\.0\.1:{scp.port}: TLSv1\.[23] ")
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                echo_reply = console.call("dest", "echo", "pacs")  # C-ECHO over the same TLS
            after = status(device)
    assert echo_reply["ok"] and echo_reply["rtt_ms"] >= 0
    assert "certificate of 127.0.0.1 verified" in line
    assert after["heap"]["out_of_memory"] == 0, after["heap"]
    assert after["queue"]["destinations"]["pacs"]["pending"] == 0
    for path in arrived:
        assert pydicom.dcmread(path).Modality


def tls_peers_rogue_ca(pki: dict[str, Any]) -> Path:
    """The other CA's certificate file (a client trusting it cannot verify our archive)."""
    return Path(pki["rogue"][0]).parent / "ca.pem"


@pytest.mark.parametrize("board", BOARDS)
def test_certificates_the_device_must_refuse(board: str, pki: dict[str, Any], tmp_path: Path) -> None:
    """Wrong CA, expired, not issued to the host dialled: each a log line naming the cause, the
    objects kept (held, never dead letters), and never a word in plain TCP."""
    cases = {"rogue": "not signed by a CA in the CA bundle", "expired": "has expired",
             "elsewhere": "not issued to 127.0.0.1"}
    def archive(name: str) -> Any:
        return peers.dcmtk_storescp(tls_peers.storescp_tls(pki["ca"], *pki[name]), aet=name.upper(),
                                    out_dir=folder(tmp_path / name))

    with archive("rogue") as rogue, archive("expired") as expired, archive("elsewhere") as elsewhere:
        ports = {"rogue": rogue.port, "expired": expired.port, "elsewhere": elsewhere.port}
        state = tmp_path / "flash"
        flash(state, pki, client=False)
        cfg = config(tmp_path, [dest(name, name.upper(), port) for name, port in ports.items()])
        with Emulator(board, state, config=cfg, heap=tls_heap(board)) as device:
            send_frames(device, tmp_path, 2)
            lines = {name: wait_log(device, rf"{name.upper()}@127\.0\.0\.1:{port}: TLS with .* failed")
                     for name, port in ports.items()}
            held = {name: wait_log(device, rf"spool: {name} refuses associations") for name in ports}
            after = status(device)
    for name, cause in cases.items():
        assert "the server certificate was refused: " in lines[name], lines[name]
        assert cause in lines[name], lines[name]
        assert "holding its queue" in held[name]
        queue = after["queue"]["destinations"][name]
        assert queue["pending"] == 2 and queue["dead"] == 0, (name, queue)
    for name in cases:
        assert not list((tmp_path / name).iterdir())  # nothing went anywhere


@pytest.mark.parametrize("board", BOARDS)
def test_a_stalled_handshake_and_a_refused_client_are_bounded(board: str, pki: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """A peer that accepts TCP and never answers the ClientHello costs connect_timeout_ms and is
    retried; an archive that wants a client certificate we do not have ends the handshake."""
    cert, key = pki["server"]
    with (
        black_hole() as hole,
        peers.dcmtk_storescp(tls_peers.storescp_tls(pki["ca"], cert, key, require_client=True),
                             aet="MUTUAL") as mutual,
    ):
        state = tmp_path / "flash"
        flash(state, pki, client=False)
        cfg = config(tmp_path, [dest("hole", "HOLE", hole), dest("mutual", "MUTUAL", mutual.port)],
                     connect_timeout_ms=2000)
        with Emulator(board, state, config=cfg, heap=tls_heap(board)) as device:
            started = time.monotonic()
            send_frames(device, tmp_path, 1)
            stalled = wait_log(device, rf"HOLE@.*TLS handshake with 127\.0\.0\.1:{hole} did not finish"
                               r" within 2000 ms", timeout=30)
            waited = time.monotonic() - started
            refused = wait_log(device, r"MUTUAL@.*TLS with .* failed")
            retried = wait_log(device, r"spool: hole: entry \d+ failed \(TLS handshake .*retry in")
            after = status(device)
    assert waited < 2 + 10, waited  # the handshake's own budget, plus boot and scheduling
    assert "the peer stopped answering" in stalled
    assert "closed the connection during the handshake" in refused or "alert" in refused, refused
    assert "attempt" in retried
    for name in ("hole", "mutual"):
        assert after["queue"]["destinations"][name]["pending"] == 1
        assert after["queue"]["destinations"][name]["dead"] == 0


@pytest.mark.parametrize("board", BOARDS)
def test_orthanc_with_dicom_tls(board: str, pki: dict[str, Any], tmp_path: Path) -> None:
    cert, key = pki["server"]
    tls = {"DicomTlsEnabled": True, "DicomTlsCertificate": str(cert), "DicomTlsPrivateKey": str(key),
           "DicomTlsTrustedCertificates": str(pki["ca"]), "DicomTlsRemoteCertificateRequired": False}
    with peers.orthanc(aet="ORTHANC", extra=tls) as archive:
        state = tmp_path / "flash"
        flash(state, pki, client=False)
        cfg = config(tmp_path, [dest("orthanc", "ORTHANC", archive.port)])
        with Emulator(board, state, config=cfg, heap=tls_heap(board)) as device:
            send_frames(device, tmp_path, 2)
            until = time.monotonic() + 120
            while len(archive.rest("/instances")) < 2 and time.monotonic() < until:
                time.sleep(0.5)
            wait_log(device, rf"TLS with 127\.0\.0\.1:{archive.port}: TLSv1\.[23] ")
        assert len(archive.rest("/instances")) == 2



# ---- User Identity -------------------------------------------------------------------------------


def identity_scp(pki: dict[str, Any], passcode: str | None, tls: bool, seen: list[tuple[int, bytes, bytes]],
                 aet: str) -> Any:
    """A pynetdicom archive (TLS or not) that records each User Identity proposal and, with
    `passcode`, accepts only the user 'modgate' with it (pynetdicom rejects the others)."""
    from pynetdicom import evt

    def on_user_id(event: Any) -> tuple[bool, None]:
        seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        if passcode is None:
            return True, None
        return (event.primary_field == b"modgate" and event.secondary_field == passcode.encode()), None

    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pki["server"])
    return peers.pynetdicom_scp(aet=aet, ssl_context=context, handlers=[(evt.EVT_USER_ID, on_user_id)])


@pytest.mark.parametrize("board", BOARDS)
def test_user_identity_goes_with_its_passcode_over_tls_only(board: str, pki: dict[str, Any],
                                                            tmp_path: Path) -> None:
    secure_seen: list[tuple[int, bytes, bytes]] = []
    plain_seen: list[tuple[int, bytes, bytes]] = []
    with (
        identity_scp(pki, "pass-word 1", True, secure_seen, "SECURE") as secure,
        identity_scp(pki, None, False, plain_seen, "PLAIN") as plain,
    ):
        state = tmp_path / "flash"
        flash(state, pki, client=False)
        dests = [dest("secure", "SECURE", secure.port), dest("plain", "PLAIN", plain.port, tls=False)]
        cfg = config(tmp_path, dests, user_identity="modgate", user_passcode="pass-word 1")
        with Emulator(board, state, config=cfg, heap=tls_heap(board)) as device:
            warned = wait_log(device, r"user_passcode goes to TLS destinations only; plain get")
            send_frames(device, tmp_path, 1)
            until = time.monotonic() + 120
            while (len(secure.received) < 1 or len(plain.received) < 1) and time.monotonic() < until:
                time.sleep(0.2)
            unconfirmed = wait_log(device, r"SECURE@.* accepted without confirming user identity 'modgate'")
            # A wrong passcode: the archive rejects the association; the object waits.
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                console.unlock(PIN)
                console.call("config", "set", "user_passcode", "wrong")
                console.call("config", "save")
                console.call("test-pattern", "send")
            rejected = wait_log(device, r"SECURE@.*association rejected .*\(user identity 'modgate' was sent")
            after = status(device)
            log = device.log_path.read_text(errors="replace")
    assert len(secure.received) == 1 and len(plain.received) >= 1
    assert secure_seen[0] == (2, b"modgate", b"pass-word 1")  # PS3.7 D.3.3.7: username and passcode
    assert plain_seen[0] == (1, b"modgate", b"")  # never the passcode in clear
    assert secure_seen[-1] == (2, b"modgate", b"wrong")
    assert "may not check it" in unconfirmed  # pynetdicom sends no response for types 1 and 2
    assert "plain get user_identity alone" in warned
    assert after["queue"]["destinations"]["secure"]["pending"] == 1
    assert "rejected transient" in rejected or "rejected permanent" in rejected
    assert "pass-word 1" not in log


# ---- trusted time --------------------------------------------------------------------------------


@pytest.mark.parametrize("board", BOARDS)
def test_sntp_sets_the_clock_and_objects_carry_it(board: str, tmp_path: Path) -> None:
    ahead_s = 3 * 86400 + 7200  # a server three days and two hours ahead of this host
    rx = folder(tmp_path / "rx")
    with (
        tls_peers.SntpServer(offset_s=ahead_s) as server,
        peers.dcmtk_storescp(["+xa"], out_dir=rx, aet="ARCHIVE") as archive,
    ):
        cfg = config(tmp_path, [dest("archive", "ARCHIVE", archive.port, tls=False)],
                     sntp_server=f"127.0.0.1:{server.port}")
        with Emulator(board, tmp_path / "flash", config=cfg) as device:
            line = wait_log(device, rf"clock: synchronised with 127\.0\.0\.1:{server.port}: offset \+\d+ ms")
            after = status(device)
            send_frames(device, tmp_path, 1)
            arrived = wait_for_files(rx, 1, timeout=120)
    sync = after["clock_sync"]
    assert abs(sync["offset_ms"] - ahead_s * 1000) < 3000, sync
    assert sync["last_error"] is None and sync["stratum"] == 2 and sync["last_sync"]
    assert after["clock_source"] == f"sntp 127.0.0.1:{server.port}" and after["clock_set"]
    device_time = calendar.timegm(time.strptime(after["time"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(device_time - (time.time() + ahead_s)) < 30
    assert "the clock was that far off" in line  # a step that large is a warning
    shifted = time.gmtime(time.time() + ahead_s)
    assert pydicom.dcmread(arrived[0]).ContentDate == time.strftime("%Y%m%d", shifted)


@pytest.mark.parametrize("board", BOARDS)
def test_sntp_kiss_of_death_and_silence_leave_the_clock_alone(board: str, tmp_path: Path) -> None:
    with tls_peers.SntpServer(kiss="RATE") as kiss:
        cfg = config(tmp_path, [], sntp_server=f"127.0.0.1:{kiss.port}")
        with Emulator(board, tmp_path / "flash", config=cfg) as device:
            line = wait_log(device, r"clock: SNTP server sent kiss-of-death 'RATE'")
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                first = console.call("status")
                with tls_peers.SntpServer(silent=True) as silent:
                    console.unlock(PIN)
                    console.call("config", "set", "sntp_server", f"127.0.0.1:{silent.port}")
                    console.call("config", "save")
                    quiet = wait_log(device, rf"no answer from SNTP server 127\.0\.0\.1:{silent.port} within")
                    second = console.call("status")
    assert "next try in 60 s" in line and "next try in 60 s" in quiet
    assert first["clock_sync"]["last_error"].startswith("SNTP server sent kiss-of-death")
    assert first["clock_source"] is None and second["clock_source"] is None
    assert second["clock_sync"]["last_sync"] is None


# ---- no open doors: a PIN before commissioning -------------------------------------------------


@pytest.mark.parametrize("board", BOARDS)
def test_a_destination_needs_a_pin_first(board: str, tmp_path: Path) -> None:
    """A device fresh from the box is open, but sends patient data nowhere until a PIN is set;
    from then on every privileged change needs it, and the PIN cannot be taken away."""
    with Emulator(board, tmp_path / "flash") as device:
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            fresh = console.call("status")["privileged"]
            with pytest.raises(PermissionDenied) as refused:
                console.call("dest", "add", "pacs", "PACS", "127.0.0.1", "11112")
            console.call("config", "set", "pin", "2468")  # setting it opens the window once
            console.call("dest", "add", "pacs", "PACS", "127.0.0.1", "11112")
            console.call("config", "save")
            console.lock()
            locked = console.call("status")["privileged"]
            with pytest.raises(PermissionDenied):
                console.call("dest", "remove", "pacs")
            console.unlock("2468")
            with pytest.raises(DeviceError) as kept:
                console.call("config", "set", "pin", "")
            dests = [d["name"] for d in console.call("dest", "list")]
    assert fresh == "open" and locked == "locked"
    assert "needs a PIN first" in str(refused.value)
    assert "can be changed, not removed" in str(kept.value)
    assert "pacs" in dests


# ---- the frame input's allow-list ---------------------------------------------------------------


def one_frame_from(source: str, url: str) -> str:
    """Connect from address `source`, send one 16x16 GRAY8 frame; the device's answer, or
    'closed' when it hung up first."""
    host, port = url.removeprefix("tcp://").split(":")
    sock = socket.socket()
    sock.settimeout(20)
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    try:
        sock.sendall(encode_frame(FrameHeader(1, 16, 16, "GRAY8"), bytes(range(256))))
        parser = ResponseParser()
        while True:
            data = sock.recv(4096)
            if not data:
                return "closed"
            for response in parser.feed(data):
                return response.name
    except ConnectionResetError:
        return "closed"
    finally:
        sock.close()


@pytest.mark.parametrize("board", BOARDS)
def test_frame_sources_outside_the_allow_list_are_refused(board: str, tmp_path: Path) -> None:
    cfg = config(tmp_path, [], frames_allow=["127.0.0.2", "10.9.0.0/16"])
    with Emulator(board, tmp_path / "flash", config=cfg) as device:
        assert one_frame_from("127.0.0.1", device.frames_url) == "closed"
        assert one_frame_from("127.0.0.1", device.frames_url) == "closed"
        refused = wait_log(device, r"ingest: refused frame source 127\.0\.0\.1:\d+: not in frames_allow")
        assert one_frame_from("127.0.0.2", device.frames_url) == "ACK"
        after = status(device)
        log = device.log_path.read_text(errors="replace")
    assert "127.0.0.2 10.9.0.0/16" in refused
    assert after["frames_refused"] == 2 and after["objects_committed"] == 1
    assert log.count("refused frame source 127.0.0.1") == 1  # once a minute per address, not per knock


@pytest.mark.parametrize("board", BOARDS)
def test_the_default_allow_list_is_the_modality_link(board: str, tmp_path: Path) -> None:
    """Emulators: the loopback link of `modgate simulate-modality` (board.json frames.allow)."""
    with Emulator(board, tmp_path / "flash") as device:
        send_frames(device, tmp_path, 1)
        after = status(device)
    assert after["frames_refused"] == 0
    assert build.load_board(board)["frames"]["allow"] == ["127.0.0.1"]
