"""The Modality Worklist on the device: the query (what is asked, from settings), the cache on
flash that survives reboots and serves while the SCP or the network is away, the selection of
an item for the next acquisitions, and the `worklist` task that refreshes it (jobs/run.py).

Flash layout, in STATE/worklist/:
- `items.jsonl`: the cached worklist. Its first line is a header (when, from whom, how many),
  padded to HEADER_BYTES; then one JSON object per item, in the order the SCP sent them. A
  refresh writes `new.jsonl` beside it (and each match's raw identifier to `new.raw`, decoded
  as soon as it is complete) and replaces the cache by one rename only when the query ended
  well: a failed, aborted or stalled query leaves the cached list as it was.
- `selected.json`: the item chosen with `worklist select N` (a copy: a refresh that drops it
  from the list does not change the patient of an exam under way).

Items are decoded in their Specific Character Set (modgate.dicom.charset); one whose text could
not be decoded exactly is listed with its bytes escaped and cannot be selected. The attribute
mapping into objects and the query keys are documented in docs/conformance-statement.md.
"""

import json

from modgate import log
from modgate.compat import deadline, remaining_ms, ticks_diff, ticks_ms
from modgate.dicom import charset, dataset
from modgate.errors import DecodeError, ModgateError
from modgate.port import aio, clock, fs

FOLDER = "worklist"
HEADER_BYTES = 320
BUFFER_KEY = "@worklist"  # its PDU buffer among the destinations' (no destination name has "@")
POLL_MS = 500
RETRY_MS = 60000  # after a failed refresh, the next automatic one
LIST_PAGE = 20

# key, tag, VR, level (0: the worklist item, 1: its Scheduled Procedure Step, (0040,0100)):
# the return keys of the query (IHE RAD TF-2 RAD-5, PS3.4 K.6.1.2.2) and the fields of a
# cached item. Tags ascend within each level, as the identifier needs them (PS3.5 7.1).
FIELDS = (
    ("accession_number", 0x00080050, "SH", 0),
    ("referring_physician", 0x00080090, "PN", 0),
    ("referenced_studies", 0x00081110, "SQ", 0),
    ("patient_name", 0x00100010, "PN", 0),
    ("patient_id", 0x00100020, "LO", 0),
    ("issuer_of_patient_id", 0x00100021, "LO", 0),
    ("patient_birth_date", 0x00100030, "DA", 0),
    ("patient_sex", 0x00100040, "CS", 0),
    ("study_instance_uid", 0x0020000D, "UI", 0),
    ("requested_procedure_description", 0x00321060, "LO", 0),
    ("requested_procedure_codes", 0x00321064, "SQ", 0),
    ("requested_procedure_id", 0x00401001, "SH", 0),
    ("modality", 0x00080060, "CS", 1),
    ("station_aet", 0x00400001, "AE", 1),
    ("scheduled_date", 0x00400002, "DA", 1),
    ("scheduled_time", 0x00400003, "TM", 1),
    ("performing_physician", 0x00400006, "PN", 1),
    ("scheduled_step_description", 0x00400007, "LO", 1),
    ("scheduled_protocol_codes", 0x00400008, "SQ", 1),
    ("scheduled_step_id", 0x00400009, "SH", 1),
)
SPS_SEQUENCE = 0x00400100
SPECIFIC_CHARACTER_SET = 0x00080005
_CODE = {0x00080100: True, 0x00080102: True, 0x00080103: True, 0x00080104: True}
_STUDY = {0x00081150: True, 0x00081155: True}
_TEXT = ("PN", "LO", "SH", "LT", "ST", "UC", "UT")
# What `worklist list` shows of each item (the full item: `worklist show N`).
_ROW = (("patient_name", "patient_name"), ("patient_id", "patient_id"), ("birth_date", "patient_birth_date"),
        ("sex", "patient_sex"), ("accession", "accession_number"), ("step_id", "scheduled_step_id"),
        ("date", "scheduled_date"), ("time", "scheduled_time"), ("modality", "modality"),
        ("description", "scheduled_step_description"))


