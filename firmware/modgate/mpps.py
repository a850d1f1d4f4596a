"""Modality Performed Procedure Steps on the device (PS3.4 F.7; IHE RAD-6, RAD-7): one step per
study session (modgate.contexts), queued on flash like the objects and sent in order by the
`mpps` task: N-CREATE IN PROGRESS when the study's first acquisition starts, N-SET COMPLETED
(console `study end`, a new study, or `study_timeout_s` without acquisitions) or DISCONTINUED
with a reason (`study discontinue REASON`), listing every object of the study in the Performed
Series Sequence, once none of its series is still open.

Flash layout, in STATE/mpps/ (docs/spool.md, "Procedure steps"): per step
- `<id>.m`: its log, one JSON array a line, each appended and synced:
  ["H", {the step's attributes}] written when the study starts, before its first object is
  acknowledged; ["C"] the N-CREATE was answered with success; ["E", status, reason, comments,
  end time] the step ended; ["X", why] refused for good (kept for an operator; `queue retry
  mpps` sends it again); ["Q"] sent again by an operator. After the N-SET's success both files
  are removed.
- `<id>.r`: the study's objects, one line [series UID, SOP Class UID, SOP Instance UID, series
  description] each, appended when the object is committed to the spool.
A power cut between an object's commit and its line can lose only the newest object: recover()
adds it back from the spool. An N-CREATE repeated after a lost answer is answered 0111 (the
instance exists under the UID the device made: done); an N-SET repeated so, A710 (the step is
final already: done too).
"""

import json

from modgate import log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.errors import DeliveryError, ModgateError
from modgate.port import aio, clock, fs
from modgate.spool import backoff, entrylog

FOLDER = "mpps"
BUFFER_KEY = "@mpps"  # its PDU buffer among the destinations' (no destination name has "@")
POLL_MS = 500
MAX_SERIES = 64  # series listed per step (one per source connection and study, or per cine)
_SRC = "mpps"
# A step in RAM: a list, one per step on flash.
_ID = 0
_STUDY = 1
_CREATED = 2
_END = 3  # None, or [status, reason, comments, end]
_FLAG = 4  # None, or why it was refused for good
_RETRY = 5  # ticks of the next try, or None
_ATTEMPTS = 6
_MAYBE_SET = 7  # an N-SET may have been taken without its answer reaching us (A710 then: done)
_REFS = 8


