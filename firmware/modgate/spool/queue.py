"""The queue on flash: objects acknowledged to a source survive any power cut, and the queue's
state is rebuilt from the files alone. Layout and the crash-safety argument: docs/spool.md.

    ROOT/in/t<n>.part    object being received; not acknowledged; deleted by recover()
    ROOT/in/o<n>.open    open multi-frame object; frames acknowledged; kept by recover()
    ROOT/in/o<n>.json    the caller's note for o<n>.open (written atomically before it)
    ROOT/q/<id>.m        entry log: header, routing, per-destination outcomes (JSON lines)
    ROOT/q/<id>.dcm      committed object; the rename to this name is the commit point

The spool knows an object only by its SOP Instance UID and a small metadata dict
(modality, iod, sop_class_uid, series_uid) used for routing.
"""

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
_EPOCH0 = 1704067200  # 2024-01-01: keeps stored seconds a small int on 32-bit ports
# Flash cost of an entry beyond its object: the log file and directory entries.
ENTRY_OVERHEAD = 512


def _entry_id(entry):
    return entry[_ID]


def _clean(text):
    return str(text).replace("\n", " ").replace("\r", " ")[:200]


class Spool:
    def __init__(self, root, budget_bytes, high_pct=90, low_pct=70, dead_max_items=16,
                 dead_policy="drop-oldest", routing=(), destinations=(), max_items=64,
                 busy_retry_ms=1000, ticks=ticks_ms, seconds=None):
        if dead_policy not in ("drop-oldest", "refuse"):
            raise ValueError("dead_policy must be drop-oldest or refuse")
        if not 0 < low_pct <= high_pct <= 100:
            raise ValueError("need 0 < low_pct <= high_pct <= 100")
        self.root = root
        self.qdir = fs.join(root, "q")
        self.indir = fs.join(root, "in")
        self.budget = budget_bytes
        self.high = budget_bytes * high_pct // 100
        self.low = budget_bytes * low_pct // 100
        self.dead_max = dead_max_items
        self.dead_policy = dead_policy
        self.max_items = max_items
        self.busy_retry_ms = busy_retry_ms
        self.ticks = ticks
        self.seconds = seconds
        self.rules = list(routing)
        self.destinations = list(destinations)
        self.dest_state = {}
        for name in self.destinations:
            self._state(name)
        self._entries = []  # in id order, which is commit order (MicroPython dicts are unordered)
        self._bytes = 0
        self._next_id = 1
        self._next_in = 1
        self._active = {}
        self._recovered_open = []
        self._busy = False
        self._refusing = False
        self._routes = {}

    # ---- boot -------------------------------------------------------------------------------

    def recover(self):
        """Rebuild the queue from the files alone (PS: any power cut leaves a state this reads).

        Removes temporary files, finishes half-done commits and deletions, logs what it found.
        Returns the number of queued entries."""
        fs.makedirs(self.qdir)
        fs.makedirs(self.indir)
        self._entries = []  # in id order, which is commit order (MicroPython dicts are unordered)
        self._bytes = 0
        self._active = {}
        self._recovered_open = []
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
            else:
                doomed.append(name)  # *.tmp or foreign: never part of a commit
        for name in doomed:
            fs.remove(fs.join(self.qdir, name))
        for eid in finished:
            self._remove_files(eid)  # delivered everywhere; the deletion had not finished
        dropped += len(doomed) + len(finished)
        self._entries.sort(key=_entry_id)
        self._next_id = top + 1
        self._tidy_routes()
        log.info(_SRC, "recovered %d queued (%d bytes), %d open, %d dead, removed %d leftovers" % (
            len(self._entries), self._bytes, len(self._recovered_open), self.dead_count(), dropped))
        return len(self._entries)

    def _recover_incoming(self):
        dropped = 0
        opens = set()
        notes = set()
        top = 0
        for name in fs.iterdir(self.indir):
            if name.startswith("o") and name.endswith(".open"):
                opens.add(name[1:-5])
            elif name.startswith("o") and name.endswith(".json"):
                notes.add(name[1:-5])
            else:
                fs.remove(fs.join(self.indir, name))  # .part, .tmp: not acknowledged
                dropped += 1
        for stem in notes:
            if stem not in opens:  # committed or aborted before the note was removed
                fs.remove(fs.join(self.indir, "o" + stem + ".json"))
                dropped += 1
        numbers = sorted([int(stem) for stem in opens if stem.isdigit()])
        for number in numbers:
            stem = str(number)
            top = number if number > top else top
            meta = None
            note = fs.join(self.indir, "o" + stem + ".json")
            if stem in notes:
                try:
                    meta = json.loads(fs.read_bytes(note))
                except (OSError, ValueError):
                    log.error(_SRC, "open object o%s: unreadable note; kept with none" % stem)
            inc = incoming.Incoming(fs.join(self.indir, "o" + stem + ".open"), number, meta or {}, 0)
            self._active[number] = inc
            self._recovered_open.append(inc)
        self._next_in = top + 1
        return dropped

    def _load(self, eid):
        """Queue entry `eid` from its files; False when it turns out to be delivered everywhere."""
        header = routed = done = dead = None
        if fs.exists(self._log_path(eid)):
            header, routed, done, dead = entrylog.replay(self._log_path(eid))
        if header is None:
            # Cannot happen by protocol (the log is synced before the rename); media damage.
            # Keep the object for every destination rather than lose it.
            log.error(_SRC, "entry %d: log missing or damaged; re-routed to all destinations" % eid)
            header = {"uid": None, "meta": {}, "born": None}
            routed = list(self.destinations)
            entrylog.create(self._log_path(eid), header, routed)
        try:
            size = fs.size(self._data_path(eid))
        except OSError:
            size = 0
        entry = [eid, size, header.get("born"), self.ticks(), self._route_tuple(routed or ()),
                 done or None, dead or None]
        if self._complete(entry):
            return False
        self._entries.append(entry)
        self._bytes += size + ENTRY_OVERHEAD
        return True

    # ---- acquisition side -------------------------------------------------------------------

    def begin(self, expected_bytes=None, open_meta=None):
        """Start an object; the caller writes `.path` and then calls commit() or abort().

        Raises SpoolFull when `expected_bytes` would exceed the budget (callers check busy()
        before accepting a frame; the room between the high mark and the budget is the headroom
        for objects already in progress). With `open_meta` (a JSON-able dict) the object is open:
        it survives recover() and is listed by open_objects()."""
        need = expected_bytes or 0
        if need and self.used_bytes() + need > self.budget:
            raise SpoolFull("object of %d bytes exceeds the flash budget" % need)
        number = self._next_in
        self._next_in += 1
        if open_meta is None:
            path = fs.join(self.indir, "t%d.part" % number)
        else:
            fs.write_atomic(fs.join(self.indir, "o%d.json" % number), json.dumps(open_meta).encode())
            path = fs.join(self.indir, "o%d.open" % number)
        f = fs.open_file(path, "wb")
        f.close()
        if open_meta is not None:
            fs.sync_dir(self.indir)
        inc = incoming.Incoming(path, number, open_meta, need)
        self._active[number] = inc
        return inc

    def checkpoint(self, inc, f):
        """Make what the caller wrote so far to open file `f` durable; call before acknowledging
        a frame of an open object."""
        fs.sync_file(f)

    def open_objects(self):
        """Open objects found by recover() and not yet committed or aborted (see docs/spool.md)."""
        return [inc for inc in self._recovered_open if not inc.finished]

    def truncate(self, inc, nbytes):
        """Cut an open object to its first `nbytes` (drops an unacknowledged partial frame).

        MicroPython files cannot truncate: copy to a temporary name, sync, rename over."""
        if inc.size() > nbytes:
            incoming.copy_prefix(inc.path, nbytes, inc.path + ".tmp")
            fs.rename(inc.path + ".tmp", inc.path)
            fs.sync_dir(self.indir)

    def commit(self, inc, sop_instance_uid, meta):
        """Make the object a durable queue entry routed by `meta`; returns its entry id only once
        a power cut can no longer lose it. The caller has closed the file."""
        if inc.finished:
            raise ValueError("incoming object already committed or aborted")
        incoming.sync_path(inc.path)
        size = fs.size(inc.path)
        eid = self._next_id
        routed = routing.route(self.rules, self.destinations, meta)
        born = self._now_s()
        header = {"uid": sop_instance_uid, "meta": meta, "born": born, "size": size}
        entrylog.create(self._log_path(eid), header, routed)
        try:
            fs.rename(inc.path, self._data_path(eid))
        except OSError:
            fs.remove(self._log_path(eid))
            raise
        fs.sync_dir(self.qdir)
        self._next_id = eid + 1
        if inc.open_meta is not None:
            fs.remove(fs.join(self.indir, "o%d.json" % inc.number))
        self._finish(inc)
        self._entries.append([eid, size, born, self.ticks(), self._route_tuple(routed), None, None])
        self._bytes += size + ENTRY_OVERHEAD
        if not routed:
            log.warn(_SRC, "entry %d (%s) matches no destination; kept until one is added" % (
                eid, sop_instance_uid))
        return eid

    def abort(self, inc):
        """Forget an object that was never acknowledged; removes its files."""
        if inc.finished:
            return
        fs.remove(inc.path)
        if inc.open_meta is not None:
            fs.remove(fs.join(self.indir, "o%d.json" % inc.number))
        self._finish(inc)

    def _finish(self, inc):
        inc.finished = True
        self._active.pop(inc.number, None)

    # ---- capacity ---------------------------------------------------------------------------

    def used_bytes(self):
        used = self._bytes
        for inc in self._active.values():
            held = inc.size() if inc.open_meta is not None else 0
            used += held if held > inc.reserved else inc.reserved
        return used

    def busy(self):
        """0 when sources may send; else a retry-after hint in ms (BUSY in the frame protocol).

        Busy from the high watermark until usage falls to the low one (hysteresis), when the
        entry table is full, or when the dead-letter area is full under the "refuse" policy."""
        used = self.used_bytes()
        if self._busy:
            if used <= self.low:
                self._busy = False
                log.info(_SRC, "below low watermark (%d of %d bytes): accepting again" % (used, self.budget))
        elif used >= self.high:
            self._busy = True
            log.warn(_SRC, "high watermark reached (%d of %d bytes): sources must wait" % (used, self.budget))
        refusing = self.dead_policy == "refuse" and self.dead_count() >= self.dead_max
        if refusing != self._refusing:
            self._refusing = refusing
            if refusing:
                log.error(_SRC, "dead-letter area full (%d): refusing new objects until purge or requeue"
                          % self.dead_max)
        if self._busy or refusing or len(self._entries) >= self.max_items:
            return self.busy_retry_ms
        return 0

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
        """`dest` has the object. Deletes the entry once every destination it is routed to has it."""
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
        if self._complete(entry):
            self._delete(entry)

    def _give_up(self, entry):
        for dest in list(entry[_DEAD] or ()):
            entrylog.append(self._log_path(entry[_ID]), ["P", dest])
            self._set_done(entry, dest)

    def _owed(self, entry, dest):
        return dest in entry[_ROUTED] and not (entry[_DONE] and dest in entry[_DONE]) and not (
            entry[_DEAD] and dest in entry[_DEAD])

    def _complete(self, entry):
        if not entry[_ROUTED]:
            return False
        for dest in entry[_ROUTED]:
            if not entry[_DONE] or dest not in entry[_DONE]:
                return False
        return True

    def _delete(self, entry):
        eid = entry[_ID]
        self._remove_files(eid)
        for i in range(len(self._entries)):
            if self._entries[i] is entry:
                del self._entries[i]
                self._bytes -= entry[_SIZE] + ENTRY_OVERHEAD
                break

    def _remove_files(self, eid):
        # Data first: without it the log is an orphan that recover() removes.
        fs.remove(self._data_path(eid))
        fs.remove(self._log_path(eid))

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
            for entry in self._entries:
                if self._owed(entry, name):
                    pending += 1
                elif entry[_DEAD] and name in entry[_DEAD]:
                    dead += 1
            retry = state["next_retry"]
            wait = ticks_diff(retry, now) if retry is not None else 0
            dests[name] = {"last_success": state["last_success"], "last_error": state["last_error"],
                           "next_retry_s": (wait if wait > 0 else 0) / 1000, "attempts": state["attempts"],
                           "pending": pending, "dead": dead, "configured": name in self.destinations}
        return {"depth": len(self._entries), "bytes": self._bytes, "used": self.used_bytes(),
                "oldest_age_s": oldest, "busy": self.busy() != 0, "budget": self.budget,
                "high": self.high, "low": self.low, "open": len(self._active),
                "dead": self.dead_count(), "destinations": dests}

    def _describe(self, entry):
        header = self._header(entry[_ID])
        meta = header.get("meta") or {}
        done = entry[_DONE] or ()
        dead = entry[_DEAD] or {}
        return {"id": entry[_ID], "uid": header.get("uid"), "size": entry[_SIZE],
                "age_s": self.age_s(entry), "modality": meta.get("modality"),
                "series_uid": meta.get("series_uid"),
                "pending": [d for d in entry[_ROUTED] if d not in done and d not in dead],
                "done": list(done), "dead": dict(dead)}

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

    def _select(self, which):
        if which == "all":
            return self._entries[:]
        if which == "dead":
            return [e for e in self._entries if e[_DEAD]]
        entry = self._find(int(which))
        return [entry] if entry is not None else []

    def requeue(self, which):
        """Put dead-lettered (entry, destination) pairs back in the queue; returns how many."""
        count = 0
        for entry in self._select("all" if which == "dead" else which):
            for dest in list(entry[_DEAD] or ()):
                entrylog.append(self._log_path(entry[_ID]), ["Q", dest])
                del entry[_DEAD][dest]
                state = self._state(dest)
                state["next_retry"] = None
                state["attempts"] = 0
                state["head"] = None
                count += 1
            if entry[_DEAD] is not None and not entry[_DEAD]:
                entry[_DEAD] = None
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