def _wanted():
    sps = {}
    top = {SPECIFIC_CHARACTER_SET: True, SPS_SEQUENCE: sps}
    for key, tag, vr, level in FIELDS:
        sub = True if vr != "SQ" else (_STUDY if tag == 0x00081110 else _CODE)
        (sps if level else top)[tag] = sub
    return top


# ---- the query ---------------------------------------------------------------------------------


def parse_scp(text):
    """{"aet", "host", "port"} of a worklist_scp setting "AET@HOST:PORT" (validated by config)."""
    aet, _, where = text.partition("@")
    host, _, port = where.rpartition(":")
    return {"aet": aet, "host": host, "port": int(port)}


def query_date(spec, offset_minutes):
    """The Scheduled Procedure Step Start Date matching key of a worklist_date setting: "today",
    "today-1..today+2", "20260102", "20260101..20260131"; "*" is universal (empty)."""
    if spec in ("", "*"):
        return ""
    days = []
    for word in spec.split(".."):
        if word.startswith("today"):
            if not clock.is_set():
                raise ModgateError("the device clock is not set, so 'today' is unknown: set it (time set) "
                                   "or give worklist_date as dates")
            y, m, d = clock.local_date(offset_minutes, int(word[5:] or "0"))
            word = "%04d%02d%02d" % (y, m, d)
        days.append(word)
    return days[0] if len(days) == 1 or days[0] == days[1] else days[0] + "-" + days[1]


def query_keys(station_aet, modality, date):
    """The C-FIND identifier: every return key empty but the three matching keys (PS3.4
    K.6.1.2.2; empty sequences are universal: their items come back whole, C.2.2.2.6)."""
    sps = []
    top = []
    for key, tag, vr, level in FIELDS:
        value = [] if vr == "SQ" else ""
        if key == "station_aet":
            value = station_aet
        elif key == "modality":
            value = modality
        elif key == "scheduled_date":
            value = date
        (sps if level else top).append((tag, vr, value))
    top.append((SPS_SEQUENCE, "SQ", [sps]))
    top.sort(key=lambda e: e[0])
    return top


# ---- decoding a match --------------------------------------------------------------------------


def _text(raw, vr, charsets):
    if raw is None:
        return "", True
    # Padding (a space, or NUL after a UID) and insignificant spaces go before decoding (PS3.5 6.2).
    return charset.decode(bytes(raw).strip(b" \x00"), charsets if vr in _TEXT else [])


def _codes(items, charsets):
    out = []
    exact = True
    for item in items or ():
        code = []
        for tag in (0x00080100, 0x00080102, 0x00080103, 0x00080104):
            text, ok = _text(item.get(tag), "LO" if tag == 0x00080104 else "SH", charsets)
            code.append(text)
            exact = exact and ok
        if code[0]:
            out.append(code)
    return out, exact


def record(ds):
    """The cached item (a JSON-able dict) of one decoded identifier (dataset.read with WANTED)."""
    raw_charset = ds.get(SPECIFIC_CHARACTER_SET)
    charsets = charset.terms(raw_charset)
    steps = ds.get(SPS_SEQUENCE) or [{}]
    rec = {}
    exact = True
    for key, tag, vr, level in FIELDS:
        where = steps[0] if level else ds
        if tag == 0x00081110:
            studies = []
            for item in where.get(tag) or ():
                studies.append([_text(item.get(t), "UI", [])[0] for t in (0x00081150, 0x00081155)])
            rec[key] = studies
            continue
        if vr == "SQ":
            rec[key], ok = _codes(where.get(tag), charsets)
        else:
            rec[key], ok = _text(where.get(tag), vr, charsets)
        exact = exact and ok
    rec["charset"] = "\\".join(charsets)
    if not exact:
        rec["escaped"] = True
    if len(steps) > 1:
        rec["steps"] = len(steps)  # PS3.4 K.6.1.2.2: one step per match; the first is used
    return rec