class Steps:
    def __init__(self, device):
        self.device = device
        self.folder = fs.join(device.state_dir, FOLDER)
        self.steps = []
        self.next_id = 1
        self.last_error = None
        self.done = 0

    # ---- boot ----------------------------------------------------------------------------------

    def recover(self, spool):
        fs.makedirs(self.folder)
        top = 0
        for name in fs.listdir(self.folder):
            stem = name.split(".")[0]
            if not stem.isdigit() or name[len(stem):] not in (".m", ".r", ".tmp"):
                log.warn(_SRC, "ignoring %s/%s: not a step file" % (self.folder, name))
                continue
            number = int(stem)
            top = number if number > top else top
            if name.endswith(".tmp"):
                fs.remove(fs.join(self.folder, name))
            elif name.endswith(".m"):
                self._load(number)
            elif not fs.exists(self._path(number, ".m")):
                fs.remove(fs.join(self.folder, name))  # its step was done; the removal was cut short
        self.steps.sort(key=_step_id)
        self.next_id = top + 1
        self._newest_object(spool)
        if self.steps:
            log.info(_SRC, "%d procedure step(s) queued" % len(self.steps))

    def _load(self, number):
        step = [number, None, False, None, None, None, 0, False, 0]
        for op in entrylog.lines(self._path(number, ".m")):
            if op[0] == "H" and isinstance(op[1], dict):
                step[_STUDY] = op[1].get("study_instance_uid")
            elif op[0] == "C":
                step[_CREATED] = True
            elif op[0] == "E" and len(op) == 5:
                step[_END] = op[1:]
                step[_MAYBE_SET] = True  # the last boot may have sent the N-SET
            elif op[0] == "X" and len(op) == 2:
                step[_FLAG] = op[1]
            elif op[0] == "Q":
                step[_FLAG] = None
        if step[_STUDY] is None:
            log.error(_SRC, "step %d: log without its header; kept for service" % number)
            step[_FLAG] = "log damaged"
        step[_REFS] = _count_lines(self._path(number, ".r"))
        self.steps.append(step)

    def _newest_object(self, spool):
        """The newest object may have been committed without its line (a power cut between the
        two): it is the one object that can be missing, so only it is looked at."""
        newest = spool.newest()
        if newest is None:
            return
        uid, meta = spool.identity(newest)
        step = self._open(meta.get("study_uid"))
        if step is None or not uid:
            return
        if uid not in _tail(self._path(step[_ID], ".r")):
            self._append_ref(step, [meta.get("series_uid") or "", meta.get("sop_class_uid") or "", uid, ""])
            log.info(_SRC, "step %d: object %s added back after a restart" % (step[_ID], uid))

    # ---- hooks: the study session and the acquisition ------------------------------------------

    def started(self, context, modality):
        """A new study session starts with `context` (modgate.contexts): end the one before,
        open its step on flash. Returns what its objects carry of it (PS3.3 C.7.3.1: Referenced
        Performed Procedure Step Sequence, Performed Procedure Step ID, Start Date and Time)."""
        for step in self.steps:
            if step[_END] is None and step[_STUDY] != context["study_instance_uid"]:
                self.end(step[_STUDY], "COMPLETED", "", "a new study started")
        device = self.device
        cfg = device.config
        now = context.get("now") or clock.now()
        uid = device.uid_gen.new()
        number = self.next_id
        self.next_id += 1
        request = _items(context.get("request_attributes")) or [[]]
        given = {}
        for tag, _vr, value in request[0]:
            given[tag] = value
        description = given.get(0x00400007) or context.get("study_description") or ""
        pps = {
            "uid": uid,
            "pps_id": "%d.%d" % (device.boot_count % 100000, number % 10000000),
            "start": list(now[:6]),
            "tz": context.get("tz") or "+0000",
            "ae_title": cfg.get("ae_title"),
            "station_name": context.get("station_name") or "",
            "modality": modality,
            "study_instance_uid": context["study_instance_uid"],
            "request": request[0],
            "description": description,
            "type_description": given.get(0x00321060) or "",
            "protocol": description or context.get("series_description") or "modgate acquisition",
        }
        for key in ("patient_name", "patient_id", "issuer_of_patient_id", "patient_birth_date", "patient_sex",
                    "accession_number", "study_id", "referenced_studies", "procedure_codes",
                    "performed_protocol_codes"):
            if context.get(key):
                pps[key] = _items(context[key]) if key in _SEQUENCE_KEYS else context[key]
        entrylog.append(self._path(number, ".m"), ["H", pps])
        self.steps.append([number, pps["study_instance_uid"], False, None, None, None, 0, False, 0])
        log.info(_SRC, "step %d (%s) in progress for study %s" % (number, uid, pps["study_instance_uid"]))
        from modgate.dicom.attrs import local_time
        from modgate.dicom.workflow import MPPS

        t = local_time(now, pps["tz"])
        return {"referenced_pps": _encoded([[(0x00081150, "UI", MPPS), (0x00081155, "UI", uid)]]),
                "pps_id": pps["pps_id"],
                "pps_start_date": "%04d%02d%02d" % (t[0], t[1], t[2]),
                "pps_start_time": "%02d%02d%02d" % (t[3], t[4], t[5])}

    def committed(self, uid, meta, context):
        """An object of a study was committed to the spool (the acquisition's hook)."""
        step = self._open(context.get("study_instance_uid"))
        if step is not None:
            self._append_ref(step, [meta.get("series_uid") or "", meta.get("sop_class_uid") or "", uid,
                                    context.get("series_description") or ""])

    def end(self, study_uid, status, reason, comments):
        """End the step of study `study_uid` (console, or a new study): False when none is open."""
        step = self._open(study_uid)
        if step is None:
            return False
        end = list(clock.now()[:6])
        entrylog.append(self._path(step[_ID], ".m"), ["E", status, reason, comments, end])
        step[_END] = [status, reason, comments, end]
        log.info(_SRC, "step %d %s (%s)%s" % (step[_ID], status.lower(), comments or reason or "-",
                                              "" if step[_CREATED] else "; not created yet"))
        return True

    def open_study(self):
        """The Study Instance UID of the newest step still in progress, or None: after a restart
        the study session is gone from RAM, and `study end` means the step that was open."""
        for step in reversed(self.steps):
            if step[_END] is None:
                return step[_STUDY]
        return None

    def expire(self, study_uid, idle_ms, timeout_ms):
        """The study session went quiet for `study_timeout_s`: its step completes."""
        if timeout_ms and idle_ms >= timeout_ms and self._open(study_uid) is not None:
            self.end(study_uid, "COMPLETED", "", "no acquisition for study_timeout_s")
            return True
        return False

    def _open(self, study_uid):
        if not study_uid:
            return None
        for step in self.steps:
            if step[_STUDY] == study_uid and step[_END] is None:
                return step
        return None

    def _append_ref(self, step, line):
        entrylog.append(self._path(step[_ID], ".r"), line)
        step[_REFS] += 1

    # ---- the task ------------------------------------------------------------------------------

    async def run(self, beat):
        device = self.device
        while device.config.get("mpps_scp"):
            beat()
            device.expire_study()
            step = self._next()
            if step is None or not device.online:
                await aio.sleep_ms(POLL_MS)
                continue
            await self._work(step, beat)
            device.settle_heap()

    def _next(self, now=None):
        """The oldest step with work to do, if its time has come (steps go strictly in order)."""
        now = ticks_ms() if now is None else now
        for step in self.steps:
            if step[_FLAG] is not None:
                continue
            if step[_CREATED] and (step[_END] is None or self.device.study_open(step[_STUDY])):
                continue  # created; the N-SET waits for the end and for the study's open series
            if step[_RETRY] is not None and ticks_diff(step[_RETRY], now) > 0:
                return None
            return step
        return None

    async def _work(self, step, beat):
        from modgate.net import status as statuses
        from modgate.net.mpps import MppsSession

        creating = not step[_CREATED]
        path = self._path(step[_ID], ".tmp")
        what = "N-CREATE" if creating else "N-SET"
        session = None
        try:
            pps = self._header(step)
            f = fs.open_file(path, "wb")
            try:
                self._write(f, step, pps, creating)
            finally:
                f.close()
            session = MppsSession(_scp(self.device.config.get("mpps_scp")), self.device.mpps_settings())
            session.on_progress = beat
            beat()
            if not creating:
                step[_MAYBE_SET] = True
            if creating:
                status, comment = await session.create(path, pps["uid"])
            else:
                status, comment = await session.set(path, pps["uid"])
            klass, meaning = statuses.classify(status, statuses.MPPS_CLASSES)
            if status == 0xA710 and step[_MAYBE_SET] and not creating:
                klass, meaning = statuses.WARNING, "final already: an earlier N-SET was taken"
            text = "0x%04X %s%s" % (status, meaning, ": " + comment if comment else "")
            if klass in (statuses.SUCCESS, statuses.WARNING):
                if klass == statuses.WARNING:
                    log.warn(_SRC, "step %d: %s answered %s" % (step[_ID], what, text))
                self._succeeded(step, creating)
                return
            if klass == statuses.PERMANENT:
                self._refused(step, what + " refused: " + text)
                return
            raise DeliveryError(what + " answered " + text, True)
        except (ModgateError, OSError, MemoryError) as exc:
            self._failed(step, what, exc)
        finally:
            if session is not None:
                try:
                    await session.release()
                except (ModgateError, OSError):
                    session.drop()
            fs.remove(path)

    def _write(self, f, step, pps, creating):
        from modgate.dicom import workflow

        if creating:
            workflow.mpps_create(f, pps)
            return
        status, reason, comments, end = step[_END]
        series, charset = self._series(step)
        refs = self._series_refs(step, series, pps)
        workflow.mpps_set(f, pps, status, end, reason, comments, refs, charset)

    def _series(self, step):
        """[(Series Instance UID, description)] in the order first seen, and whether a
        description is not ASCII: one pass over the step's objects."""
        found = []
        charset = False
        for line in entrylog.lines(self._path(step[_ID], ".r")):
            if len(line) != 4:
                continue
            if not [s for s in found if s[0] == line[0]]:
                if len(found) >= MAX_SERIES:
                    log.warn(_SRC, "step %d: more than %d series; the rest are not listed" % (
                        step[_ID], MAX_SERIES))
                    break
                found.append((line[0], line[3]))
                charset = charset or _not_ascii(line[3])
        return found, charset

    def _series_refs(self, step, series, pps):
        for series_uid, description in series:
            protocol = pps.get("protocol") or "modgate acquisition"
            yield series_uid, description, protocol, self._refs(step, series_uid)

    def _refs(self, step, series_uid):
        for line in entrylog.lines(self._path(step[_ID], ".r")):
            if len(line) == 4 and line[0] == series_uid:
                yield line[1], line[2]

    def _succeeded(self, step, creating):
        step[_RETRY] = None
        step[_ATTEMPTS] = 0
        self.last_error = None
        if creating:
            entrylog.append(self._path(step[_ID], ".m"), ["C"])
            step[_CREATED] = True
            log.info(_SRC, "step %d created at the MPPS SCP" % step[_ID])
            return
        status = step[_END][0]
        fs.remove(self._path(step[_ID], ".r"))
        fs.remove(self._path(step[_ID], ".m"))
        self.steps.remove(step)
        self.done += 1
        log.info(_SRC, "step %d %s at the MPPS SCP with %d object(s)" % (
            step[_ID], status.lower(), step[_REFS]))

    def _refused(self, step, why):
        entrylog.append(self._path(step[_ID], ".m"), ["X", why[:200]])
        step[_FLAG] = why
        self.last_error = why
        log.error(_SRC, "step %d: %s; kept for an operator (queue retry mpps)" % (step[_ID], why))

    def _failed(self, step, what, exc):
        step[_ATTEMPTS] += 1
        cfg = self.device.config
        delay = backoff.delay_ms(step[_ATTEMPTS], cfg.get("retry_base_ms"), cfg.get("retry_max_ms"), 0.2)
        step[_RETRY] = ticks_add(ticks_ms(), delay)
        self.last_error = "%s: %s" % (what, exc)
        log.warn(_SRC, "step %d: %s failed (%s); again in %d ms" % (step[_ID], what, exc, delay))

    # ---- console -------------------------------------------------------------------------------

    def retry(self):
        """Send the refused steps again (`queue retry mpps`); how many."""
        count = 0
        for step in self.steps:
            if step[_FLAG] is not None and step[_STUDY] is not None:
                entrylog.append(self._path(step[_ID], ".m"), ["Q"])
                step[_FLAG] = None
                step[_RETRY] = None
                step[_ATTEMPTS] = 0
                count += 1
        return count

    def list(self):
        out = []
        for step in self.steps:
            end = step[_END]
            out.append({"id": step[_ID], "study_uid": step[_STUDY], "created": step[_CREATED],
                        "status": end[0] if end else "IN PROGRESS", "objects": step[_REFS],
                        "waiting": self._waiting(step), "refused": step[_FLAG]})
        return out

    def _waiting(self, step):
        if step[_FLAG] is not None:
            return "operator"
        if not step[_CREATED]:
            return "N-CREATE"
        if step[_END] is None:
            return "study end"
        if self.device.study_open(step[_STUDY]):
            return "open series"
        return "N-SET"

    def status(self):
        pending = 0
        refused = 0
        in_progress = 0
        for step in self.steps:
            if step[_FLAG] is not None:
                refused += 1
            elif not step[_CREATED] or step[_END] is not None:
                pending += 1
            if step[_END] is None:
                in_progress += 1
        return {"scp": self.device.config.get("mpps_scp"), "in_progress": in_progress, "pending": pending,
                "refused": refused, "done": self.done, "last_error": self.last_error}

    # ---- files -----------------------------------------------------------------------------------

    def _path(self, number, suffix):
        return fs.join(self.folder, "%010d%s" % (number, suffix))

    def _header(self, step):
        for op in entrylog.lines(self._path(step[_ID], ".m")):
            if op[0] == "H":
                return op[1]
        raise ModgateError("step %d: its log has no header" % step[_ID])


