"""A scripted hostile peer against the device's SCU (x86-64 MicroPython, bounded heap).

Each script breaks PS3.8 in one way. The device must log a reason, abort (an A-ABORT PDU the
peer can see, where the standard asks for one), report a transient failure so the object is
kept for retry, leave the file untouched, and finish within its timeouts and heap.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modgate_host.runtimes import available
from peers import HostilePeer, associate_ac, make_sc, pdu_bytes, read_pdu, run_device, store_rsp

# The send job's heap bound: the firmware runs frozen in the board's image, as on a board, so this
# heap holds the job's data and module objects only.
HEAP = "64k"
pytestmark = pytest.mark.skipif(not available("micropython"), reason="micropython not installed")

Script = Callable[[socket.socket, HostilePeer], None]


def after_rq(respond: Callable[[bytes], bytes], then: str = "wait") -> Script:
    def script(conn: socket.socket, peer: HostilePeer) -> None:
        pdu_type, rq = read_pdu(conn)
        peer.events.append(("rq", pdu_type))
        conn.sendall(respond(rq))
        if then == "close":
            return
        peer.wait_closed(conn)
    return script


def after_pdata(respond: bytes | None, then: str = "wait") -> Script:
    """Accept everything, read until the dataset's last fragment, then misbehave."""
    def script(conn: socket.socket, peer: HostilePeer) -> None:
        _, rq = read_pdu(conn)
        conn.sendall(associate_ac(rq))
        while True:
            pdu_type, body = read_pdu(conn)
            if pdu_type != 4:
                peer.events.append(("pdu", pdu_type, body))
                return
            if body[5] & 0x02 and not body[5] & 0x01:
                break  # last data fragment
            if then == "abort-early":
                conn.sendall(pdu_bytes(7, b"\x00\x00\x00\x00"))
                peer.wait_closed(conn)
                return
        if respond is not None:
            conn.sendall(respond)
        peer.wait_closed(conn, 15)
    return script


def run_against(script: Script, tmp_path: Path) -> tuple[Any, HostilePeer, float]:
    src = make_sc(tmp_path / "a.dcm", 256, 256, seed=11)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with HostilePeer(script) as peer:
        started = time.monotonic()
        proc = run_device("send", ["--timeouts", "2000,2000,2000", "-aec", "HOSTILE", "127.0.0.1",
                                   str(peer.port), str(src)], "micropython", heap=HEAP, timeout=60)
        elapsed = time.monotonic() - started
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest  # the object is kept as it was
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("FAILED transient"), proc.stdout
    assert not peer.errors, peer.errors
    return proc, peer, elapsed


def aborts(peer: HostilePeer) -> list[bytes]:
    return [e[2] for e in peer.events if e[0] == "pdu" and e[1] == 7]


def test_truncated_ac_then_close(tmp_path: Path) -> None:
    proc, _, elapsed = run_against(after_rq(lambda rq: associate_ac(rq)[:50], then="close"), tmp_path)
    assert "closed" in proc.stdout
    assert elapsed < 15


def test_truncated_ac_then_stall(tmp_path: Path) -> None:
    proc, peer, elapsed = run_against(after_rq(lambda rq: associate_ac(rq)[:50]), tmp_path)
    assert "A-ASSOCIATE-AC" in proc.stdout and "timeout" in proc.stdout, proc.stdout
    assert aborts(peer) == [b"\x00\x00\x00\x00"]  # A-ABORT, service-user source
    assert elapsed < 15


def test_length_ffffffff(tmp_path: Path) -> None:
    proc, peer, _ = run_against(after_rq(lambda rq: b"\x02\x00\xff\xff\xff\xff" + bytes(64)), tmp_path)
    assert "exceeds our limit" in proc.stdout, proc.stdout
    assert aborts(peer) == [b"\x00\x00\x02\x06"]  # provider, invalid parameter value


def test_unknown_pdu_type(tmp_path: Path) -> None:
    proc, peer, _ = run_against(after_rq(lambda rq: pdu_bytes(0x0A, bytes(10))), tmp_path)
    assert "unknown PDU type 0x0a" in proc.stdout, proc.stdout
    assert aborts(peer) == [b"\x00\x00\x02\x01"]  # provider, unrecognised PDU


