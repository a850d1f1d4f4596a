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

What stays in RAM is the task's state (flags, counters, ticks): the header and the selected
item are read from flash when needed (the item for each acquisition), so nothing of a refresh or
a selection is left scattered in the heap where a frame link's receive buffer must later fit.
The query's code (net/find.py, dicom/mwl.py) is loaded when first needed, not at boot.

The query keys, the decoding of an item (in its Specific Character Set; one whose text could not
be decoded exactly is listed with its bytes escaped and cannot be selected) and the mapping into
objects are modgate.dicom.mwl's, documented in docs/conformance-statement.md.
"""

import json

from modgate import log
from modgate.compat import deadline, remaining_ms, ticks_add, ticks_diff, ticks_ms
from modgate.errors import DecodeError, ModgateError
from modgate.port import aio, clock, fs

FOLDER = "worklist"
HEADER_BYTES = 320
POLL_MS = 500
RETRY_MS = 60000  # after a failed refresh, the next automatic one
NO_HEAP_RETRIES = 2  # a query that found no heap runs again at once, this many times
NO_HEAP_PAUSE_MS = 500
AGE_AS_TICKS_S = 86400  # a cached list younger than this counts its age in ticks after a boot
LIST_PAGE = 20
# The query's and the items' DICOM code: loaded for a refresh, a selection or a frame naming an
# item, unloaded after it (see unload_dicom), so ~4 KB of a 96 KB board's heap stay free between.
DICOM_MODULES = ("modgate.net.find", "modgate.dicom.mwl", "modgate.dicom.dataset", "modgate.dicom.charset")

# What `worklist list` shows of each item (the full item: `worklist show N`).
_ROW = (("patient_name", "patient_name"), ("patient_id", "patient_id"), ("birth_date", "patient_birth_date"),
        ("sex", "patient_sex"), ("accession", "accession_number"), ("step_id", "scheduled_step_id"),
        ("date", "scheduled_date"), ("time", "scheduled_time"), ("modality", "modality"),
        ("description", "scheduled_step_description"))


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


class _Staging:
    """A refresh in progress (the FindSession's sink, see net/find.py); commit() replaces the
    cache, abandon() leaves it untouched."""

    def __init__(self, folder):
        from modgate.dicom import dataset, mwl

        self.mwl = mwl
        self.dataset = dataset
        self.wanted = mwl.wanted()
        self.folder = folder
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
            rec = self.mwl.record(self.dataset.read(raw, size, self.explicit, self.wanted))
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
    network_settings(), task_bound_ms() and (optional) settle_heap()."""

    def __init__(self, device):
        self.device = device
        self.folder = fs.join(device.state_dir, FOLDER)
        fs.makedirs(self.folder)
        self.path = fs.join(self.folder, "items.jsonl")
        for name in ("new.jsonl", "new.raw"):
            fs.remove(fs.join(self.folder, name))  # a refresh cut short by a reset
        # Only flags, counters and ticks here (the header and the selection are read from flash).
        self.has_selection = fs.exists(fs.join(self.folder, "selected.json"))
        self.selected_ticks = None  # when it was selected, this boot (contexts: its expiry)
        self.requested = False
        self.running = False
        self.generation = 0
        self.last_error = None
        self.failed_at = None
        self.refreshed_at = None  # ticks of the last refresh, this boot or (by age) before it
        age = self._age_s(self.header())
        if age is not None and age < AGE_AS_TICKS_S:
            self.refreshed_at = ticks_add(ticks_ms(), -age * 1000)

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
        from modgate.dicom import mwl

        return mwl.query_keys(station, cfg.get("worklist_modality"),
                          query_date(cfg.get("worklist_date"), self._offset_minutes()))

    # ---- the cache -----------------------------------------------------------------------------

    def header(self):
        """The cache's header line (when, from whom, how many), or None without a cache."""
        try:
            with fs.open_file(self.path, "rb") as f:
                header = json.loads(f.readline())
        except (OSError, ValueError):
            return None
        return header if isinstance(header, dict) else None

    def _age_s(self, header):
        """Seconds since the cached list was made, None when the clock cannot tell."""
        if header is None or not clock.is_set():
            return None
        age = clock.epoch_seconds() - header["refreshed"]
        return age if age >= 0 else None  # refreshed under a clock that was later set back

    def _read_selected(self):
        # Parsed from the stream (MicroPython's json.load reads it as it goes): read whole, its
        # ~1.3 KB would need one free block that size at every acquisition, which a fragmented
        # 96 KB heap may no longer have.
        try:
            with fs.open_file(fs.join(self.folder, "selected.json"), "rb") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) else None

    def selected(self):
        """The selection (from flash): the item's summary (_summary), selected_at, and the
        acquisition context fields it gives ("context"); None when nothing is selected."""
        return self._read_selected() if self.has_selection else None

    def count(self):
        header = self.header()
        return header["items"] if header else 0

    def rows(self, start=1, count=LIST_PAGE):
        """`worklist list`: up to `count` short rows from item `start` (1-based)."""
        out = []
        chosen = self.selected()
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
            row["selected"] = chosen is not None and _same(chosen, rec)
            if rec.get("escaped"):
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
        """Item `n` for the next acquisitions; selected.json keeps its summary and the context
        fields it gives (made now, once: an acquisition then only reads them)."""
        from modgate.dicom import mwl

        try:
            rec = self.item(n)
            why = mwl.problem(rec)
            if why:
                raise ModgateError("worklist item %d: %s" % (n, why))
            chosen = _summary(rec)
            chosen["selected_at"] = _now_iso()
            chosen["context"] = mwl.context_of(rec)
        finally:
            if not self.running:  # a refresh under way unloads them when it ends
                unload_dicom()
        fs.write_atomic(fs.join(self.folder, "selected.json"), json.dumps(chosen).encode())
        self.has_selection = True
        self.selected_ticks = ticks_ms()
        log.info("acquire", "worklist item %d selected: patient %s, accession %s, step %s" % (
            n, rec.get("patient_id"), rec.get("accession_number"), rec.get("scheduled_step_id")))
        return rec

    def clear(self, why="cleared"):
        if not self.has_selection:
            return False
        self.has_selection = False
        self.selected_ticks = None
        fs.remove(fs.join(self.folder, "selected.json"))
        log.info("acquire", "worklist selection " + why)
        return True

    def status(self):
        header = self.header()
        age = self._age_s(header)
        header = header or {}
        chosen = self.selected()
        return {
            "scp": self.scp(),
            "items": header.get("items", 0),
            "refreshed": header.get("utc"),
            "age_s": age,
            "stale": age is None or age > self.device.config.get("worklist_stale_s"),
            "cancelled_at_max": bool(header.get("cancelled")),
            "skipped": header.get("skipped", 0),
            "refreshing": self.running,
            "last_error": self.last_error,
            "selected": None if chosen is None else _summary(chosen),  # without its context
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
        # A list refreshed before a reboot counts from then (refreshed_at, set from its age).
        return self.refreshed_at is None or ticks_diff(ticks_ms(), self.refreshed_at) >= period_ms

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
            for attempt in range(1 + NO_HEAP_RETRIES):
                try:
                    await self._refresh(beat)
                    break
                except (ModgateError, MemoryError) as exc:
                    # Short of heap for a moment (the board is storing and sending): a query
                    # changes nothing until it ends well, so it may simply run again.
                    if attempt == NO_HEAP_RETRIES or not _no_heap(exc):
                        raise
                    exc = None  # its traceback holds the failed query's frames: let them go
                    unload_dicom()
                    self.device.settle_heap()
                    beat()
                    await aio.sleep_ms(NO_HEAP_PAUSE_MS)
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
            unload_dicom()
            settle = getattr(self.device, "settle_heap", None)
            if settle is not None:
                settle()  # the query's garbage goes now, before a frame link needs a large block

    async def _refresh(self, beat):
        from modgate.net.find import FindSession

        cfg = self.device.config
        scp = parse_scp(self.scp())
        keys = self._query()
        session = FindSession(scp, self.device.network_settings())
        settle = getattr(self.device, "settle_heap", None)
        answers = [0]

        def progress():
            # After each response; every few a collection, so status's least free heap includes
            # the query's own (a worklist of 200 items on a 96 KB board is measured so).
            beat()
            answers[0] += 1
            if settle is not None and not answers[0] & 7:
                settle()

        session.on_progress = progress
        started = ticks_ms()
        staging = _Staging(self.folder)
        try:
            result = await session.query(keys, staging, cfg.get("worklist_max_items"))
            header = {
                "refreshed": clock.epoch_seconds(), "utc": _now_iso(), "items": staging.count,
                "skipped": staging.skipped, "cancelled": result["cancelled"], "scp": self.scp(),
                "explicit": staging.explicit, "took_ms": ticks_diff(ticks_ms(), started),
            }
            staging.commit(header, self.path)
        except BaseException:
            staging.abandon()
            raise
        log.info("net", "worklist refreshed from %s: %d items%s in %d ms" % (
            self.scp(), staging.count, " (C-CANCEL at the maximum)" if result["cancelled"] else "",
            header["took_ms"]))

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
        header = self.header()
        return {"items": header["items"], "skipped": header["skipped"],
                "cancelled_at_max": header["cancelled"], "took_ms": header["took_ms"]}


def _no_heap(exc):
    return isinstance(exc, MemoryError) or "out of memory" in str(exc)


def unload_dicom():
    """Forget DICOM_MODULES (they keep no state): the heap they take goes back to the frame
    links and deliveries until the worklist's DICOM side is needed again."""
    from modgate import unload

    unload(*DICOM_MODULES)


def _summary(rec):
    out = {"n": rec.get("n")}
    for key in ("patient_id", "patient_name", "accession_number", "scheduled_step_id"):
        out[key] = rec.get(key)
    return out


def _same(a, b):
    return (a.get("accession_number"), a.get("scheduled_step_id"), a.get("patient_id")) == (
        b.get("accession_number"), b.get("scheduled_step_id"), b.get("patient_id"))
