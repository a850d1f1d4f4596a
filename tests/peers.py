"""Real DICOM peers for end-to-end tests, started by the tests on 127.0.0.1 (CPython only).

- `free_port()`: a TCP port nobody listens on now.
- `dcmtk_storescp(args, out_dir, port)`: /usr/bin/storescp (TCP_NODELAY=1) as a context manager.
- `pynetdicom_scp(handler, port, aet)`: a pynetdicom storage + verification SCP whose C-STORE
  answer is scripted: `handler(event) -> status`, or a list of statuses used in turn.
- `pynetdicom_worklist(items, port, aet, script)`: a pynetdicom Modality Worklist SCP answering
  `items` (pydicom data sets) as pending matches, or whatever `script(event, peer)` yields.
- `wlmscpfs(folder, port, aet)`: dcmtk's worklist SCP serving the .wl files of `folder`.
- `commitment_scp(report, device, ...)`: a pynetdicom archive that stores and is a Storage
  Commitment SCP, reporting on the same association, on a new one it opens to the device's
  listener, or not at all; objects named in `fail` are reported failed.
- `mpps_scp(statuses)`: a pynetdicom MPPS SCP answering N-CREATE and N-SET with scripted statuses.
- `orthanc(port, http_port)`: Orthanc from a JSON config in a temp dir; `.rest(path)` via urllib.
- `black_hole()`: a TCP port that accepts connections and never says a word.
- `HostilePeer(script)`: a raw TCP peer that plays `script(conn, peer)` on each connection,
  with helpers to read PDUs and answer an A-ASSOCIATE-RQ by hand.
dcmtk storescp and Orthanc bind every interface, so `require_netns()` refuses to start them
outside a loopback-only network namespace (`tools/netns`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STORESCP = "/usr/bin/storescp"
ORTHANC_WORKLIST_PLUGIN = "/usr/share/orthanc/plugins/libModalityWorklists.so"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


def require_netns() -> None:
    """Raise unless the only network interface is loopback (see tools/netns)."""
    with open("/proc/net/dev") as f:
        names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    others = [n for n in names if n != "lo"]
    if others:
        raise RuntimeError(
            "peers bind every interface; run inside tools/netns (found " + ", ".join(others) + ")")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Peer:
    def __init__(self, port: int, out_dir: Path | None = None, aet: str = "") -> None:
        self.port = port
        self.out_dir = out_dir
        self.aet = aet
        self.log = ""


@contextmanager
def dcmtk_storescp(args: list[str] | tuple[str, ...] = (), out_dir: Path | None = None,
                   port: int | None = None, aet: str = "STORESCP") -> Iterator[Peer]:
    """dcmtk storescp with `args` (e.g. ["+xi"], ["-pdu", "4096"], ["--refuse"], ["--ignore"])."""
    require_netns()
    port = port or free_port()
    tmp = None
    if out_dir is None:
        tmp = tempfile.mkdtemp(prefix="storescp-")
        out_dir = Path(tmp)
    env = dict(os.environ, TCP_NODELAY="1")
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([STORESCP, "-aet", aet, "-od", str(out_dir), *args, str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc=proc)
        peer = Peer(port, out_dir, aet)
        yield peer
    finally:
        _stop(proc)
        log.seek(0)
        peer_log = log.read().decode(errors="replace")
        log.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    peer.log = peer_log


class ScriptedSCP(Peer):
    def __init__(self, port: int, aet: str) -> None:
        super().__init__(port, None, aet)
        self.received: list[Any] = []  # pydicom datasets, in arrival order
        self.release = threading.Event()  # set on teardown: frees handlers told to hang


@contextmanager
def pynetdicom_scp(handler: Callable[[Any], int] | list[int] | None = None, port: int | None = None,
                   aet: str = "PYSCP", transfer_syntaxes: list[str] | None = None,
                   max_pdu: int = 16382, ssl_context: Any = None,
                   handlers: list[tuple[Any, Callable[..., Any]]] | None = None) -> Iterator[ScriptedSCP]:
    """A pynetdicom SCP on 127.0.0.1 only; `handler` scripts the C-STORE status. `ssl_context`
    makes it a TLS server; `handlers` are more pynetdicom event handlers (e.g. EVT_USER_ID)."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    port = port or free_port()
    peer = ScriptedSCP(port, aet)
    statuses = list(handler) if isinstance(handler, list) else None

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        peer.received.append(ds)
        if statuses is not None:
            return statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if handler is not None:
            return int(handler(event))  # type: ignore[operator]
        return 0x0000

    ae = AE(ae_title=aet)
    ae.maximum_pdu_size = max_pdu
    syntaxes = transfer_syntaxes or [EXPLICIT, IMPLICIT]
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, syntaxes)
    ae.add_supported_context(Verification, syntaxes)
    server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=ssl_context,
                             evt_handlers=[(evt.EVT_C_STORE, on_store), *(handlers or [])])
    try:
        yield peer
    finally:
        peer.release.set()
        server.shutdown()


