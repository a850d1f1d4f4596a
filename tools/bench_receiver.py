"""The receiver's ceiling: how fast dcmtk `storescp --ignore` takes a set when sending costs nothing.

usage: tools/netns .venv/bin/python tools/bench_receiver.py [--large 10] [--rounds 5] [--work DIR]

Every byte of one association (each object's C-STORE-RQ command and data set in P-DATA-TF PDUs of
the peer's maximum, built before the clock starts with the firmware's own encoders, on CPython)
is written with sendall in 1 MB pieces, responses left to queue, then A-RELEASE-RQ; the clock
stops at the A-RELEASE-RP. No sender can beat that time on the same receiver, so it bounds the
ratio any sender can reach against dcmtk storescu (`tools/bench_send.py`). Not a timed test.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "firmware")]

from modgate.dicom import part10  # noqa: E402
from modgate.net import dimse, items, pdu  # noqa: E402
from peers import dcmtk_storescp, make_sc  # noqa: E402

SC = "1.2.840.10008.5.1.4.1.1.7"
PIECE = 1 << 20


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("peer closed")
            out += chunk
        return out

    pdu_type, _, length = struct.unpack(">BBL", exactly(6))
    return pdu_type, exactly(length)


def associate(port: int) -> tuple[socket.socket, int]:
    """(socket, the peer's max PDU length) after an A-ASSOCIATE-AC for SC in Explicit VR LE."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(4096)
    end = pdu.encode_associate(buf, pdu.A_ASSOCIATE_RQ, b"STORESCP".ljust(16), b"CEILING".ljust(16))
    end = items.encode_rq_items(buf, end, [(1, SC, (part10.EXPLICIT_VR_LE,))], 131072,
                                part10.IMPLEMENTATION_CLASS_UID, "CEILING")
    end = pdu.finish_associate(buf, end)
    sock.sendall(buf[:end])
    pdu_type, body = read_pdu(sock)
    if pdu_type != 2:
        raise RuntimeError(f"association not accepted (PDU type {pdu_type})")
    at = body.index(b"\x51\x00\x00\x04")  # Maximum Length sub-item (PS3.8 D.1)
    return sock, struct.unpack_from(">L", body, at + 4)[0]


def association_bytes(files: list[Path], max_pdu: int) -> bytes:
    """Every P-DATA-TF PDU of one C-STORE per file, fragments of the peer's maximum."""
    out = bytearray()
    room = max_pdu - 6  # PDV item header
    for message_id, path in enumerate(files, 1):
        data = path.read_bytes()
        with open(path, "rb") as f:
            meta = part10.read_meta(f)
        cmd = bytearray(1024)
        n = dimse.encode_store_rq(cmd, 0, message_id, meta["sop_class_uid"], meta["sop_instance_uid"])
        out += struct.pack(">BBLLBB", 4, 0, n + 6, n + 2, 1, 3) + cmd[:n]
        dataset = memoryview(data)[meta["dataset_offset"]:]
        for start in range(0, len(dataset), room):
            frag = dataset[start:start + room]
            last = 2 if start + room >= len(dataset) else 0
            out += struct.pack(">BBLLBB", 4, 0, len(frag) + 6, len(frag) + 2, 1, last) + frag
    return bytes(out)


def ceiling_seconds(port: int, files: list[Path]) -> float:
    """Seconds the receiver needs for `files` when sending costs nothing (one association)."""
    sock, peer_max = associate(port)
    blob = association_bytes(files, peer_max or 16384)
    release = struct.pack(">BBL", 5, 0, 4) + bytes(4)
    start = time.perf_counter()
    view = memoryview(blob)
    for at in range(0, len(view), PIECE):
        sock.sendall(view[at:at + PIECE])
    sock.sendall(release)
    stored = 0
    while True:
        pdu_type, body = read_pdu(sock)
        if pdu_type == 4:
            stored += 1
        elif pdu_type == 6:
            break
        else:
            raise RuntimeError(f"unexpected PDU type {pdu_type}")
    elapsed = time.perf_counter() - start
    sock.close()
    if stored != len(files):
        raise RuntimeError(f"{stored} responses for {len(files)} objects")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "modgate-bench")
    args = parser.parse_args()
    folder = args.work / "large"
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("*.dcm"))
    if len(files) != args.large:
        files = [make_sc(folder / f"{i:04d}.dcm", 2048, 2048, seed=i) for i in range(args.large)]
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    with dcmtk_storescp(["--ignore"]) as peer:
        times = [ceiling_seconds(peer.port, files) for _ in range(args.rounds)]
    median = statistics.median(times)
    print(f"receiver ceiling, {len(files)} x 8 MB into dcmtk storescp --ignore: {median:.3f} s median "
          f"({min(times):.3f}-{max(times):.3f}), {megabytes / median:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
