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
    Message,
    make_sc,
    proposed_contexts,
    read_pdu,
    receive_message,
    run_device,
    store_and_release,
)
from test_net_pdu import PYNETDICOM_AC, hostile_ac

PEER_MAX = 16383  # what PYNETDICOM_AC announces
SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.mark.parametrize("runtime", MICROPYTHON_RUNTIMES)
def test_hostile_ac_with_odd_maximum_is_accepted_and_used(tmp_path: Path, runtime: str) -> None:
    if not available(runtime):
        pytest.skip(f"runtime {runtime} is not installed here (make setup)")
    assert struct.unpack_from(">L", PYNETDICOM_AC, 167)[0] == PEER_MAX  # maximum length sub-item
    got: list[Message] = []

    def script(conn: socket.socket, peer: HostilePeer) -> None:
        _, rq = read_pdu(conn)
        # The AC answers the two Secondary Capture contexts: Explicit VR LE accepted, Implicit refused.
        ids = {(abstract, syntaxes[0]): cid for cid, abstract, syntaxes in proposed_contexts(rq)}
        accepted = ids[(SC, EXPLICIT)]
        conn.sendall(hostile_ac(accepted, ids[(SC, IMPLICIT)]))
        message = receive_message(conn)
        got.append(message)
        assert message.context_id == accepted
        store_and_release(conn, peer, message)

    src = make_sc(tmp_path / "a.dcm", 256, 256, seed=16)
    with HostilePeer(script) as peer:
        proc = run_device("send", ["-aec", "PYSCP", "127.0.0.1", str(peer.port), str(src)], runtime,
                          timeout=300)
    assert not peer.errors, peer.errors
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK 0x0000"), proc.stdout
    pdus, fragments, received = got[0].pdu_sizes, got[0].fragments, bytes(got[0].data)
    assert max(pdus) <= PEER_MAX and len(pdus) > 5, pdus
    assert all(length % 2 == 0 for length, _ in fragments), fragments
    assert PEER_MAX - 1 in pdus  # full PDUs but for the odd byte a fragment cannot use
    dataset = src.read_bytes()
    assert received == dataset[-len(received):] and len(received) > 256 * 256 * 2
    assert ("pdu", 5, b"") in peer.events  # then an orderly A-RELEASE-RQ
