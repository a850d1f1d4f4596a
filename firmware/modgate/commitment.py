"""Storage Commitment on the device (PS3.4 J.3): which stored objects are asked about, when, and
what a result does to them. Between the spool (which keeps each object's per-destination state
on flash: stored, requested, confirmed, not confirmed, flagged; docs/spool.md) and the network
layer (net/commitment.py: the N-ACTION and N-EVENT-REPORT; net/scp.py: the listener).

For a destination with `commit: required`, a C-STORE success leaves the object on flash, stored
and awaiting confirmation. When that destination has nothing more to send (or a batch is full),
its worker asks (`request`): one N-ACTION per batch of at most `commit_batch_max` objects, its
data set written to flash first (dicom/workflow.py). Once the archive accepted the request, each
object's log says so ("T" line, the Transaction UID). The result may come on the same association
(awaited for `commit_report_wait_ms`) or later on a new one to the listener, also after a
restart. A committed object is done for that destination ("D"), and deleted once every
destination has it; a failed one is sent again ("F"); no result within `commit_timeout_s` and
the object is asked about again, in a new transaction; after `commit_max_requests` requests
without a result, or a failure on the last one allowed, it is flagged ("U"): kept on flash,
shown by `status` and `queue commit`, never deleted by the device.

A result is taken from a destination whose AE title called (or on its own association); it names
its transaction, but an object it names is taken even when the transaction is not (or no longer)
known: the archive's word on a SOP Instance it stored is what counts. The result's data set is
written to flash as it arrives and read back item by item (dicom/dataset.py `each`), so a
thousand references pass through the RAM of one.
"""

import json

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.dicom.part10 import EXPLICIT_VR_LE
from modgate.errors import DecodeError, DeliveryError
from modgate.port import fs
from modgate.spool import entrylog
from modgate.spool.queue import uid_key

FOLDER = "commit"
TRANSACTION_UID = 0x00081195
FAILED_SOP_SEQUENCE = 0x00081198
REFERENCED_SOP_SEQUENCE = 0x00081199
FAILURE_REASON = 0x00081197
REFERENCED_CLASS = 0x00081150
REFERENCED_INSTANCE = 0x00081155
PROCESSING_FAILURE = 0x0110
MISSING_ATTRIBUTE = 0x0120
_REF = {REFERENCED_CLASS: True, REFERENCED_INSTANCE: True}
_FAILED = {REFERENCED_CLASS: True, REFERENCED_INSTANCE: True, FAILURE_REASON: True}
_TX = 0  # transaction: [destination, ticks sent, references]
_SENT = 1
# PS3.4 J.3.3.1.1.2 Failure Reason values, for the log (the device sends the object again
# whatever the reason: each may pass by the next attempt, and an operator sees the flag after
# the last one allowed).
FAILURE_REASONS = (
    (0x0110, "processing failure"),
    (0x0112, "no such object instance"),
    (0x0119, "class/instance conflict"),
    (0x0122, "referenced SOP class not supported"),
    (0x0131, "duplicate transaction UID"),
    (0x0213, "resource limitation"),
)


def failure_text(code):
    """Words for a Failure Reason (0008,1197); 0 when the item gave none."""
    for value, text in FAILURE_REASONS:
        if value == code:
            return "0x%04X %s" % (code, text)
    return "0x%04X" % code if code else "no failure reason given"