# ---- into objects: IHE RAD TF-2x Table A.1-2 (MWL attributes in the images) -------------------

# Flat context fields of an acquisition taken from an item (context key, item key).
_CONTEXT = (("patient_name", "patient_name"), ("patient_id", "patient_id"),
            ("issuer_of_patient_id", "issuer_of_patient_id"), ("patient_birth_date", "patient_birth_date"),
            ("patient_sex", "patient_sex"), ("accession_number", "accession_number"),
            ("referring_physician", "referring_physician"), ("study_instance_uid", "study_instance_uid"),
            ("study_description", "requested_procedure_description"), ("study_id", "requested_procedure_id"))


def _code_items(codes):
    """Code Sequence Macro items (PS3.3 Table 8.8-1) of [[value, scheme, version, meaning]]."""
    items = []
    for value, scheme, version, meaning in codes:
        item = [(0x00080100, "SH", value), (0x00080102, "SH", scheme)]
        if version:
            item.append((0x00080103, "SH", version))
        item.append((0x00080104, "LO", meaning))
        items.append(item)
    return items


def context_of(rec):
    """The acquisition context fields an item gives (modgate.contexts): patient, study, and the
    sequences the objects carry (modgate.dicom.attrs: Request Attributes, Procedure Code,
    Referenced Study, Performed Protocol Code)."""
    ctx = {}
    for key, source in _CONTEXT:
        if rec.get(source):
            ctx[key] = rec[source]
    request = []  # Request Attributes Macro (PS3.3 Table 10-9), ascending tags, empty ones left out
    for tag, vr, value in ((0x00080050, "SH", rec.get("accession_number")),
                           (0x0020000D, "UI", rec.get("study_instance_uid")),
                           (0x00321060, "LO", rec.get("requested_procedure_description")),
                           (0x00321064, "SQ", _code_items(rec.get("requested_procedure_codes") or ())),
                           (0x00400007, "LO", rec.get("scheduled_step_description")),
                           (0x00400008, "SQ", _code_items(rec.get("scheduled_protocol_codes") or ())),
                           (0x00400009, "SH", rec.get("scheduled_step_id")),
                           (0x00401001, "SH", rec.get("requested_procedure_id"))):
        if value:
            request.append((tag, vr, value))
    ctx["request_attributes"] = [request]
    if rec.get("requested_procedure_codes"):
        ctx["procedure_codes"] = _code_items(rec["requested_procedure_codes"])
    if rec.get("scheduled_protocol_codes"):
        # As scheduled: the device cannot know that another protocol was performed.
        ctx["performed_protocol_codes"] = _code_items(rec["scheduled_protocol_codes"])
    studies = [[(0x00081150, "UI", c), (0x00081155, "UI", i)] for c, i in rec.get("referenced_studies") or ()
               if c and i]
    if studies:
        ctx["referenced_studies"] = studies
    return ctx


def _item_problem(items):
    from modgate.dicom import vr as vrs

    for item in items:
        for tag, vr, value in item:
            why = _item_problem(value) if vr == "SQ" else vrs.problem(vr, value)
            if why:
                return "(%04X,%04X) %s" % (tag >> 16, tag & 0xFFFF, why)
    return None


def problem(rec):
    """Why item `rec` cannot go into objects, or None: a value the objects' rules refuse
    (modgate.dicom.vr: refused, never changed), or text that could not be decoded."""
    from modgate.dicom import vr

    if rec.get("escaped"):
        return ("character set '%s' cannot be decoded here: its bytes are shown escaped; enter the "
                "patient by hand (patient next)" % rec.get("charset", ""))
    ctx = context_of(rec)
    for key, _ in _CONTEXT:
        value = ctx.get(key)
        if value:
            why = vr.field_problem(key, value) if vr.field_vr(key) else vr.problem("LO", value)
            if why:
                return why
    for key in ("request_attributes", "procedure_codes", "performed_protocol_codes", "referenced_studies"):
        why = _item_problem(ctx.get(key) or ())
        if why:
            return key + ": " + why
    return None