class WorklistSCP(Peer):
    def __init__(self, port: int, aet: str) -> None:
        super().__init__(port, None, aet)
        self.queries: list[Any] = []  # the identifiers received, pydicom data sets
        self.yielded: list[int] = []  # matches answered, per query
        self.cancelled = 0  # queries ended by a C-CANCEL
        self.release = threading.Event()  # set on teardown: frees scripts told to hang


@contextmanager
def pynetdicom_worklist(items: list[Any] | tuple[Any, ...] = (), port: int | None = None, aet: str = "PYWL",
                        script: Callable[[Any, WorklistSCP], Iterator[tuple[int, Any]]] | None = None,
                        max_pdu: int = 16382, transfer_syntaxes: list[str] | None = None,
                        hold_after: int | None = None) -> Iterator[WorklistSCP]:
    """A pynetdicom Modality Worklist SCP on 127.0.0.1 only. Without `script` it answers every
    query with each of `items` as a pending match, then success, or 0xFE00 once a C-CANCEL came;
    with `hold_after`, it waits 1 s before the match after that many (so a C-CANCEL the device
    sent then is seen before it, whatever the device's speed). `script(event, peer)` yields
    (status, identifier) pairs instead."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

    port = port or free_port()
    peer = WorklistSCP(port, aet)

    def on_find(event: Any) -> Iterator[tuple[int, Any]]:
        peer.queries.append(event.identifier)
        if script is not None:
            yield from script(event, peer)
            return
        peer.yielded.append(0)
        for n, ds in enumerate(items):
            # is_cancelled is true once per C-CANCEL (pynetdicom forgets it when asked).
            cancelled = event.is_cancelled
            if n == hold_after:
                time.sleep(1)  # pynetdicom takes in a C-CANCEL between two yields, not during one
                cancelled = event.is_cancelled
            if cancelled:  # the handler's to check (PS3.4 C.4.1.3.2: stop, answer FE00)
                peer.cancelled += 1
                yield 0xFE00, None
                return
            peer.yielded[-1] += 1
            yield 0xFF00, ds
        yield 0x0000, None

    ae = AE(ae_title=aet)
    ae.maximum_pdu_size = max_pdu
    ae.add_supported_context(ModalityWorklistInformationFind, transfer_syntaxes or [EXPLICIT, IMPLICIT])
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        yield peer
    finally:
        peer.release.set()
        server.shutdown()


class CommitmentSCP(ScriptedSCP):
    def __init__(self, port: int, aet: str) -> None:
        super().__init__(port, aet)
        self.actions: list[Any] = []  # Storage Commitment requests (action information data sets)
        self.reports: list[tuple[str, int, int]] = []  # (Transaction UID, event type, status answered)
        self.errors: list[str] = []
        self.report = "same"
        self.fail: set[str] = set()
        self.fail_once = 0  # this many of the first references asked about are failed, once each
        self.failed_once: list[str] = []
        self.stored: set[str] = set()


@contextmanager
def commitment_scp(report: str = "same", device: tuple[str, int] | None = None, port: int | None = None,
                   aet: str = "PYSC", fail: set[str] | None = None, delay: float = 0.2,
                   syntax: str | None = None) -> Iterator[CommitmentSCP]:
    """A pynetdicom storage SCP that is a Storage Commitment Push Model SCP (PS3.4 J.3) too.

    It answers every N-ACTION with success and reports `delay` s later, as `report` says:
    "same" (N-EVENT-REPORT on the request's association), "new" (a new association to the
    device's listener `device` = (AE title, port), proposing the SCP role, PS3.7 D.3.3.4), or
    "none". An object whose SOP Instance UID is in `fail` (the set may change while it runs) or
    that it never stored is reported failed (0x0112 no such object instance), and so are the first
    `fail_once` references it is asked about (once each); the rest committed. `syntax` restricts
    the transfer syntax of the report association."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import StorageCommitmentPushModel, Verification  # type: ignore[attr-defined]

    port = port or free_port()
    peer = CommitmentSCP(port, aet)
    peer.report = report
    peer.fail = fail if fail is not None else set()
    instance = "1.2.840.10008.1.20.1.1"

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        peer.received.append(ds)
        peer.stored.add(str(ds.SOPInstanceUID))
        return 0x0000

    def result(info: Any) -> tuple[Any, int]:
        out = Dataset()
        out.TransactionUID = info.TransactionUID
        good, bad = [], []
        for ref in info.ReferencedSOPSequence:
            item = Dataset()
            item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
            item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
            uid = str(ref.ReferencedSOPInstanceUID)
            once = len(peer.failed_once) < peer.fail_once and uid not in peer.failed_once
            if once:
                peer.failed_once.append(uid)
            if once or uid in peer.fail or uid not in peer.stored:
                item.FailureReason = 0x0112
                bad.append(item)
            else:
                good.append(item)
        if bad:
            out.FailedSOPSequence = bad
        if good:
            out.ReferencedSOPSequence = good
        return out, 2 if bad else 1

    def send(assoc: Any, info: Any) -> None:
        ds, event_type = result(info)
        try:
            status, _ = assoc.send_n_event_report(ds, event_type, StorageCommitmentPushModel, instance)
            peer.reports.append((str(info.TransactionUID), event_type, int(getattr(status, "Status", -1))))
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            peer.errors.append(f"report: {exc!r}")

    def later(event: Any, info: Any) -> None:
        if peer.release.wait(delay):
            return
        if peer.report == "same":
            send(event.assoc, info)
        elif peer.report == "new" and device is not None:
            ae = AE(ae_title=aet)
            ae.add_requested_context(StorageCommitmentPushModel, [syntax] if syntax else [EXPLICIT, IMPLICIT])
            role = build_role(StorageCommitmentPushModel, scp_role=True)
            assoc = ae.associate("127.0.0.1", device[1], ae_title=device[0], ext_neg=[role])
            if not assoc.is_established:
                peer.errors.append("report association not established")
                return
            send(assoc, info)
            assoc.release()

    def on_action(event: Any) -> tuple[int, None]:
        info = event.action_information
        peer.actions.append(info)
        threading.Thread(target=later, args=(event, info), daemon=True).start()
        return 0x0000, None

    ae = AE(ae_title=aet)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, [EXPLICIT, IMPLICIT])
    ae.add_supported_context(Verification, [EXPLICIT, IMPLICIT])
    ae.add_supported_context(StorageCommitmentPushModel, [EXPLICIT, IMPLICIT])
    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_N_ACTION, on_action)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield peer
    finally:
        peer.release.set()
        server.shutdown()


