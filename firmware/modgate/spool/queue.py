"""The queue on flash: objects acknowledged to a source survive any power cut, and the queue's
state is rebuilt from the files alone. Layout and the crash-safety argument: docs/spool.md.

    ROOT/in/t<n>.part    object being received; not acknowledged; deleted by recover()
    ROOT/in/o<n>.open    open multi-frame object; deleted by recover() unless it has a note
    ROOT/in/o<n>.json    the caller's note for o<n>.open, written (atomically) only after the
                         bytes it describes are synced: with it, frames were acknowledged
    ROOT/q/<id>.m        entry log: header, routing, per-destination outcomes (JSON lines)
    ROOT/q/<id>.dcm      committed object; the rename to this name is the commit point

The spool knows an object only by its SOP Instance UID and a small metadata dict
(modality, iod, sop_class_uid, series_uid) used for routing.
"""

import binascii
import json

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import SpoolFull
from modgate.port import clock, fs
from modgate.spool import entrylog, incoming, routing

_SRC = "spool"
# Entry slots (a list per entry keeps RAM per queued object near 64 bytes on a 32-bit MCU).
_ID = 0
_SIZE = 1
_BORN = 2  # clock seconds since _EPOCH0 at commit, or None when the clock was unset
_TICK = 3  # ticks_ms when the entry was committed or loaded (age fallback)
_ROUTED = 4  # tuple of destination names
_DONE = 5  # None or list of names delivered (or given up by an operator)
_DEAD = 6  # None or dict name -> reason
_KEY = 7  # uid_key(SOP Instance UID): finds the entry a confirmation names, without a file read
_WAIT = 8  # None or dict name -> wait state (entrylog.WAIT_*) for destinations that confirm
_EPOCH0 = 1704067200  # 2024-01-01: keeps stored seconds a small int on 32-bit ports
# Flash cost of an entry beyond its object: the log file and directory entries.
ENTRY_OVERHEAD = 512
# Free flash an object needs beyond its own bytes (log, note, temporary copies, directory
# entries): below this the medium is fuller than the budget assumed, and sources must wait.
FREE_MARGIN = 4 * ENTRY_OVERHEAD
BUSY_RETRY_MS = 1000  # the retry-after hint of a BUSY answer (docs/frame-protocol.md)
TAGS_KEPT = 16  # keys whose newest commit tag is remembered (see commit() and tagged())
# The configuration keys the spool reads (modgate.config: the schema holds their defaults).
SETTINGS = ("spool_budget_bytes", "spool_high_pct", "spool_low_pct", "spool_max_items",
            "dead_max_items", "dead_policy", "routing")


def _entry_id(entry):
    return entry[_ID]


def uid_key(uid):
    """A small int for a SOP Instance UID (a CRC-32 cut to 30 bits: a MicroPython small int);
    equal UIDs have equal keys, and the rare equal key of another UID is told apart by the log."""
    return binascii.crc32(str(uid).encode()) & 0x3FFFFFFF


def _clean(text):
    return str(text).replace("\n", " ").replace("\r", " ")[:200]


