"""What PS3.8 tells a receiver to ignore does not stop the device's SCU (firmware image, bounded
heap): a peer answers with pynetdicom's A-ASSOCIATE-AC made hostile (every reserved field set,
AE title fields not text, unknown item types, junk in a refused context's transfer syntax) and an
odd maximum PDU length. The association is used: the object goes out in PDUs no larger than the
peer's maximum, each PDV fragment of even length (PS3.8 E.1), and is stored."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from modgate_host.runtimes import MICROPYTHON_RUNTIMES, available
from peers import (
    EXPLICIT,
    IMPLICIT,
    HostilePeer,
    make_sc,
    pdu_bytes,
    proposed_contexts,
    read_pdu,
    run_device,
    store_rsp,
)
from test_net_pdu import PYNETDICOM_AC, hostile_ac

PEER_MAX = 16383  # what PYNETDICOM_AC announces
SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.mark.parametrize("runtime", MICROPYTHON_RUNTIMES)
def test_hostile_ac_with_odd_maximum_is_accepted_and_used(tmp_path: Path, runtime: str) -> None:
    if not available(runtime):
        pytest.skip(f"runtime {runtime} is not installed here (make setup)")
    assert struct.unpack_from(">L", PYNETDICOM_AC, 167)[0] == PEER_MAX  # maximum length sub-item
    pdus: list[int] = []
    fragments: list[tuple[int, int]] = []  # (length, control)
    received = bytearray()

    def script(conn: socket.socket, peer: HostilePeer) -> None:
        _, rq = read_pdu(conn)
        # The AC answers the two Secondary Capture contexts: Explicit VR LE accepted, Implicit refused.
        ids = {(abstract, syntaxes[0]): cid for cid, abstract, syntaxes in proposed_contexts(rq)}
        accepted = ids[(SC, EXPLICIT)]
        conn.sendall(hostile_ac(accepted, ids[(SC, IMPLICIT)]))
        message_id = 0
        while True:
            pdu_type, body = read_pdu(conn)
            assert pdu_type == 4, pdu_type
            pdus.append(len(body))
            offset = 0
            while offset < len(body):
                length, context_id, control = struct.unpack_from(">LBB", body, offset)
                fragments.append((length - 2, control))
                if control & 1:  # the command: Message ID (0000,0110) US
                    at = body.index(b"\x00\x00\x10\x01", offset) + 8
                    message_id = struct.unpack_from("<H", body, at)[0]
                else:
                    received.extend(body[offset + 6:offset + 4 + length])
                offset += 4 + length
            if control == 2:
                break
        conn.sendall(store_rsp(message_id, accepted, 0))
        pdu_type, _ = read_pdu(conn)
        peer.events.append(("pdu", pdu_type, b""))
        conn.sendall(pdu_bytes(6, bytes(4)))  # A-RELEASE-RP
        peer.wait_closed(conn)

    src = make_sc(tmp_path / "a.dcm", 256, 256, seed=16)
    with HostilePeer(script) as peer:
        proc = run_device("send", ["-aec", "PYSCP", "127.0.0.1", str(peer.port), str(src)], runtime,
                          timeout=300)
    assert not peer.errors, peer.errors
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK 0x0000"), proc.stdout
    assert max(pdus) <= PEER_MAX and len(pdus) > 5, pdus
    assert all(length % 2 == 0 for length, _ in fragments), fragments
    assert PEER_MAX - 1 in pdus  # full PDUs but for the odd byte a fragment cannot use
    dataset = src.read_bytes()
    assert bytes(received) == dataset[-len(received):] and len(received) > 256 * 256 * 2
    assert ("pdu", 5, b"") in peer.events  # then an orderly A-RELEASE-RQ