def test_ac_for_a_context_never_proposed(tmp_path: Path) -> None:
    proc, peer, _ = run_against(
        after_rq(lambda rq: associate_ac(rq, extra_contexts=[(255, 0, "1.2.840.10008.1.2")])), tmp_path)
    assert "never proposed" in proc.stdout, proc.stdout
    assert aborts(peer) == [b"\x00\x00\x02\x05"]


def test_garbage_after_the_ac(tmp_path: Path) -> None:
    proc, peer, _ = run_against(after_rq(lambda rq: associate_ac(rq) + b"garbage after the AC"), tmp_path)
    assert "invalid PDU" in proc.stdout, proc.stdout
    assert len(aborts(peer)) == 1


def test_stall_after_pdata(tmp_path: Path) -> None:
    proc, peer, elapsed = run_against(after_pdata(None), tmp_path)
    assert "C-STORE-RSP" in proc.stdout, proc.stdout
    assert aborts(peer) == [b"\x00\x00\x00\x00"]
    assert elapsed < 15


def test_a_response_to_another_message_aborts_as_service_user(tmp_path: Path) -> None:
    """A well-formed PDU carrying the wrong DIMSE answer is a fault of the exchange, not of PS3.8:
    A-ABORT from the service user (AA-1, source 0), not from the provider."""
    proc, peer, _ = run_against(after_pdata(store_rsp(99, 1, 0)), tmp_path)
    assert "C-STORE-RSP" in proc.stdout and "expected" in proc.stdout, proc.stdout
    assert aborts(peer) == [b"\x00\x00\x00\x00"]


def test_abort_mid_transfer(tmp_path: Path) -> None:
    proc, _, _ = run_against(after_pdata(None, then="abort-early"), tmp_path)
    assert "aborted" in proc.stdout or "closed" in proc.stdout, proc.stdout


def test_heap_in_use_does_not_grow_with_objects(tmp_path: Path) -> None:
    """40 objects on one association leave the heap where 1 object left it (no per-object leak)."""
    from peers import dcmtk_storescp

    src = make_sc(tmp_path / "a.dcm", 256, 256, seed=5)

    def heap_after(count: int, port: int) -> int:
        proc = run_device("send", ["-aec", "STORESCP", "127.0.0.1", str(port), *[str(src)] * count],
                          "micropython", heap=HEAP, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return int(proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])

    with dcmtk_storescp(["--ignore"]) as peer:
        one = heap_after(1, peer.port)
        forty = heap_after(40, peer.port)
    # The only growth allowed is the 39 extra argv strings (~70 bytes each) the job holds.
    assert forty - one < 39 * 100, (one, forty)


def test_peer_max_pdu_0_means_unlimited(tmp_path: Path) -> None:
    """A peer advertising 0 (no limit, PS3.8 D.1) gets our own maximum, and a normal answer works."""
    from peers import receive_message, store_and_release

    sizes: list[int] = []

    def script(conn: socket.socket, peer: HostilePeer) -> None:
        _, rq = read_pdu(conn)
        conn.sendall(associate_ac(rq, max_pdu=0))
        message = receive_message(conn)
        sizes.extend(message.pdu_sizes)
        store_and_release(conn, peer, message)

    src = make_sc(tmp_path / "a.dcm", 256, 256, seed=12)
    with HostilePeer(script) as peer:
        proc = run_device("send", ["-pdu", "8192", "-aec", "PEER", "127.0.0.1", str(peer.port), str(src)],
                          "micropython", heap=HEAP, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK 0x0000"), proc.stdout
    assert max(sizes) == 8192 and len(sizes) > 10, sizes  # our own maximum, fully used
    assert ("pdu", 5, b"") in peer.events  # then an orderly A-RELEASE-RQ


def test_peer_vanishing_mid_transfer(tmp_path: Path) -> None:
    """The peer closes (no A-ABORT) after the first P-DATA: a failed write, never a crash."""
    def script(conn: socket.socket, peer: HostilePeer) -> None:
        _, rq = read_pdu(conn)
        conn.sendall(associate_ac(rq, max_pdu=4096))
        read_pdu(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close

    proc, _, elapsed = run_against(script, tmp_path)
    assert "failed" in proc.stdout or "closed" in proc.stdout, proc.stdout
    assert elapsed < 15