class Spool:
    """`settings`: a view of SETTINGS (modgate.config.settings); `destinations`: names."""

    SETTINGS = SETTINGS

    def __init__(self, root, settings, destinations=(), ticks=ticks_ms, seconds=None):
        self.root = root
        self.qdir = fs.join(root, "q")
        self.indir = fs.join(root, "in")
        self.ticks = ticks
        self.seconds = seconds
        self.destinations = list(destinations)
        self.dest_state = {}
        for name in self.destinations:
            self._state(name)
        self.configure(settings)
        self._entries = []  # in id order, which is commit order (MicroPython dicts are unordered)
        self._bytes = 0
        self._next_id = 1
        self.recovered_below = 1
        self._next_in = 1
        self._active = {}
        self._recovered_open = []
        self._unreadable = {}  # open-object number -> bytes: kept for service, see recover()
        self._full = False
        self._refusing = False
        self._short = False
        self._routes = {}
        self._tags = {}  # key -> [entry id, tag, uid] of the newest commit tagged with it

    def configure(self, settings):
        """Apply a settings view (at boot and at `config save`); the config validated it."""
        self.budget = settings["spool_budget_bytes"]
        self.high = self.budget * settings["spool_high_pct"] // 100
        self.low = self.budget * settings["spool_low_pct"] // 100
        self.max_items = settings["spool_max_items"]
        self.dead_max = settings["dead_max_items"]
        self.dead_policy = settings["dead_policy"]
        self.rules = list(settings["routing"])

    # ---- boot -------------------------------------------------------------------------------

    def recover(self):
        """Rebuild the queue from the files alone (any power cut leaves a state this reads).

        Removes our temporary files, finishes half-done commits and deletions, logs and leaves
        alone what is not ours. Returns the number of queued entries."""
        fs.makedirs(self.qdir)
        fs.makedirs(self.indir)
        self._entries = []  # in id order, which is commit order (MicroPython dicts are unordered)
        self._bytes = 0
        self._active = {}
        self._recovered_open = []
        self._unreadable = {}
        self._tags = {}
        dropped = self._recover_incoming()
        # One pass with no per-file sets (RAM stays flat); deletions wait until the scan ends.
        doomed = []
        finished = []
        top = 0
        for name in fs.iterdir(self.qdir):
            eid = entrylog.parse_id(name, ".dcm")
            if eid is not None:
                top = eid if eid > top else top
                if not self._load(eid):
                    finished.append(eid)
            elif entrylog.parse_id(name, ".m") is not None:
                if not fs.exists(self._data_path(entrylog.parse_id(name, ".m"))):
                    # Log written, rename not done: never acknowledged (or fully delivered and
                    # half-deleted). Either way nothing is owed.
                    doomed.append(name)
            elif name.endswith(".tmp"):
                doomed.append(name)  # a log being written: never part of a commit
            else:
                _foreign(self.qdir, name)
        for name in doomed:
            _discard(fs.join(self.qdir, name))
        for eid in finished:
            try:
                self._remove_files(eid)  # delivered everywhere; the deletion had not finished
            except OSError as exc:
                log.error(_SRC, "entry %d delivered but not deleted: %s" % (eid, exc))
        dropped += len(doomed) + len(finished)
        self._entries.sort(key=_entry_id)
        self._next_id = top + 1
        # Entries below this id were committed before this boot: a power cut may have fallen
        # between sending one and logging its delivery (the forwarder's 0111 rule needs that).
        self.recovered_below = self._next_id
        self._tidy_routes()
        log.info(_SRC, "recovered %d queued (%d bytes), %d open, %d dead, removed %d leftovers" % (
            len(self._entries), self._bytes, len(self._recovered_open), self.dead_count(), dropped))
        return len(self._entries)

    def _recover_incoming(self):
        opens = []
        notes = []
        doomed = []
        for name in fs.iterdir(self.indir):
            number = _in_number(name)
            if number is None:
                if name.endswith(".tmp"):
                    doomed.append(name)  # a note or a cut copy being written
                else:
                    _foreign(self.indir, name)
            elif name[0] == "t":
                doomed.append(name)  # never acknowledged
            elif name.endswith(".open"):
                opens.append(number)
            else:
                notes.append(number)
        top = 0
        for number in opens + notes:
            top = number if number > top else top
        self._next_in = top + 1
        for number in notes:
            if number not in opens:  # committed or aborted before the note was removed
                doomed.append("o%d.json" % number)
        opens.sort()
        for number in opens:
            if number not in notes:
                doomed.append("o%d.open" % number)  # the note comes before any acknowledgement
                continue
            self._recover_open(number)
        for name in doomed:
            _discard(fs.join(self.indir, name))
        return len(doomed)

    def _recover_open(self, number):
        path = fs.join(self.indir, "o%d.open" % number)
        note = None
        try:
            note = json.loads(fs.read_bytes(self._note_path(number)))
        except (OSError, ValueError) as exc:
            why = str(exc)
        else:
            why = "not an object"
        size = incoming.size_of(path)
        inc = incoming.Incoming(path, number, note, 0)
        inc.held = size
        inc.noted = True
        self._active[number] = inc
        if not isinstance(note, dict):
            # Written atomically, so only damage to the medium gets here. Its frames were
            # acknowledged: keep the file (counted in the budget) for service, never delete it.
            self.set_aside(inc, "note unreadable (" + why[:60] + ")")
            return
        self._recovered_open.append(inc)

    def _load(self, eid):
        """Queue entry `eid` from its files; False when it turns out to be delivered everywhere."""
        header = routed = done = dead = wait = None
        if fs.exists(self._log_path(eid)):
            header, routed, done, dead, wait = entrylog.replay(self._log_path(eid))
        try:
            if header is None:
                # Cannot happen by protocol (the log is synced before the rename); media damage.
                # Keep the object for every destination rather than lose it.
                log.error(_SRC, "entry %d: log missing or damaged; re-routed to all destinations" % eid)
                header = {"uid": None, "meta": {}, "born": None}
                routed = list(self.destinations)
                entrylog.create(self._log_path(eid), header, routed)
            elif routed is None:
                routed = routing.route(self.rules, self.destinations, header.get("meta") or {})
                log.error(_SRC, "entry %d: routing line damaged; routed again to %s" % (
                    eid, ",".join(routed)))
                entrylog.append(self._log_path(eid), ["R", routed])
        except OSError as exc:
            log.error(_SRC, "entry %d: log not repaired (%s); repaired again at the next boot" % (eid, exc))
        size = incoming.size_of(self._data_path(eid))
        tag = header.get("tag")
        if isinstance(tag, dict) and isinstance(tag.get("key"), str):
            self._remember(eid, tag, header.get("uid"))
        entry = [eid, size, header.get("born"), self.ticks(), self._route_tuple(routed), done or None,
                 dead or None, uid_key(header.get("uid")), wait or None]
        if self._complete(entry):
            return False
        self._entries.append(entry)
        self._bytes += size + ENTRY_OVERHEAD
        return True

    # ---- acquisition side -------------------------------------------------------------------

    def begin(self, expected_bytes=None, open_meta=None):
        """Start an object; the caller writes `.path` and then calls commit() or abort().

        `expected_bytes` is reserved in the budget (SpoolFull when it does not fit at all: the
        room between the high mark and the budget is the headroom for objects in progress).
        With `open_meta` (a JSON-able dict) the object is open: it survives recover() once the
        caller's first checkpoint() has written the note, and is listed by open_objects()."""
        need = expected_bytes or 0
        if need and self.used_bytes() + need > self.budget:
            raise SpoolFull("object of %d bytes exceeds the flash budget" % need)
        number = self._next_in
        self._next_in += 1
        kind = "t%d.part" if open_meta is None else "o%d.open"
        path = fs.join(self.indir, kind % number)
        f = fs.open_file(path, "wb")
        f.close()
        inc = incoming.Incoming(path, number, open_meta, need)
        self._active[number] = inc
        return inc

    def reserve(self, inc, nbytes):
        """Hold `nbytes` more for open object `inc` (the frame about to be written); SpoolFull
        when that cannot fit in the budget. A checkpoint() or release() gives it back."""
        if self.used_bytes() - inc.reserved + nbytes > self.budget:
            raise SpoolFull("frame of %d bytes exceeds the flash budget" % nbytes)
        inc.reserved = nbytes

    def release(self, inc):
        """The frame reserved for was dropped."""
        inc.reserved = 0

    def checkpoint(self, inc, f, size, note=None):
        """Make the first `size` bytes the caller wrote to open file `f` durable; call before
        acknowledging a frame of an open object. The note is (re)written, atomically, after the
        bytes it describes: on the first checkpoint, and whenever `note` is given."""
        fs.sync_file(f)
        inc.held = size
        inc.reserved = 0
        if note is not None:
            inc.open_meta = note
        if note is not None or not inc.noted:
            fs.write_json_atomic(self._note_path(inc.number), inc.open_meta)
            inc.noted = True

    def tagged(self, key):
        """(tag, SOP Instance UID) of the newest commit tagged `key` (committed in this boot or
        found by recover(); the TAGS_KEPT keys tagged last), or None."""
        found = self._tags.get(key)
        return None if found is None else (found[1], found[2])

    def _remember(self, eid, tag, uid):
        # One tag per key, the newest: a few dozen bytes per source, not per entry.
        key = tag["key"]
        known = self._tags.get(key)
        if known is not None and known[0] > eid:
            return
        self._tags[key] = [eid, tag, uid]
        if len(self._tags) > TAGS_KEPT:
            oldest = None
            for k in self._tags:
                if oldest is None or self._tags[k][0] < self._tags[oldest][0]:
                    oldest = k
            del self._tags[oldest]

    def open_objects(self):
        """Open objects found by recover() and not yet committed or aborted (see docs/spool.md)."""
        return [inc for inc in self._recovered_open if not inc.finished]

    def set_aside(self, inc, why):
        """A recovered open object its caller cannot finish (its note is damaged): kept on
        flash and in the budget for service, never delivered, never deleted by the spool."""
        log.error(_SRC, "open object o%d (%d bytes): %s; kept, not delivered" % (
            inc.number, inc.held, why[:80]))
        self._unreadable[inc.number] = inc.held
        self._finish(inc)

    def commit(self, inc, sop_instance_uid, meta, size=None, tag=None):
        """Make the object a durable queue entry routed by `meta`; returns its entry id only once
        a power cut can no longer lose it. The caller has closed the file. With `size`, bytes
        beyond it (an unacknowledged frame torn by a power cut) are cut off first. `tag` (a
        JSON-able dict with a "key" string) is kept with the entry and found by tagged(key),
        also after a restart: the caller's way to recognise a resend of what it committed just
        before a power cut, when its acknowledgement may not have gone out."""
        if inc.finished:
            raise ValueError("incoming object already committed or aborted")
        if size is not None and inc.size() > size:
            # MicroPython files cannot truncate: copy the good part, sync, rename over (atomic).
            incoming.copy_prefix(inc.path, size, inc.path + ".tmp")
            fs.rename(inc.path + ".tmp", inc.path)
            fs.sync_dir(self.indir)
        incoming.sync_path(inc.path)
        size = inc.size()
        eid = self._next_id
        routed = routing.route(self.rules, self.destinations, meta)
        born = self._now_s()
        header = {"uid": sop_instance_uid, "meta": meta, "born": born, "size": size}
        if tag is not None:
            header["tag"] = tag
        entrylog.create(self._log_path(eid), header, routed)
        try:
            fs.rename(inc.path, self._data_path(eid))
        except OSError:
            _discard(self._log_path(eid))
            raise
        # Committed: nothing below may fail the commit (the caller would NAK an object it holds).
        fs.sync_dir(self.qdir)
        self._next_id = eid + 1
        if inc.open_meta is not None:
            _discard(self._note_path(inc.number))  # else recover() removes it
        self._finish(inc)
        self._entries.append([eid, size, born, self.ticks(), self._route_tuple(routed), None, None,
                              uid_key(sop_instance_uid), None])
        self._bytes += size + ENTRY_OVERHEAD
        if tag is not None:
            self._remember(eid, tag, sop_instance_uid)
        if not routed:
            log.warn(_SRC, "entry %d (%s) matches no destination; kept until one is added" % (
                eid, sop_instance_uid))
        return eid

    def abort(self, inc):
        """Forget an object that was never acknowledged; removes its files (what a failed
        removal leaves, recover() removes)."""
        if inc.finished:
            return
        self._finish(inc)
        if inc.open_meta is not None:
            _discard(self._note_path(inc.number))
        _discard(inc.path)

    def _finish(self, inc):
        inc.finished = True
        self._active.pop(inc.number, None)

    # ---- capacity ---------------------------------------------------------------------------

    def committed_bytes(self):
        """Bytes of committed entries (+ ENTRY_OVERHEAD each): what delivery can free."""
        return self._bytes

    def used_bytes(self):
        """Committed bytes (+ ENTRY_OVERHEAD each), open objects as synced, what is reserved for
        objects and frames in progress, and unreadable open objects kept for service."""
        used = self._bytes
        for inc in self._active.values():
            used += inc.held + inc.reserved
        for number in self._unreadable:
            used += self._unreadable[number]
        return used

    def _pressure(self):
        """(full, refusing, why) as the next admit() would find them; reads state, changes none."""
        used = self.used_bytes()
        full = used > self.low if self._full else used >= self.high  # hysteresis
        refusing = self.dead_policy == "refuse" and self.dead_count() >= self.dead_max
        if full:
            return full, refusing, "spool above its high watermark (%d of %d bytes)" % (used, self.budget)
        if refusing:
            return full, refusing, "dead-letter area full (%d)" % self.dead_max
        if len(self._entries) >= self.max_items:
            return full, refusing, "queue table full (%d entries)" % self.max_items
        return full, refusing, None

    def busy(self):
        """0 when sources may send; else a retry-after hint in ms. A pure read (status)."""
        if self._pressure()[2] is not None or self._flash_short(0) is not None:
            return BUSY_RETRY_MS
        return 0

    def admit(self, need=0):
        """The device is about to accept a frame of `need` bytes (0: not known yet): update the
        watermark state, logging each change, and return 0, or the retry-after hint in ms for
        the frame protocol's BUSY. Busy from the high watermark until usage falls to the low one
        (hysteresis), when the entry table is full, when the dead-letter area is full under the
        "refuse" policy, when `need` does not fit in the budget, or when the medium has less
        free space than the object needs (it is fuller than the budget assumed)."""
        full, refusing, why = self._pressure()
        used = self.used_bytes()
        if full != self._full:
            self._full = full
            if full:
                log.warn(_SRC, "high watermark reached (%d of %d bytes): sources must wait" % (
                    used, self.budget))
            else:
                log.info(_SRC, "below low watermark (%d of %d bytes): accepting again" % (used, self.budget))
        if refusing != self._refusing:
            self._refusing = refusing
            if refusing:
                log.error(_SRC, "dead-letter area full (%d): refusing new objects until purge or requeue"
                          % self.dead_max)
        if why is None and used + need > self.budget:
            why = "no room for %d bytes in the budget" % need
        short = self._flash_short(need)
        if (short is not None) != self._short:
            self._short = short is not None
            if short is not None:
                log.error(_SRC, short + ": sources must wait")
            else:
                log.info(_SRC, "flash has room again")
        if why is not None or short is not None:
            return BUSY_RETRY_MS
        return 0

    def _flash_short(self, need):
        free = fs.free_bytes(self.root)
        if free is None or free >= need + FREE_MARGIN:
            return None
        return "flash has %d bytes free, fewer than the spool budget assumed" % free

    # ---- delivery side (the forwarder) ------------------------------------------------------

    def next_for(self, dest):
        """Oldest entry still owed to `dest` (FIFO keeps each series in acquisition order)."""
        for entry in self._entries:
            if self._owed(entry, dest):
                return entry
        return None

    def data_path(self, eid):
        return self._data_path(eid)

    def age_s(self, entry, now_ticks=None):
        """Seconds since the entry was committed: from the clock when both ends were set, else
        since it was committed or loaded in this boot."""
        now_s = self._now_s()
        if entry[_BORN] is not None and now_s is not None:
            return now_s - entry[_BORN]
        return ticks_diff(self.ticks() if now_ticks is None else now_ticks, entry[_TICK]) // 1000

    def mark_done(self, eid, dest):
        """`dest` has the object (and confirmed it, if it confirms). Deletes the entry once every
        destination it is routed to has it."""
        entry = self._find(eid)
        if entry is None:
            return
        entrylog.append(self._log_path(eid), ["D", dest])
        self._set_done(entry, dest)

    def mark_dead(self, eid, dest, reason):
        """Move (entry, dest) to the dead-letter area, then apply the dead-letter policy."""
        entry = self._find(eid)
        if entry is None:
            return
        reason = _clean(reason)
        entrylog.append(self._log_path(eid), ["X", dest, reason])
        if entry[_DEAD] is None:
            entry[_DEAD] = {}
        entry[_DEAD][dest] = reason
        log.error(_SRC, "entry %d dead-lettered for %s: %s" % (eid, dest, reason))
        if self.dead_policy == "drop-oldest":
            while self.dead_count() > self.dead_max:
                oldest = self._oldest_dead()
                log.warn(_SRC, "dead-letter area over %d entries: dropping oldest, entry %d (%s)" % (
                    self.dead_max, oldest[_ID], ",".join(oldest[_DEAD])))
                self._give_up(oldest)

    def _set_done(self, entry, dest):
        if entry[_DONE] is None:
            entry[_DONE] = []
        if dest not in entry[_DONE]:
            entry[_DONE].append(dest)
        if entry[_DEAD] and dest in entry[_DEAD]:
            del entry[_DEAD][dest]
        if entry[_WAIT] and dest in entry[_WAIT]:
            del entry[_WAIT][dest]
            if not entry[_WAIT]:
                entry[_WAIT] = None
        if self._complete(entry):
            self._delete(entry)

    def _give_up(self, entry):
        for dest in list(entry[_DEAD] or ()):
            entrylog.append(self._log_path(entry[_ID]), ["P", dest])
            self._set_done(entry, dest)

    def _owed(self, entry, dest):
        if dest not in entry[_ROUTED] or (entry[_DONE] and dest in entry[_DONE]) or (
                entry[_DEAD] and dest in entry[_DEAD]):
            return False
        wait = entry[_WAIT]
        return wait is None or dest not in wait or wait[dest][entrylog.WAIT_STATE] == "F"

    # ---- confirmation (a destination with Storage Commitment: docs/spool.md) -----------------

    def mark_stored(self, eid, dest):
        """`dest` stored the object and will confirm it: it is no longer owed, and not done."""
        self._wait_step(eid, ["S", dest])

    def mark_requested(self, eid, dest, request):
        """The object is in confirmation request `request` (an id the destination answers to)."""
        self._wait_step(eid, ["T", dest, request])

    def mark_unconfirmed(self, eid, dest, reason):
        """`dest` did not confirm the object: it is owed again (sent again, then requested)."""
        self._wait_step(eid, ["F", dest, _clean(reason)])
        log.warn(_SRC, "entry %d not confirmed by %s (%s): sending it again" % (eid, dest, _clean(reason)))

    def flag(self, eid, dest, reason):
        """The object stays unconfirmed after every request allowed: kept, never deleted by the
        spool, listed for an operator (queue retry sends it again, queue purge deletes it)."""
        self._wait_step(eid, ["U", dest, _clean(reason)])
        log.error(_SRC, "entry %d not confirmed by %s: %s; kept on flash for an operator" % (
            eid, dest, _clean(reason)))

    def _wait_step(self, eid, op):
        entry = self._find(eid)
        if entry is None:
            return
        entrylog.append(self._log_path(eid), op)
        if entry[_WAIT] is None:
            entry[_WAIT] = {}
        entrylog.step(entry[_WAIT], op)

    def wait_state(self, eid, dest):
        """[state, request, requests, reason] (entrylog.WAIT_*) of entry `eid` at `dest`, or None."""
        entry = self._find(eid)
        if entry is None or not entry[_WAIT]:
            return None
        return entry[_WAIT].get(dest)

    def awaiting(self, dest):
        """[(entry id, wait state)] of the entries `dest` stored and has not confirmed, oldest
        first (flagged ones and those owed again left out)."""
        out = []
        for entry in self._entries:
            wait = entry[_WAIT]
            if wait and dest in wait and wait[dest][entrylog.WAIT_STATE] == "S":
                out.append((entry[_ID], wait[dest]))
        return out

    def awaiting_keys(self, dest):
        """{uid_key: [entry id, ...]} of the entries awaiting confirmation from `dest`: built
        when a confirmation arrives, so that each of its references is found without a scan."""
        index = {}
        for entry in self._entries:
            wait = entry[_WAIT]
            if wait and dest in wait and wait[dest][entrylog.WAIT_STATE] == "S":
                index.setdefault(entry[_KEY], []).append(entry[_ID])
        return index

    def newest(self):
        """The id of the entry committed last, or None."""
        return self._entries[-1][_ID] if self._entries else None

    def identity(self, eid):
        """(SOP Instance UID, metadata) of entry `eid` from its log (one small file read)."""
        header = self._header(eid)
        return header.get("uid"), header.get("meta") or {}

    def confirm_all(self, dest, why):
        """`dest` no longer confirms (its setting changed): what awaits or is flagged counts as
        delivered; what is owed again is sent once more and then done."""
        count = 0
        for entry in self._entries[:]:
            wait = entry[_WAIT]
            if wait and dest in wait and wait[dest][entrylog.WAIT_STATE] in ("S", "U"):
                self.mark_done(entry[_ID], dest)
                count += 1
        if count:
            log.info(_SRC, "%d entries stored at %s count as delivered: %s" % (count, dest, why))
        return count

    def _complete(self, entry):
        if not entry[_ROUTED]:
            return False
        for dest in entry[_ROUTED]:
            if not entry[_DONE] or dest not in entry[_DONE]:
                return False
        return True

    def _delete(self, entry):
        eid = entry[_ID]
        try:
            self._remove_files(eid)
        except OSError as exc:
            # The entry stays listed (owed to no one, still on flash); recover() deletes it.
            log.error(_SRC, "entry %d delivered but not deleted: %s" % (eid, exc))
            return
        for i in range(len(self._entries)):
            if self._entries[i] is entry:
                del self._entries[i]
                self._bytes -= entry[_SIZE] + ENTRY_OVERHEAD
                break

    def _remove_files(self, eid):
        # Data first: without it the log is an orphan that recover() removes.
        fs.remove(self._data_path(eid))
        _discard(self._log_path(eid))

    # ---- configuration at run time ----------------------------------------------------------

    def set_destinations(self, names, rules=None):
        """Replace the destination list (console `dest add/remove`), and optionally the rules.

        Entries owed to a removed destination stay queued and listed (an operator may re-add it
        or purge them); entries that matched no destination are routed again."""
        self.destinations = list(names)
        if rules is not None:
            self.rules = list(rules)
        for name in self.destinations:
            self._state(name)
        for entry in self._entries:
            if entry[_ROUTED]:
                continue
            header = self._header(entry[_ID])
            routed = routing.route(self.rules, self.destinations, header.get("meta") or {})
            if routed:
                entrylog.append(self._log_path(entry[_ID]), ["R", routed])
                entry[_ROUTED] = self._route_tuple(routed)
                log.info(_SRC, "entry %d routed to %s" % (entry[_ID], ",".join(routed)))

    def _state(self, name):
        state = self.dest_state.get(name)
        if state is None:
            state = {"last_success": None, "last_error": None, "next_retry": None, "attempts": 0,
                     "head": None}
            self.dest_state[name] = state
        return state

    def dest_status(self, name):
        return self._state(name)

    # ---- inspection and operator actions (console) ------------------------------------------

    def dead_count(self):
        count = 0
        for entry in self._entries:
            if entry[_DEAD]:
                count += 1
        return count

    def _find(self, eid):
        for entry in self._entries:
            if entry[_ID] == eid:
                return entry
        return None

    def _oldest_dead(self):
        for entry in self._entries:
            if entry[_DEAD]:
                return entry
        return None

    def stats(self, now_ticks=None):
        now = self.ticks() if now_ticks is None else now_ticks
        oldest = None
        for entry in self._entries:
            oldest = self.age_s(entry, now)
            break
        dests = {}
        names = list(self.destinations)
        for entry in self._entries:
            for name in entry[_ROUTED]:
                if name not in names:
                    names.append(name)
        for name in names:
            state = self._state(name)
            pending = 0
            dead = 0
            waits = {"S": 0, "U": 0, "T": 0}
            for entry in self._entries:
                if self._owed(entry, name):
                    pending += 1
                elif entry[_DEAD] and name in entry[_DEAD]:
                    dead += 1
                elif entry[_WAIT] and name in entry[_WAIT]:
                    wait = entry[_WAIT][name]
                    waits[wait[entrylog.WAIT_STATE]] += 1
                    if wait[entrylog.WAIT_REQUEST] is not None:
                        waits["T"] += 1
            retry = state["next_retry"]
            wait = ticks_diff(retry, now) if retry is not None else 0
            dests[name] = {"last_success": state["last_success"], "last_error": state["last_error"],
                           "next_retry_s": (wait if wait > 0 else 0) / 1000, "attempts": state["attempts"],
                           "pending": pending, "dead": dead, "configured": name in self.destinations,
                           "awaiting_commit": waits["S"], "commit_requested": waits["T"],
                           "uncommitted": waits["U"]}
        return {"depth": len(self._entries), "bytes": self._bytes, "used": self.used_bytes(),
                "oldest_age_s": oldest, "busy": self.busy() != 0, "budget": self.budget,
                "high": self.high, "low": self.low, "open": len(self._active),
                "unreadable_open": len(self._unreadable), "flash_free": fs.free_bytes(self.root),
                "dead": self.dead_count(), "destinations": dests}

    def _describe(self, entry):
        header = self._header(entry[_ID])
        meta = header.get("meta") or {}
        done = entry[_DONE] or ()
        dead = entry[_DEAD] or {}
        wait = entry[_WAIT] or {}
        out = {"id": entry[_ID], "uid": header.get("uid"), "size": entry[_SIZE],
               "age_s": self.age_s(entry), "modality": meta.get("modality"),
               "series_uid": meta.get("series_uid"),
               "pending": [d for d in entry[_ROUTED] if self._owed(entry, d)],
               "done": list(done), "dead": dict(dead)}
        if wait:
            # Stored where a confirmation is awaited: the requests so far, and the flagged ones.
            out["committing"] = dict((d, wait[d][entrylog.WAIT_REQUESTS]) for d in wait
                                     if wait[d][entrylog.WAIT_STATE] == "S")
            out["uncommitted"] = dict((d, wait[d][entrylog.WAIT_REASON]) for d in wait
                                      if wait[d][entrylog.WAIT_STATE] == "U")
        return out

    def list(self, limit=20):
        """The oldest `limit` entries, described (reads each entry's log: console use only)."""
        out = []
        for entry in self._entries:
            if len(out) >= limit:
                break
            out.append(self._describe(entry))
        return out

    def dead(self, limit=100):
        out = []
        for entry in self._entries:
            if entry[_DEAD] and len(out) < limit:
                out.append(self._describe(entry))
        return out

    def committing(self, limit=100):
        """Entries stored where a confirmation is awaited or was not given (flagged), described."""
        out = []
        for entry in self._entries:
            if entry[_WAIT] and len(out) < limit:
                out.append(self._describe(entry))
        return out

    def _select(self, which):
        if which == "all":
            return self._entries[:]
        if which == "dead":
            return [e for e in self._entries if e[_DEAD]]
        entry = self._find(int(which))
        return [entry] if entry is not None else []

    def requeue(self, which):
        """Put dead-lettered (entry, destination) pairs back in the queue, and flagged ones that
        were never confirmed (not for "dead"); returns how many."""
        count = 0
        for entry in self._select("all" if which == "dead" else which):
            flagged = [d for d in entry[_WAIT] or () if entry[_WAIT][d][entrylog.WAIT_STATE] == "U"]
            for dest in list(entry[_DEAD] or ()) + ([] if which == "dead" else flagged):
                entrylog.append(self._log_path(entry[_ID]), ["Q", dest])
                if entry[_DEAD] and dest in entry[_DEAD]:
                    del entry[_DEAD][dest]
                if dest in flagged:
                    del entry[_WAIT][dest]
                state = self._state(dest)
                state["next_retry"] = None
                state["attempts"] = 0
                state["head"] = None
                count += 1
            if entry[_DEAD] is not None and not entry[_DEAD]:
                entry[_DEAD] = None
            if entry[_WAIT] is not None and not entry[_WAIT]:
                entry[_WAIT] = None
        if count:
            log.info(_SRC, "re-queued %d dead letter(s) (%s)" % (count, which))
        return count

    def purge(self, which):
        """Delete entries ("all", an entry id) or only the dead letters ("dead"); returns how many
        entries or dead letters went. Logged: this is the only way an operator loses objects."""
        count = 0
        for entry in self._select(which):
            if which == "dead":
                count += len(entry[_DEAD])
                self._give_up(entry)
            else:
                self._delete(entry)
                count += 1
        if count:
            log.warn(_SRC, "purged %d (%s)" % (count, which))
        return count

    # ---- files ------------------------------------------------------------------------------

    def _data_path(self, eid):
        return fs.join(self.qdir, entrylog.id_name(eid) + ".dcm")

    def _log_path(self, eid):
        return fs.join(self.qdir, entrylog.id_name(eid) + ".m")

    def _note_path(self, number):
        return fs.join(self.indir, "o%d.json" % number)

    def _now_s(self):
        if self.seconds is not None:
            return self.seconds() - _EPOCH0
        if not clock.is_set():
            return None
        return clock.epoch_seconds() - _EPOCH0

    def wall_seconds(self):
        """Clock seconds (Unix epoch) for stamps such as last_success, None if the clock is unset."""
        now = self._now_s()
        return None if now is None else now + _EPOCH0

    def _route_tuple(self, routed):
        # Most entries share one routing: keep one tuple per distinct set, not one per entry.
        key = ",".join(routed)
        found = self._routes.get(key)
        if found is None:
            found = tuple(routed)
            self._routes[key] = found
        return found

    def _tidy_routes(self):
        used = {}
        for entry in self._entries:
            used[",".join(entry[_ROUTED])] = entry[_ROUTED]
        self._routes = used

    def _header(self, eid):
        return entrylog.header(self._log_path(eid))


def _in_number(name):
    """n of t<n>.part, o<n>.open or o<n>.json; None for any other name."""
    for prefix, suffix in (("t", ".part"), ("o", ".open"), ("o", ".json")):
        if name.startswith(prefix) and name.endswith(suffix):
            stem = name[1:len(name) - len(suffix)]
            if stem.isdigit():
                return int(stem)
    return None


def _foreign(folder, name):
    # Not ours: an operator's or another program's file. Never delete what we did not write.
    log.warn(_SRC, "ignoring %s/%s: not a spool file" % (folder, name))


def _discard(path):
    """Remove a file whose leftover recover() removes anyway: a failure is only logged."""
    try:
        fs.remove(path)
    except OSError as exc:
        log.warn(_SRC, "could not remove %s (%s); the next boot removes it" % (path, exc))
