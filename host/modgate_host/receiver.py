"""A validating Storage SCP (pynetdicom): stores each object as it arrives, then checks it.

The C-STORE response (PS3.7 9.3.1) goes back as soon as the file is on disk; validation
(modgate_host.validation: pydicom structure checks and dciodvfy) runs on a worker thread so a
slow check never stalls the sender. Every object becomes a `Received` record; `wait_for(uid)`
lets `modgate verify` confirm that a test pattern arrived.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # PS3.4 Table B.2-1: Refused, out of resources


@dataclass
class Received:
    when: str
    calling_aet: str
    sop_class_uid: str
    sop_instance_uid: str
    path: Path
    size: int
    checked: bool = False
    ok: bool | None = None  # None while not validated (or validation off)
    problems: list[str] = field(default_factory=list)


Validator = Callable[[Path], tuple[bool, list[str]]]


def default_validator(path: Path) -> tuple[bool, list[str]]:
    from modgate_host.validation import validate_file

    verdict = validate_file(path)
    return verdict.ok, verdict.errors + verdict.warnings


def safe_name(uid: str) -> str:
    """A file name from a UID; anything but digits and dots is replaced (the UID came off the wire)."""
    cleaned = "".join(c if c.isdigit() or c == "." else "_" for c in uid)[:64].strip(".")
    return cleaned or "unnamed"


class Receiver:
    def __init__(
        self,
        aet: str,
        port: int,
        out_dir: Path,
        validate: bool = True,
        host: str = "127.0.0.1",
        validator: Validator | None = None,
        on_update: Callable[[Received], None] | None = None,
    ) -> None:
        self.aet = aet
        self.port = port
        self.host = host
        self.out_dir = Path(out_dir)
        self.validate = validate
        self.validator = validator or default_validator
        self.on_update = on_update
        self.received: list[Received] = []
        self._lock = threading.Condition()
        self._work: queue.Queue[Received | None] = queue.Queue()
        self._server: Any = None
        self._worker: threading.Thread | None = None

    def start(self) -> Receiver:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.aet)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_pdu_size = 0  # no limit: let the sender use its largest PDUs
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store)]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self._worker = threading.Thread(target=self._validate_loop, daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._work.put(None)
            self._worker.join(timeout=30)
            self._worker = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_store(self, event: Any) -> int:
        request = event.request
        uid = str(request.AffectedSOPInstanceUID)
        path = self.out_dir / (safe_name(uid) + ".dcm")
        try:
            data = event.encoded_dataset(include_meta=True)
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError:
            return STATUS_OUT_OF_RESOURCES
        record = Received(
            when=dt.datetime.now().strftime("%H:%M:%S"),
            calling_aet=str(event.assoc.requestor.ae_title).strip(),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=uid,
            path=path,
            size=len(data),
        )
        with self._lock:
            self.received.append(record)
            self._lock.notify_all()
        if self.validate:
            self._work.put(record)
        else:
            self._publish(record)
        return STATUS_SUCCESS

    def _validate_loop(self) -> None:
        while True:
            record = self._work.get()
            if record is None:
                return
            try:
                ok, problems = self.validator(record.path)
            except Exception as exc:  # a validator crash is a finding about the file, not the end
                ok, problems = False, [f"validator failed: {exc}"]
            with self._lock:
                record.ok, record.problems, record.checked = ok, problems, True
                self._lock.notify_all()
            self._publish(record)

    def _publish(self, record: Received) -> None:
        if self.on_update is not None:
            self.on_update(record)

    def wait_for(self, sop_instance_uid: str, timeout_s: float, checked: bool = True) -> Received | None:
        """The record of `sop_instance_uid` once it arrived (and was validated), or None on timeout."""
        until = time.monotonic() + timeout_s
        with self._lock:
            while True:
                for record in self.received:
                    if record.sop_instance_uid == sop_instance_uid and (
                        record.checked or not checked or not self.validate
                    ):
                        return record
                left = until - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def wait_count(self, count: int, timeout_s: float) -> bool:
        until = time.monotonic() + timeout_s
        with self._lock:
            while sum(1 for r in self.received if r.checked or not self.validate) < count:
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True
