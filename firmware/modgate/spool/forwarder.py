"""Delivers queued entries: one worker task per destination, each with its own session, backoff
and association, so a destination that is down, slow or a black hole only ever costs its own
time. Per destination the order is FIFO (each series arrives in acquisition order).

`run(name, beat)` is a destination's worker (the device core starts one per destination and
cancels it when the destination goes); `attempt(name)` is one delivery attempt of it. `echo`
shares the destination's session, taking turns with deliveries through its lock.

With a `committer` (modgate.commitment), a destination that confirms (`committer.required`)
keeps each object it stored until it confirmed it: the worker marks it stored, and asks for the
confirmation of what it stored once nothing more is owed to it now (or a batch is full), on the
same session, backing off as deliveries do when that fails.
"""

from modgate import log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.errors import DeliveryError, ModgateError
from modgate.port import aio
from modgate.spool import backoff

_SRC = "spool"
# A worker with nothing owed looks again this often (new objects, an operator's retry); a
# nudge() wakes it at once.
IDLE_POLL_MS = 250
NUDGE_MS = 50  # how soon an idle worker sees a nudge()
OFFLINE_POLL_MS = 500

DEFAULT_POLICY = {
    "base_backoff_ms": 1000,
    "max_backoff_ms": 300000,
    "max_attempts": 100,  # per entry and destination, counted in this boot; 0 = no limit
    "max_age_s": 7 * 86400,  # 0 = no limit
    "jitter": 0.2,
}