class _Staging:
    """A refresh in progress (the FindSession's sink, see net/find.py); commit() replaces the
    cache, abandon() leaves it untouched."""

    def __init__(self, folder, wanted):
        self.folder = folder
        self.wanted = wanted
        self.path = fs.join(folder, "new.jsonl")
        self.raw_path = fs.join(folder, "new.raw")
        self.items = fs.open_file(self.path, "wb")
        self.items.write(b" " * (HEADER_BYTES - 1) + b"\n")  # the header's place, written last
        self.raw = fs.open_file(self.raw_path, "w+b")
        self.size = 0
        self.count = 0
        self.skipped = 0
        self.explicit = True

    def begin(self, explicit):
        self.explicit = explicit

    def write(self, fragment):
        self.raw.write(fragment)
        self.size += len(fragment)

    def discard(self):
        if self.size:
            self.raw.seek(0)
            self.size = 0

    def end_match(self):
        size = self.size
        self.size = 0
        raw = self.raw
        try:
            raw.seek(0)
            rec = record(dataset.read(raw, size, self.explicit, self.wanted))
        except DecodeError:
            self.skipped += 1
            raise
        finally:
            raw.seek(0)
        self.items.write(json.dumps(rec).encode() + b"\n")
        self.count += 1

    def commit(self, header, target):
        line = json.dumps(header).encode()
        if len(line) >= HEADER_BYTES:
            raise ModgateError("worklist header too long")
        self.items.seek(0)
        self.items.write(line)
        fs.sync_file(self.items)
        self.items.close()
        self.raw.close()
        fs.rename(self.path, target)
        fs.sync_dir(self.folder)
        fs.remove(self.raw_path)

    def abandon(self):
        for f in (self.items, self.raw):
            try:
                f.close()
            except OSError:
                pass
        fs.remove(self.path)
        fs.remove(self.raw_path)


def _lines(path):
    """(index, line bytes) of the items of a cache file, the header skipped."""
    try:
        f = fs.open_file(path, "rb")
    except OSError:
        return
    try:
        f.readline()
        n = 0
        while True:
            line = f.readline()
            if not line:
                return
            n += 1
            yield n, line
    finally:
        f.close()


def _now_iso():
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tuple(clock.now()[:6])