class Commitments:
    """`settings`: a view of SETTINGS; `required(name)` says whether destination `name` confirms;
    `aets()` maps each destination name to its AE title; `new_uid()` makes a Transaction UID."""

    SETTINGS = ("commit_timeout_s", "commit_max_requests", "commit_batch_max", "commit_report_wait_ms")

    def __init__(self, spool, state_dir, settings, required, aets, new_uid):
        self.spool = spool
        self.folder = fs.join(state_dir, FOLDER)
        self.required = required
        self.aets = aets
        self.new_uid = new_uid
        self.configure(settings)
        self.txns = {}  # Transaction UID -> [destination, ticks sent, references]
        self.reports = 0
        self.committed = 0
        self.failed = 0
        self.last_report = None
        self._files = 0
        self.arriving = False  # the listener is serving an archive's association (net/scp.py)

    def configure(self, settings):
        self.timeout_ms = settings["commit_timeout_s"] * 1000
        self.max_requests = settings["commit_max_requests"]
        self.batch_max = settings["commit_batch_max"]
        self.report_wait_ms = settings["commit_report_wait_ms"]

    def recover(self, names):
        """At boot: our half-written files go; the transactions the logs name are awaited again,
        their time counted from now (a result may still come)."""
        fs.makedirs(self.folder)
        for name in fs.listdir(self.folder):
            fs.remove(fs.join(self.folder, name))
        now = ticks_ms()
        for dest in names:
            for _eid, wait in self.spool.awaiting(dest):
                request = wait[entrylog.WAIT_REQUEST]
                if request is not None:
                    tx = self.txns.setdefault(request, [dest, now, 0])
                    tx[2] += 1
        if self.txns:
            log.info("commit", "%d Storage Commitment transaction(s) awaited after restart" % len(self.txns))

    # ---- requests (a destination's worker) -----------------------------------------------------

    def _expired(self, request, now):
        tx = self.txns.get(request)
        return tx is None or ticks_diff(now, tx[_SENT]) >= self.timeout_ms

    def due(self, name, now=None):
        """True when `name` has objects to ask about (never asked, or asked too long ago)."""
        now = ticks_ms() if now is None else now
        for _eid, wait in self.spool.awaiting(name):
            request = wait[entrylog.WAIT_REQUEST]
            if request is None or self._expired(request, now):
                return True
        return False

    def full(self, name):
        """True when a whole batch waits to be asked about (ask now, even while more is owed)."""
        count = 0
        for _eid, wait in self.spool.awaiting(name):
            if wait[entrylog.WAIT_REQUEST] is None:
                count += 1
                if count >= self.batch_max:
                    return True
        return False

    def _batch(self, name, now):
        """The next batch's entry ids; objects past their last request allowed are flagged."""
        out = []
        for eid, wait in self.spool.awaiting(name):
            request = wait[entrylog.WAIT_REQUEST]
            if request is not None and not self._expired(request, now):
                continue  # in a transaction still awaited
            if wait[entrylog.WAIT_REQUESTS] >= self.max_requests:
                self.spool.flag(eid, name, "no Storage Commitment result after %d requests of %d s"
                                % (wait[entrylog.WAIT_REQUESTS], self.timeout_ms // 1000))
                continue
            out.append(eid)
            if len(out) >= self.batch_max:
                break
        for request in [r for r in self.txns if self.txns[r][0] == name and self._expired(r, now)]:
            log.warn("commit", "%s: no result for transaction %s within %d s; asking again" % (
                name, request, self.timeout_ms // 1000))
            del self.txns[request]
        return out

    async def request(self, name, session, beat):
        """Ask `name` about the next batch on its storage session, then hear a result on that
        association for a while. DeliveryError when the request failed (nothing is recorded:
        the same objects are asked about at the next try)."""
        from modgate.dicom import workflow
        from modgate.net import commitment

        batch = self._batch(name, ticks_ms())
        if not batch:
            return 0
        transaction = self.new_uid()
        path = self._file("a")
        refs = []
        try:
            f = fs.open_file(path, "wb")
            try:
                workflow.commitment_request(f, transaction, self._refs(name, batch, refs))
            finally:
                f.close()
            beat()
            status, comment = await commitment.request(session, path)
        finally:
            fs.remove(path)
        if status != 0:
            from modgate.net import status as statuses

            klass = statuses.classify(status, statuses.N_ACTION_CLASSES)[0]
            raise DeliveryError("N-ACTION (Storage Commitment request) answered %s%s" % (
                statuses.describe(status, statuses.N_ACTION_CLASSES), ": " + comment if comment else ""),
                klass != statuses.PERMANENT)
        for eid in refs:
            self.spool.mark_requested(eid, name, transaction)
        self.txns[transaction] = [name, ticks_ms(), len(refs)]
        log.info("commit", "%s accepted Storage Commitment request %s for %d object(s)" % (
            name, transaction, len(refs)))
        await commitment.await_report(session, self.report_wait_ms, self._accept_on(session, name), beat,
                                      self._arriving)
        await session.release()  # a later result comes on an association the archive opens
        return len(refs)

    def _arriving(self):
        return self.arriving

    def _refs(self, name, batch, kept):
        for eid in batch:
            uid, meta = self.spool.identity(eid)
            if uid and meta.get("sop_class_uid"):
                kept.append(eid)
                yield meta["sop_class_uid"], uid
            else:
                self.spool.flag(eid, name, "its log names no SOP Instance or Class UID to ask about")

    def _file(self, kind):
        self._files += 1
        return fs.join(self.folder, "%s%d.tmp" % (kind, self._files))

    # ---- results (the listener, or the same association) -------------------------------------

    def allowed(self, calling_aet):
        """Whether `calling_aet` is a destination that confirms (the listener's calling AE check)."""
        return bool(self._named(calling_aet))

    def _named(self, calling_aet):
        aets = self.aets()
        return [name for name in aets if aets[name] == calling_aet and self.required(name)]

    def accept(self, calling_aet, rq, explicit):
        """A request from `calling_aet` (net/service.Inbound's accept): a status, or a sink."""
        return self._take(self._named(calling_aet), rq, explicit, calling_aet)

    def _accept_on(self, session, name):
        def accept(rq):
            syntax = None
            for context_id, _abstract, syntaxes in session.contexts:
                if context_id == rq["context_id"]:
                    syntax = syntaxes[0]
            return self._take([name], rq, syntax == EXPLICIT_VR_LE, name)

        return accept

    def _take(self, names, rq, explicit, who):
        from modgate.net import commitment

        refused = commitment.refusal(rq)
        if refused is not None:
            log.warn("commit", "%s: request refused with 0x%04X" % (who, refused))
            return refused
        return _Report(self, names, explicit, self._file("r"))

    async def apply(self, report):
        """Take a whole result (the sink's file): returns the N-EVENT-REPORT-RSP status. The
        references are read into a list on flash first, then taken one by one, other tasks
        running between them (each is a synced line in an entry's log)."""
        from modgate.dicom import dataset

        results = report.path + "r"
        status = 0
        tx = None
        f = fs.open_file(report.path, "rb")
        out = None
        try:
            top = dataset.read(f, report.size, report.explicit, {TRANSACTION_UID: True})
            transaction = _text(top.get(TRANSACTION_UID))
            if not transaction:
                log.warn("commit", "%s: result without a Transaction UID, not taken" % report.who())
                return MISSING_ATTRIBUTE
            tx = self.txns.get(transaction)
            names = [tx[0]] if tx is not None and tx[0] in report.names else report.names
            if not names:
                return PROCESSING_FAILURE
            f.seek(0)
            out = fs.open_file(results, "wb")

            def note(item, code):
                out.write(json.dumps([_text(item.get(REFERENCED_INSTANCE)), code]) + "\n")

            wanted = {FAILED_SOP_SEQUENCE: _FAILED, REFERENCED_SOP_SEQUENCE: _REF}
            dataset.read(f, report.size, report.explicit, wanted,
                         {FAILED_SOP_SEQUENCE: lambda item: note(item, _us(item.get(FAILURE_REASON)) or 0),
                          REFERENCED_SOP_SEQUENCE: lambda item: note(item, -1)})
        except (DecodeError, OSError) as exc:
            log.error("commit", "%s: result unreadable (%s); what was read of it is taken" % (
                report.who(), exc))
            status = PROCESSING_FAILURE
        finally:
            f.close()
            if out is not None:
                out.close()
        if out is None:
            return status
        counts = await self._take_results(results, names)
        fs.remove(results)
        if tx is not None:
            del self.txns[transaction]  # what it named and the result left out is asked about again
        self.reports += 1
        self.last_report = transaction
        log.info("commit", "result for %s from %s: %d committed, %d failed, %d not awaited%s" % (
            transaction, ",".join(names), counts[0], counts[1], counts[2],
            "" if tx is not None else " (transaction not awaited)"))
        return status

    async def _take_results(self, path, names):
        """[committed, failed, unknown] after taking each line of a result's list."""
        from modgate.port import aio

        indexes = dict((name, self.spool.awaiting_keys(name)) for name in names)
        counts = [0, 0, 0]
        for line in entrylog.lines(path):
            found = self._find(names, indexes, line[0]) if len(line) == 2 else None
            if found is None:
                counts[2] += 1
            elif line[1] < 0:
                counts[0] += 1
                self.committed += 1
                self.spool.mark_done(found[1], found[0])
            else:
                counts[1] += 1
                self.failed += 1
                self._failed(found[0], found[1], line[1])
            if not (counts[0] + counts[1] + counts[2]) % 8:
                await aio.sleep_ms(0)
        return counts

    def _failed(self, name, eid, code):
        why = "Storage Commitment failed: " + failure_text(code)
        wait = self.spool.wait_state(eid, name)
        if wait is not None and wait[entrylog.WAIT_REQUESTS] >= self.max_requests:
            self.spool.flag(eid, name, why + " (last request allowed)")
        else:
            self.spool.mark_unconfirmed(eid, name, why)

    def _find(self, names, indexes, uid):
        """(destination, entry id) of the awaiting entry with SOP Instance UID `uid`, or None."""
        key = uid_key(uid)
        for name in names:
            for eid in indexes[name].get(key, ()):
                if self.spool.identity(eid)[0] == uid:
                    indexes[name][key].remove(eid)
                    return name, eid
        return None

    def status(self):
        return {"transactions": len(self.txns), "results": self.reports, "committed": self.committed,
                "failed": self.failed, "last_result": self.last_report}


class _Report:
    """One N-EVENT-REPORT's data set on its way to flash (the sink of net/service.Inbound)."""

    def __init__(self, owner, names, explicit, path):
        self.owner = owner
        self.names = names
        self.explicit = explicit
        self.path = path
        self.size = 0
        self.f = fs.open_file(path, "wb")

    def who(self):
        return ",".join(self.names) or "an unknown destination"

    def write(self, fragment):
        self.f.write(fragment)
        self.size += len(fragment)

    async def end(self):
        self.f.close()
        try:
            return await self.owner.apply(self)
        finally:
            fs.remove(self.path)

    def discard(self):
        self.f.close()
        fs.remove(self.path)


def _us(raw):
    return raw[0] | (raw[1] << 8) if raw and len(raw) == 2 else None


def _text(raw):
    if not raw:
        return ""
    try:
        return bytes(raw).decode().rstrip(" \x00")
    except ValueError:
        return ""