class Forwarder:
    def __init__(self, spool, session_factory, policy=None, rand=backoff.uniform, online=None, settle=None,
                 committer=None):
        self.spool = spool
        self.committer = committer
        self.factory = session_factory
        merged = dict(DEFAULT_POLICY)
        merged.update(policy or {})
        self.base_ms = int(merged["base_backoff_ms"])
        self.max_ms = int(merged["max_backoff_ms"])
        self.max_attempts = int(merged["max_attempts"])
        self.max_age_s = int(merged["max_age_s"])
        self.jitter = float(merged["jitter"])
        self.rand = rand
        self.online = online or _always
        self.settle = settle  # called after each attempt (the device collects and notes its heap)
        self._sessions = {}
        self._locks = {}
        self._nudged = None  # a name, or True for all: look at the queue now
        self._beats = {}

    # ---- a destination's worker ---------------------------------------------------------------

    async def run(self, name, beat):
        """Deliver to `name` for as long as it is configured. `beat()` reports progress to the
        device's supervisor: called at least every IDLE_POLL_MS, and around every network wait
        (each bounded by the session's timeouts)."""
        self._beats[name] = beat
        while name in self.spool.destinations:
            beat()
            if not self.online():
                await aio.sleep_ms(OFFLINE_POLL_MS)
                continue
            due = self.due_ms(name)
            if self._commit_due(name, due):
                await self._commit(name)
                if self.settle is not None:
                    self.settle()
                continue
            if due != 0:
                await self._release_if_idle(name)
                await self._idle(name, IDLE_POLL_MS if due is None or due > IDLE_POLL_MS else due)
                continue
            await self.attempt(name)
            if self.settle is not None:
                self.settle()
        await self.close(name)

    def nudge(self, name=None):
        """Wake a destination's worker (every worker when `name` is None) to look at the queue."""
        self._nudged = True if name is None else name

    async def _idle(self, name, wait_ms):
        """Sleep up to `wait_ms`, in plain sleeps of NUDGE_MS (an Event with a timeout would go
        through wait_for: two tasks and an exception per wait, heap churn on a small board)."""
        while wait_ms > 0:
            if self._nudged is True or self._nudged == name:
                self._nudged = None
                return
            step = NUDGE_MS if wait_ms > NUDGE_MS else wait_ms
            await aio.sleep_ms(step)
            wait_ms -= step

    def due_ms(self, name, now_ms=None):
        """Milliseconds until `name` has work: 0 now, None when nothing is owed to it."""
        if self.spool.next_for(name) is None:
            return None
        retry = self.spool.dest_status(name)["next_retry"]
        if retry is None:
            return 0
        wait = ticks_diff(retry, ticks_ms() if now_ms is None else now_ms)
        return wait if wait > 0 else 0

    async def attempt(self, name, now_ms=None):
        """At most one delivery attempt to `name` (or one expiry to the dead-letter area); True
        if it did work."""
        now = ticks_ms() if now_ms is None else now_ms
        if self.due_ms(name, now) != 0:
            return False
        entry = self.spool.next_for(name)
        async with self._lock(name):
            await self._attempt(name, entry, now, now_ms is None)
        return True

    async def echo(self, name):
        """C-ECHO round trip to `name` in ms, through the destination's own session."""
        async with self._lock(name):
            return await self.session(name).echo()

    async def close(self, name=None):
        """Release the session of `name` (every session when None): orderly, when it can be."""
        for key in list(self._sessions):
            if name is None or key == name:
                await self._drop(key)

    def drop_all(self):
        """Close every association at once, without waiting for the peers (configuration changed
        under running workers: their next attempt opens a new one with the new settings)."""
        for session in self._sessions.values():
            session.drop()
        self._sessions = {}

    # ---- one attempt --------------------------------------------------------------------------

    async def _attempt(self, name, entry, now, live_clock):
        spool = self.spool
        state = spool.dest_status(name)
        eid = entry[0]
        if state["head"] != eid:
            state["head"] = eid
            state["attempts"] = 0
        if self.max_age_s and spool.age_s(entry, now) > self.max_age_s:
            self._dead(name, state, eid, "not delivered within max_age_s=%d" % self.max_age_s)
            return
        state["attempts"] += 1
        session = None
        try:
            session = self.session(name)
            status, klass, message = await session.store(spool.data_path(eid))
            if klass == "duplicate" and not self._maybe_delivered(state, eid):
                self._dead(name, state, eid, "the archive already holds SOP Instance UID of entry %d, which "
                           "no attempt of ours can have delivered: a UID collision or a foreign copy; kept "
                           "for an operator (queue retry sends it again)" % eid)
                return
            if klass not in ("success", "warning", "duplicate"):
                raise DeliveryError(message or ("status " + str(status)), klass == "transient")
        except DeliveryError as exc:
            if session is not None and session.sent_whole:
                state["maybe_delivered"] = eid  # sent whole, answer lost: the archive may have it
            if live_clock:
                now = ticks_ms()  # the attempt took time: back off from its end
            if exc.scope == "destination" and not exc.transient:
                await self._refused(name, state, now, str(exc))
            else:
                await self._failed(name, state, eid, now, str(exc), exc.transient)
            return
        except (ModgateError, OSError, MemoryError) as exc:
            # Link timeouts, resets, no heap for a session: all may pass; the object is kept.
            end = ticks_ms() if live_clock else now
            await self._failed(name, state, eid, end, exc.__class__.__name__ + " " + str(exc), True)
            return
        if klass == "warning":
            log.warn(_SRC, "%s stored entry %d with warning %s: %s" % (name, eid, status, message))
        elif klass == "duplicate":
            log.warn(_SRC, "%s already holds entry %d (an earlier attempt's answer was lost): counted as "
                     "delivered" % (name, eid))
        if self.committer is not None and self.committer.required(name):
            spool.mark_stored(eid, name)  # done only once the destination confirmed it
        else:
            spool.mark_done(eid, name)
        state["last_success"] = spool.wall_seconds()
        state["attempts"] = 0
        state["head"] = None
        state["next_retry"] = None

    # ---- confirmation of what was stored (Storage Commitment) ---------------------------------

    def _commit_due(self, name, due, now=None):
        committer = self.committer
        if committer is None or not committer.required(name):
            return False
        retry = self.spool.dest_status(name).get("commit_retry")
        now = ticks_ms() if now is None else now
        if retry is not None and ticks_diff(retry, now) > 0:
            return False
        return committer.due(name, now) and (due != 0 or committer.full(name))

    async def _commit(self, name):
        """One confirmation request to `name` and the wait for its result on that association;
        the association is released after it (a later result comes on one the archive opens)."""
        state = self.spool.dest_status(name)
        beat = self._beats.get(name) or _nothing
        async with self._lock(name):
            try:
                await self.committer.request(name, self.session(name), beat)
                state["commit_attempts"] = 0
                state["commit_retry"] = None
            except (ModgateError, OSError, MemoryError) as exc:
                attempts = state.get("commit_attempts", 0) + 1
                state["commit_attempts"] = attempts
                delay = backoff.delay_ms(attempts, self.base_ms, self.max_ms, self.jitter, self.rand)
                if isinstance(exc, DeliveryError) and not exc.transient:
                    delay = self.max_ms
                state["commit_retry"] = ticks_add(ticks_ms(), delay)
                state["last_error"] = "commitment request: " + str(exc)
                log.warn(_SRC, "%s: commitment request failed (%s); again in %d ms" % (name, exc, delay))
            finally:
                await self._drop(name)

    def _maybe_delivered(self, state, eid):
        """Whether the archive's copy of entry `eid` can be ours (PS3.7 C.4.5, 0111): an earlier
        attempt sent it whole and lost the answer, or it was committed before this boot (a power
        cut can fall between sending and logging the delivery). Our UIDs are unique, so then it
        is; otherwise an archive holding that UID holds something else."""
        return state.get("maybe_delivered") == eid or eid < self.spool.recovered_below

    async def _failed(self, name, state, eid, now, message, transient):
        state["last_error"] = message
        if not transient:
            # The peer refused this object (PS3.4 B.2.3 failure status): retrying cannot help,
            # and the association is still good for the next one.
            self._dead(name, state, eid, "permanent: " + message)
            return
        await self._drop(name)
        attempts = state["attempts"]
        delay = backoff.delay_ms(attempts, self.base_ms, self.max_ms, self.jitter, self.rand)
        state["next_retry"] = ticks_add(now, delay)
        if self.max_attempts and attempts >= self.max_attempts:
            self._dead(name, state, eid, "gave up after %d attempts: %s" % (attempts, message))
            state["next_retry"] = ticks_add(now, delay)  # the destination is still unwell
            return
        log.warn(_SRC, "%s: entry %d failed (%s); attempt %d, retry in %d ms" % (
            name, eid, message, attempts, delay))

    async def _refused(self, name, state, now, message):
        """The destination refused the association for good (e.g. our AE title unknown there):
        no object is to blame, so none is dead-lettered; its queue waits at the longest backoff
        until someone fixes the configuration (PS3.8 9.3.4: rejected-permanent)."""
        state["last_error"] = message
        state["attempts"] -= 1
        await self._drop(name)
        state["next_retry"] = ticks_add(now, self.max_ms)
        log.error(_SRC, "%s refuses associations (%s); holding its queue, next try in %d ms" % (
            name, message, self.max_ms))

    def _dead(self, name, state, eid, reason):
        state["last_error"] = reason
        state["attempts"] = 0
        state["head"] = None
        state["next_retry"] = None
        self.spool.mark_dead(eid, name, reason)

    # ---- sessions -----------------------------------------------------------------------------

    def session(self, name):
        """The destination's session, opened on first use and kept while it is in use."""
        session = self._sessions.get(name)
        if session is None:
            session = self.factory(name)
            # A long C-STORE is progress, PDU by PDU: the worker must not look stuck meanwhile.
            session.on_progress = self._beats.get(name)
            self._sessions[name] = session
        return session

    def _lock(self, name):
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = aio.Lock()
        return lock

    async def _release_if_idle(self, name):
        session = self._sessions.get(name)
        if session is not None and session.idle_expired():
            async with self._lock(name):
                await self._drop(name)

    async def _drop(self, name):
        session = self._sessions.pop(name, None)
        if session is not None:
            try:
                await session.release()
            except (OSError, ModgateError) as exc:
                log.debug(_SRC, "%s: release failed: %s" % (name, exc))


def _always():
    return True


def _nothing():
    pass