def _scp(text):
    aet, _, where = text.partition("@")
    host, _, port = where.rpartition(":")
    return {"aet": aet, "host": host, "port": int(port)}


def _step_id(step):
    return step[_ID]


def _count_lines(path):
    count = 0
    for _ in entrylog.lines(path):
        count += 1
    return count


def _tail(path):
    """The SOP Instance UIDs of the last few object lines (a small read from the end)."""
    try:
        size = fs.size(path)
        f = fs.open_file(path, "rb")
    except OSError:
        return []
    try:
        f.seek(size - 1024 if size > 1024 else 0)
        lines = f.read(1024).split(b"\n")
    finally:
        f.close()
    out = []
    for line in lines:
        try:
            op = json.loads(line.decode())
        except ValueError:
            continue
        if isinstance(op, list) and len(op) == 4:
            out.append(op[2])
    return out


def _not_ascii(text):
    for ch in text or "":
        if ord(ch) > 127:
            return True
    return False


# Context keys whose values are sequences, encoded as the object writer takes them (base64 of
# Explicit VR items: modgate.dicom.mwl.context_of); a procedure step keeps them as items.
_SEQUENCE_KEYS = ("referenced_studies", "procedure_codes", "performed_protocol_codes")


def _items(value):
    if not value:
        return []
    import binascii

    from modgate.dicom import dataset

    return dataset.decode_items(value if isinstance(value, bytes) else binascii.a2b_base64(value))


def _encoded(items):
    import binascii

    from modgate.dicom import dataset

    out = bytearray()
    dataset.encode_items(out, items, True)
    return binascii.b2a_base64(out).decode().strip()