class Worklist:
    """The device's worklist (see the module docstring). `device` gives config, online,
    network_settings(), pdu_buffers and task_bound_ms()."""

    def __init__(self, device):
        self.device = device
        self.folder = fs.join(device.state_dir, FOLDER)
        fs.makedirs(self.folder)
        self.path = fs.join(self.folder, "items.jsonl")
        for name in ("new.jsonl", "new.raw"):
            fs.remove(fs.join(self.folder, name))  # a refresh cut short by a reset
        self.header = self._read_header()
        self.selected = self._read_selected()
        self.selected_ticks = None  # when it was selected, this boot (contexts: its expiry)
        self.wanted = _wanted()
        self.requested = False
        self.running = False
        self.generation = 0
        self.last_error = None
        self.last_result = None
        self.failed_at = None
        self.refreshed_at = None  # ticks of the last refresh this boot

    # ---- settings ------------------------------------------------------------------------------

    def scp(self):
        return self.device.config.get("worklist_scp")

    def _offset_minutes(self):
        tz = self.device.config.get("timezone")  # the worklist's dates are local, as the objects'
        minutes = int(tz[1:3]) * 60 + int(tz[3:5])
        return -minutes if tz[0] == "-" else minutes

    def _query(self):
        cfg = self.device.config
        station = cfg.get("worklist_station_aet")
        if station == "":
            station = cfg.get("ae_title")
        elif station == "*":
            station = ""
        return query_keys(station, cfg.get("worklist_modality"),
                          query_date(cfg.get("worklist_date"), self._offset_minutes()))

    # ---- the cache -----------------------------------------------------------------------------

    def _read_header(self):
        try:
            with fs.open_file(self.path, "rb") as f:
                header = json.loads(f.readline())
        except (OSError, ValueError):
            return None
        return header if isinstance(header, dict) else None

    def _read_selected(self):
        try:
            rec = json.loads(fs.read_bytes(fs.join(self.folder, "selected.json")))
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) else None

    def count(self):
        return self.header["items"] if self.header else 0

    def rows(self, start=1, count=LIST_PAGE):
        """`worklist list`: up to `count` short rows from item `start` (1-based)."""
        out = []
        chosen = self.selected or {}
        for n, line in _lines(self.path):
            if n < start:
                continue
            if len(out) >= count:
                break
            rec = json.loads(line)
            row = {"n": n}
            for name, key in _ROW:
                row[name] = rec.get(key, "")
            if not row["description"]:
                row["description"] = rec.get("requested_procedure_description", "")
            row["selected"] = bool(chosen) and _same(chosen, rec)
            if problem(rec):
                row["note"] = "escaped"
            out.append(row)
        return out

    def item(self, n):
        """The full item `n` of the cached list; ModgateError when there is none."""
        for i, line in _lines(self.path):
            if i == n:
                rec = json.loads(line)
                rec["n"] = n
                return rec
        raise ModgateError("no worklist item %d (the list has %d; refresh or list it)" % (n, self.count()))

    def find(self, key, value):
        """The first cached item whose `key` (accession_number or scheduled_step_id) is `value`."""
        needle = json.dumps(value).encode()
        ascii_only = all(b < 128 for b in needle)
        for n, line in _lines(self.path):
            if ascii_only and needle not in line:
                continue  # the cheap test first: parse only the lines that can match
            rec = json.loads(line)
            if rec.get(key) == value:
                rec["n"] = n
                return rec
        return None

    def select(self, n):
        rec = self.item(n)
        why = problem(rec)
        if why:
            raise ModgateError("worklist item %d: %s" % (n, why))
        rec["selected_at"] = _now_iso()
        fs.write_atomic(fs.join(self.folder, "selected.json"), json.dumps(rec).encode())
        self.selected = rec
        self.selected_ticks = ticks_ms()
        log.info("acquire", "worklist item %d selected: patient %s, accession %s, step %s" % (
            n, rec.get("patient_id"), rec.get("accession_number"), rec.get("scheduled_step_id")))
        return rec

    def clear(self, why="cleared"):
        if self.selected is None:
            return False
        self.selected = None
        self.selected_ticks = None
        fs.remove(fs.join(self.folder, "selected.json"))
        log.info("acquire", "worklist selection " + why)
        return True

    def status(self):
        header = self.header or {}
        cfg = self.device.config
        age = None
        if header and clock.is_set():
            age = clock.epoch_seconds() - header["refreshed"]
            if age < 0:
                age = None  # refreshed under a clock that was later set back
        chosen = self.selected
        return {
            "scp": self.scp(),
            "items": self.count(),
            "refreshed": header.get("utc"),
            "age_s": age,
            "stale": age is None or age > cfg.get("worklist_stale_s"),
            "cancelled_at_max": bool(header.get("cancelled")),
            "skipped": header.get("skipped", 0),
            "refreshing": self.running,
            "last_error": self.last_error,
            "selected": None if chosen is None else _summary(chosen),
        }

    # ---- refreshing ----------------------------------------------------------------------------

    def _due(self):
        if self.requested:
            return True
        period_ms = self.device.config.get("worklist_refresh_s") * 1000
        if not period_ms:
            return False
        if self.failed_at is not None and ticks_diff(ticks_ms(), self.failed_at) < min(RETRY_MS, period_ms):
            return False
        if self.refreshed_at is not None:
            return ticks_diff(ticks_ms(), self.refreshed_at) >= period_ms
        age = self.status()["age_s"]  # from flash: a reboot does not refresh a fresh list again
        return self.failed_at is not None or age is None or age * 1000 >= period_ms

    async def run(self, beat):
        """The `worklist` task: refresh when due (or asked), while an SCP is configured."""
        while self.scp():
            beat()
            if self.device.online and self._due():
                await self.refresh(beat)
            await aio.sleep_ms(POLL_MS)

    async def refresh(self, beat):
        """One query, its outcome kept for status and the console; never raises ModgateError."""
        self.requested = False
        self.running = True
        try:
            self.last_result = await self._refresh(beat)
            self.last_error = None
            self.failed_at = None
            self.refreshed_at = ticks_ms()
        except (ModgateError, OSError, MemoryError) as exc:
            why = str(exc) or type(exc).__name__
            if why != self.last_error:
                log.warn("net", "worklist refresh failed, %d cached items kept: %s" % (self.count(), why))
            self.last_error = why
            self.failed_at = ticks_ms()
        finally:
            self.running = False
            self.generation += 1

    async def _refresh(self, beat):
        from modgate.net.find import FindSession

        cfg = self.device.config
        scp = parse_scp(self.scp())
        keys = self._query()
        settings = self.device.network_settings()
        buffers = self.device.pdu_buffers
        settings["buffer"] = buffers.get(BUFFER_KEY)
        session = FindSession(scp, settings)
        buffers[BUFFER_KEY] = session.buf
        session.on_progress = beat
        started = ticks_ms()
        staging = _Staging(self.folder, self.wanted)
        try:
            result = await session.query(keys, staging, cfg.get("worklist_max_items"))
            header = {
                "refreshed": clock.epoch_seconds(), "utc": _now_iso(), "items": staging.count,
                "skipped": staging.skipped, "cancelled": result["cancelled"], "scp": self.scp(),
                "explicit": staging.explicit,
            }
            staging.commit(header, self.path)
        except BaseException:
            staging.abandon()
            raise
        self.header = header
        took = ticks_diff(ticks_ms(), started)
        log.info("net", "worklist refreshed from %s: %d items%s in %d ms" % (
            self.scp(), staging.count, " (C-CANCEL at the maximum)" if result["cancelled"] else "", took))
        return {"items": staging.count, "skipped": staging.skipped, "cancelled_at_max": result["cancelled"],
                "took_ms": took}

    async def refresh_now(self, wait_ms):
        """Console `worklist refresh`: ask the task and wait (bounded) for its outcome."""
        if not self.scp():
            raise ModgateError("no worklist SCP configured: config set worklist_scp AET@HOST:PORT")
        if not self.device.online:
            raise ModgateError("network down: the cached worklist (%d items) stays in use" % self.count())
        generation = self.generation
        self.requested = True
        until = deadline(wait_ms)
        while self.generation == generation:
            if not remaining_ms(until):
                return {"refreshing": True, "note": "still running: status shows when it is done"}
            await aio.sleep_ms(100)
        if self.last_error:
            raise ModgateError("worklist refresh failed (%d cached items kept): %s"
                               % (self.count(), self.last_error))
        return self.last_result


def _summary(rec):
    out = {"n": rec.get("n")}
    for key in ("patient_id", "patient_name", "accession_number", "scheduled_step_id"):
        out[key] = rec.get(key)
    return out


def _same(a, b):
    return (a.get("accession_number"), a.get("scheduled_step_id"), a.get("patient_id")) == (
        b.get("accession_number"), b.get("scheduled_step_id"), b.get("patient_id"))