class MppsSCP(Peer):
    def __init__(self, port: int, aet: str) -> None:
        super().__init__(port, None, aet)
        self.creates: list[Any] = []  # (SOP Instance UID, data set) of each N-CREATE
        self.sets: list[Any] = []  # (SOP Instance UID, data set) of each N-SET
        self.created: set[str] = set()  # the instances this SCP holds
        self.statuses: dict[str, list[int]] = {"create": [], "set": []}


@contextmanager
def mpps_scp(port: int | None = None, aet: str = "PYMPPS", create: list[int] | None = None,
             sets: list[int] | None = None, answer_lost: bool = False) -> Iterator[MppsSCP]:
    """A pynetdicom MPPS SCP (PS3.4 F.7) on 127.0.0.1: each N-CREATE and N-SET is recorded and
    answered with the next status of `create` / `sets` (the last one repeats; success by default).
    An N-CREATE for an instance it holds already is answered 0111, duplicate SOP instance (PS3.7
    10.1.5.1.6), as an RIS does. `answer_lost`: the first N-CREATE creates the instance whatever
    status it answers, as when the answer is lost on its way back."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

    port = port or free_port()
    peer = MppsSCP(port, aet)
    peer.statuses = {"create": list(create or [0]), "set": list(sets or [0])}

    def next_status(kind: str) -> int:
        queue = peer.statuses[kind]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def on_create(event: Any) -> tuple[int, Any]:
        uid = str(event.request.AffectedSOPInstanceUID)
        peer.creates.append((uid, event.attribute_list))
        if uid in peer.created:
            return 0x0111, None
        status = next_status("create")
        if status == 0 or answer_lost:
            peer.created.add(uid)
        return status, (event.attribute_list if status == 0 else None)

    def on_set(event: Any) -> tuple[int, Any]:
        peer.sets.append((str(event.request.RequestedSOPInstanceUID), event.modification_list))
        status = next_status("set")
        return status, (event.modification_list if status == 0 else None)

    ae = AE(ae_title=aet)
    ae.add_supported_context(ModalityPerformedProcedureStep, [EXPLICIT, IMPLICIT])
    handlers = [(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield peer
    finally:
        server.shutdown()


WORKLIST_DUMPS = Path(__file__).resolve().parent / "worklist"
WORKLIST_DAY = "20260705"  # the scheduled day of the dumps; tomorrow.dump is the day after


def make_worklist_files(folder: Path, names: list[str] | None = None, day: str | None = None) -> list[Path]:
    """.wl files in `folder` made by dcmtk dump2dcm from the text dumps in tests/worklist. With
    `day` (YYYYMMDD) the dumps' scheduled day is moved there, and their next day to its next day
    (the demo schedules them for today)."""
    def next_day(d: str) -> str:
        return (dt.datetime.strptime(d, "%Y%m%d") + dt.timedelta(days=1)).strftime("%Y%m%d")

    folder.mkdir(parents=True, exist_ok=True)
    moves = {}
    if day is not None:
        moves = {f"[{WORKLIST_DAY}]": f"[{day}]", f"[{next_day(WORKLIST_DAY)}]": f"[{next_day(day)}]"}
    out = []
    for dump in sorted(WORKLIST_DUMPS.glob("*.dump")):
        if names is None or dump.stem in names:
            text = dump.read_text(encoding="utf-8")
            for old, new in moves.items():
                text = text.replace(old, new)
            source = folder / (dump.stem + ".dump")
            source.write_text(text, encoding="utf-8")
            target = folder / (dump.stem + ".wl")
            subprocess.run(["/usr/bin/dump2dcm", "+te", str(source), str(target)], check=True,
                           capture_output=True)
            source.unlink()
            out.append(target)
    return out


@contextmanager
def wlmscpfs(folder: Path, port: int | None = None, aet: str = "MWL") -> Iterator[Peer]:
    """dcmtk's worklist SCP serving `folder`/`aet`/*.wl (its data-files layout: one folder per
    called AE title, with a lockfile), returning the files' own character sets (-csk)."""
    require_netns()
    port = port or free_port()
    (folder / aet).mkdir(parents=True, exist_ok=True)
    (folder / aet / "lockfile").touch()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(["/usr/bin/wlmscpfs", "-csk", "-dfp", str(folder), str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    peer = Peer(port, folder / aet, aet)
    try:
        wait_listening(port, proc=proc)
        yield peer
    finally:
        _stop(proc)
        log.seek(0)
        peer.log = log.read().decode(errors="replace")
        log.close()


@contextmanager
def orthanc(port: int | None = None, http_port: int | None = None, aet: str = "ORTHANC",
            worklists: Path | None = None, extra: dict[str, Any] | None = None) -> Iterator[Any]:
    """Orthanc with a throw-away store; `.rest(path)` returns decoded JSON, `.get(path)` bytes.
    With `worklists`, its ModalityWorklists plugin (Debian's orthanc package) serves the .wl
    files of that folder to any calling AE. `extra`: more configuration keys (e.g. DicomModalities
    for its Storage Commitment reports, DicomTlsEnabled and its certificate files)."""
    require_netns()
    port = port or free_port()
    http_port = http_port or free_port()
    with tempfile.TemporaryDirectory(prefix="orthanc-") as tmp:
        config = {
            "Name": "modgate-test", "StorageDirectory": tmp + "/db", "IndexDirectory": tmp + "/db",
            "DicomAet": aet, "DicomPort": port, "HttpPort": http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [], **(extra or {}),
        }
        if worklists is not None:
            config["Plugins"] = [ORTHANC_WORKLIST_PLUGIN]
            config["Worklists"] = {"Enable": True, "Database": str(worklists)}
            # Worklist C-FIND from AEs it was not told of (Orthanc 1.10 refuses them by default).
            config["DicomAlwaysAllowFindWorklist"] = True
        Path(tmp, "orthanc.json").write_text(json.dumps(config))
        log = open(Path(tmp, "orthanc.log"), "wb")
        proc = subprocess.Popen(["Orthanc", str(Path(tmp, "orthanc.json"))], stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            wait_listening(http_port, 20, proc)
            wait_listening(port, 20, proc)
            peer = Peer(port, None, aet)
            base = f"http://127.0.0.1:{http_port}"

            def get(path: str) -> bytes:
                with urllib.request.urlopen(base + path, timeout=10) as r:
                    return bytes(r.read())

            peer.get = get  # type: ignore[attr-defined]
            peer.rest = lambda path: json.loads(get(path))  # type: ignore[attr-defined]
            yield peer
        finally:
            _stop(proc)
            log.close()


@contextmanager
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (nor closes them)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


# -- a hostile peer speaking raw PS3.8 ------------------------------------------------------------


def read_pdu(conn: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    """(type, body) of the next PDU from `conn`; (0, b"") when the peer closed."""
    conn.settimeout(timeout)
    head = _read_exact(conn, 6)
    if len(head) < 6:
        return 0, b""
    pdu_type, _, length = struct.unpack(">BBL", head)
    return pdu_type, _read_exact(conn, length)


def _read_exact(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def proposed_contexts(rq_body: bytes) -> list[tuple[int, str, list[str]]]:
    """(context ID, abstract syntax, transfer syntaxes) of an A-ASSOCIATE-RQ body."""
    out = []
    offset = 68
    while offset + 4 <= len(rq_body):
        item_type, _, length = struct.unpack_from(">BBH", rq_body, offset)
        value = rq_body[offset + 4:offset + 4 + length]
        if item_type == 0x20:
            abstract, syntaxes, sub = "", [], 4
            while sub < len(value):
                st, _, sl = struct.unpack_from(">BBH", value, sub)
                uid = value[sub + 4:sub + 4 + sl].decode().rstrip("\0")
                if st == 0x30:
                    abstract = uid
                else:
                    syntaxes.append(uid)
                sub += 4 + sl
            out.append((value[0], abstract, syntaxes))
        offset += 4 + length
    return out


def _item(item_type: int, data: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(data)) + data


def associate_ac(rq_body: bytes, accept: Callable[[str, str], bool] | None = None, max_pdu: int = 16384,
                 extra_contexts: list[tuple[int, int, str]] | None = None) -> bytes:
    """An A-ASSOCIATE-AC answering `rq_body`: each context accepted when accept(abstract, ts)."""
    accept = accept or (lambda abstract, ts: True)
    items = _item(0x10, b"1.2.840.10008.3.1.1.1")
    results = []
    for cid, abstract, syntaxes in proposed_contexts(rq_body):
        ok = [ts for ts in syntaxes if accept(abstract, ts)]
        results.append((cid, 0 if ok else 4, ok[0] if ok else syntaxes[0]))
    for cid, result, ts in results + (extra_contexts or []):
        items += _item(0x21, bytes([cid, 0, result, 0]) + _item(0x40, ts.encode()))
    user = _item(0x51, struct.pack(">L", max_pdu)) + _item(0x52, b"1.2.3.4") + _item(0x55, b"HOSTILE")
    items += _item(0x50, user)
    body = struct.pack(">HH", 1, 0) + rq_body[4:36] + bytes(32) + items
    return struct.pack(">BBL", 2, 0, len(body)) + body


def pdu_bytes(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def _cel(elem: int, value: bytes) -> bytes:
    """A command element (group 0000, Implicit VR LE, PS3.7 E.1)."""
    return struct.pack("<HHL", 0, elem, len(value)) + value


def _ui(uid: str) -> bytes:
    b = uid.encode()
    return b + b"\0" if len(b) % 2 else b


def _pdv(context_id: int, control: int, value: bytes) -> bytes:
    return struct.pack(">LBB", len(value) + 2, context_id, control) + value


def _command(body: bytes) -> bytes:
    return _cel(0x0000, struct.pack("<L", len(body))) + body


def store_rsp(message_id: int, context_id: int, status: int, sop_class: str = "",
              sop_instance: str = "") -> bytes:
    """A P-DATA-TF holding a C-STORE-RSP command set (Implicit VR LE, PS3.7 9.3.1.2)."""
    body = (_cel(0x0002, _ui(sop_class)) + _cel(0x0100, struct.pack("<H", 0x8001))
            + _cel(0x0120, struct.pack("<H", message_id)) + _cel(0x0800, struct.pack("<H", 0x0101))
            + _cel(0x0900, struct.pack("<H", status)) + _cel(0x1000, _ui(sop_instance)))
    return pdu_bytes(4, _pdv(context_id, 3, _command(body)))


def find_rsp(message_id: int, context_id: int, status: int, identifier: bytes | None = None) -> bytes:
    """A P-DATA-TF holding a C-FIND-RSP (PS3.7 9.3.2.2) and, when given, its identifier."""
    body = (_cel(0x0002, _ui("1.2.840.10008.5.1.4.31")) + _cel(0x0100, struct.pack("<H", 0x8020))
            + _cel(0x0120, struct.pack("<H", message_id))
            + _cel(0x0800, struct.pack("<H", 0x0101 if identifier is None else 0x0000))
            + _cel(0x0900, struct.pack("<H", status)))
    pdvs = _pdv(context_id, 3, _command(body))
    if identifier is not None:
        pdvs += _pdv(context_id, 2, identifier)
    return pdu_bytes(4, pdvs)


class Message:
    """One DIMSE message as a peer received it: PDU body sizes, PDV fragments (length, control),
    the command's Message ID and context, and the data set bytes."""

    def __init__(self) -> None:
        self.pdu_sizes: list[int] = []
        self.fragments: list[tuple[int, int]] = []
        self.message_id = 0
        self.context_id = 0
        self.data = bytearray()


def receive_message(conn: socket.socket) -> Message:
    """Read P-DATA-TF PDUs until the last fragment of the data set (PS3.8 E.2 control header)."""
    message = Message()
    while True:
        pdu_type, body = read_pdu(conn)
        assert pdu_type == 4, pdu_type
        message.pdu_sizes.append(len(body))
        offset = control = 0
        while offset < len(body):
            length, message.context_id, control = struct.unpack_from(">LBB", body, offset)
            message.fragments.append((length - 2, control))
            if control & 1:  # the command: Message ID (0000,0110) US
                at = body.index(b"\x00\x00\x10\x01", offset) + 8
                message.message_id = struct.unpack_from("<H", body, at)[0]
            else:
                message.data.extend(body[offset + 6:offset + 4 + length])
            offset += 4 + length
        if control == 2:
            return message


def store_and_release(conn: socket.socket, peer: HostilePeer, message: Message, status: int = 0) -> None:
    """Answer `message` with a C-STORE-RSP, then the device's A-RELEASE-RQ with an A-RELEASE-RP."""
    conn.sendall(store_rsp(message.message_id, message.context_id, status))
    pdu_type, _ = read_pdu(conn)
    peer.events.append(("pdu", pdu_type, b""))
    conn.sendall(pdu_bytes(6, bytes(4)))  # A-RELEASE-RP
    peer.wait_closed(conn)


class HostilePeer:
    """Accept connections on 127.0.0.1 and run `script(conn, peer)` on each, in a thread.

    `peer.events` records what the script saw (e.g. ("pdu", type)); `peer.errors` any exception.
    """

    def __init__(self, script: Callable[[socket.socket, HostilePeer], None], port: int | None = None) -> None:
        self.script = script
        self.port = port or free_port()
        self.events: list[Any] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(15)
        self._sock.close()

    concurrent = False  # True: each connection in a thread of its own (a retry meets a stall)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            if self.concurrent:
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()
            else:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.script(conn, self)
            except Exception as exc:  # recorded for the test to assert on
                self.errors.append(exc)

    def wait_closed(self, conn: socket.socket, timeout: float = 10.0) -> bool:
        """Read until the device closes; True if it did within `timeout` (records any PDUs)."""
        until = time.monotonic() + timeout
        while time.monotonic() < until and not self.stop.is_set():
            try:
                pdu_type, body = read_pdu(conn, max(0.05, until - time.monotonic()))
            except (TimeoutError, OSError):
                continue
            if pdu_type == 0:
                self.events.append(("closed",))
                return True
            self.events.append(("pdu", pdu_type, body))
        return False


class SlowArchive(HostilePeer):
    """A storage SCP that reads at `rate` bytes/s (a slow WAN link, a busy archive), answers every
    C-STORE with success, and A-RELEASE with A-RELEASE-RP. `stall_first` connections stop reading
    after their first P-DATA-TF and hold the socket open for `stall_s` (a peer that stops reading
    mid-PDU). `received_bytes` and `stored` (SOP Instance UIDs are not parsed: message IDs) let a
    test watch it; `rcvbuf` keeps the kernel from absorbing megabytes on its behalf."""

    concurrent = True

    def __init__(self, rate: float | None = None, stall_first: int = 0, stall_s: float = 0.0,
                 rcvbuf: int | None = None) -> None:
        self.rate = rate
        self.stall_left = stall_first
        self.stall_s = stall_s
        self.received_bytes = 0
        self.stored: list[int] = []
        self.stalls = 0
        super().__init__(self._session)
        if rcvbuf:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)

    def _session(self, conn: socket.socket, peer: HostilePeer) -> None:
        pdu_type, rq = read_pdu(conn)
        if pdu_type != 1:
            return
        conn.sendall(associate_ac(rq))
        stall = self.stall_left > 0
        self.stall_left -= 1 if stall else 0
        message = (0, 0)
        while not self.stop.is_set():
            pdu_type, body = read_pdu(conn, 30)
            self.received_bytes += len(body) + 6
            if stall and pdu_type == 4:
                self.stalls += 1
                self.stop.wait(self.stall_s)  # not reading: the device's sends must time out
                return
            if self.rate:
                time.sleep((len(body) + 6) / self.rate)
            if pdu_type == 5:
                conn.sendall(pdu_bytes(6, bytes(4)))
                return
            if pdu_type != 4:
                return
            offset = 0
            while offset + 6 <= len(body):
                length, context_id, control = struct.unpack_from(">LBB", body, offset)
                value = body[offset + 6:offset + 4 + length]
                if control & 1:
                    message = (_message_id(value), context_id)
                elif control & 2:
                    self.stored.append(message[0])
                    conn.sendall(store_rsp(message[0], message[1], 0))
                offset += 4 + length


def _message_id(command: bytes) -> int:
    """Message ID (0000,0110) of an Implicit VR LE command set."""
    offset = 0
    while offset + 8 <= len(command):
        group, elem, length = struct.unpack_from("<HHL", command, offset)
        if (group, elem) == (0, 0x0110):
            return int(struct.unpack_from("<H", command, offset + 8)[0])
        offset += 8 + length
    return 0


# -- test inputs and the device under test ------------------------------------------------------


def make_sc(path: Path, rows: int = 64, cols: int = 64, seed: int = 0) -> Path:
    """A Secondary Capture Part 10 file (Explicit VR LE, 16-bit random pixels) made with pydicom."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "TEST^NET"
    ds.PatientID = "NET1"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    pixels = np.random.default_rng(seed).integers(0, 65535, (rows, cols), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# The heap the device's send and echo jobs are held to (the network stack's bound; the whole device
# gets the smallest board's budget, boards/README.md): every such job in the tests runs with it.
DEVICE_HEAP = "64k"


def run_device(job: str, args: list[str], runtime: str = "micropython", heap: str | None = DEVICE_HEAP,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run firmware job `send`/`echo` on `runtime`: on MicroPython, the board's firmware image with
    the smallest board's heap, unless told otherwise."""
    import sys

    root = Path(__file__).resolve().parents[1]
    if str(root / "host") not in sys.path:
        sys.path.insert(0, str(root / "host"))
    from modgate_host.runtimes import firmware_process

    argv, env = firmware_process(runtime, job, *args, heap=heap)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
