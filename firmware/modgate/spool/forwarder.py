"""Delivers queued entries to their destinations, one attempt per step() so the device's main
loop stays responsive. Per destination: FIFO (so each series arrives in acquisition order),
its own backoff, its own session; a dead destination only ever costs its own attempts."""

from modgate import log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.errors import DeliveryError, ModgateError
from modgate.spool import backoff

_SRC = "spool"

DEFAULT_POLICY = {
    "base_backoff_ms": 1000,
    "max_backoff_ms": 300000,
    "max_attempts": 100,  # per entry and destination, counted in this boot; 0 = no limit
    "max_age_s": 7 * 86400,  # 0 = no limit
    "jitter": 0.2,
}


class Forwarder:
    def __init__(self, spool, session_factory, policy=None, rand=backoff.uniform):
        self.spool = spool
        self.factory = session_factory
        merged = dict(DEFAULT_POLICY)
        merged.update(policy or {})
        self.base_ms = int(merged["base_backoff_ms"])
        self.max_ms = int(merged["max_backoff_ms"])
        self.max_attempts = int(merged["max_attempts"])
        self.max_age_s = int(merged["max_age_s"])
        self.jitter = float(merged["jitter"])
        self.rand = rand
        self._sessions = {}
        self._turn = 0

    def step(self, now_ms=None):
        """At most one delivery attempt (or one expiry to the dead-letter area); True if it did
        work. Destinations take turns, so one in backoff or failing never starves the others."""
        now = ticks_ms() if now_ms is None else now_ms
        self._release_idle()
        dests = self.spool.destinations
        count = len(dests)
        for i in range(count):
            name = dests[(self._turn + i) % count]
            if self._waiting(name, now):
                continue
            entry = self.spool.next_for(name)
            if entry is None:
                continue
            self._turn = (self._turn + i + 1) % count
            self._attempt(name, entry, now)
            return True
        return False

    def next_due_ms(self, now_ms=None):
        """Milliseconds until step() has work: 0 now, None when nothing is owed anywhere."""
        now = ticks_ms() if now_ms is None else now_ms
        due = None
        for name in self.spool.destinations:
            if self.spool.next_for(name) is None:
                continue
            retry = self.spool.dest_status(name)["next_retry"]
            wait = ticks_diff(retry, now) if retry is not None else 0
            wait = wait if wait > 0 else 0
            if due is None or wait < due:
                due = wait
        return due

    def close(self):
        for name in list(self._sessions):
            self._drop(name)

    def _waiting(self, name, now):
        retry = self.spool.dest_status(name)["next_retry"]
        return retry is not None and ticks_diff(retry, now) > 0

    def _attempt(self, name, entry, now):
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
        try:
            session = self.session(name)
            status, klass, message = session.store(spool.data_path(eid))
            if klass not in ("success", "warning"):
                raise DeliveryError(message or ("status " + str(status)), klass == "transient")
        except DeliveryError as exc:
            if exc.scope == "destination" and not exc.transient:
                self._refused(name, state, now, str(exc))
            else:
                self._failed(name, state, eid, now, str(exc), exc.transient)
            return
        except (ModgateError, OSError) as exc:
            # Link timeouts, resets and the like: the network may come back.
            self._failed(name, state, eid, now, exc.__class__.__name__ + " " + str(exc), True)
            return
        if klass == "warning":
            log.warn(_SRC, "%s stored entry %d with warning %s: %s" % (name, eid, status, message))
        spool.mark_done(eid, name)
        state["last_success"] = spool.wall_seconds()
        state["attempts"] = 0
        state["head"] = None
        state["next_retry"] = None

    def _failed(self, name, state, eid, now, message, transient):
        state["last_error"] = message
        if not transient:
            # The peer refused this object (PS3.4 B.2.3 failure status): retrying cannot help,
            # and the association is still good for the next one.
            self._dead(name, state, eid, "permanent: " + message)
            return
        self._drop(name)
        attempts = state["attempts"]
        delay = backoff.delay_ms(attempts, self.base_ms, self.max_ms, self.jitter, self.rand)
        state["next_retry"] = ticks_add(now, delay)
        if self.max_attempts and attempts >= self.max_attempts:
            self._dead(name, state, eid, "gave up after %d attempts: %s" % (attempts, message))
            state["next_retry"] = ticks_add(now, delay)  # the destination is still unwell
            return
        log.warn(_SRC, "%s: entry %d failed (%s); attempt %d, retry in %d ms" % (
            name, eid, message, attempts, delay))

    def _refused(self, name, state, now, message):
        """The destination refused the association for good (e.g. our AE title unknown there):
        no object is to blame, so none is dead-lettered; its queue waits at the longest backoff
        until someone fixes the configuration (PS3.8 9.3.4: rejected-permanent)."""
        state["last_error"] = message
        state["attempts"] -= 1
        self._drop(name)
        state["next_retry"] = ticks_add(now, self.max_ms)
        log.error(_SRC, "%s refuses associations (%s); holding its queue, next try in %d ms" % (
            name, message, self.max_ms))

    def _dead(self, name, state, eid, reason):
        state["last_error"] = reason
        state["attempts"] = 0
        state["head"] = None
        state["next_retry"] = None
        self.spool.mark_dead(eid, name, reason)

    def session(self, name):
        """The destination's session, opened on first use and kept while it is in use."""
        session = self._sessions.get(name)
        if session is None:
            session = self.factory(name)
            self._sessions[name] = session
        return session

    def _drop(self, name):
        session = self._sessions.pop(name, None)
        if session is not None:
            try:
                session.release()
            except (OSError, ModgateError) as exc:
                log.debug(_SRC, "%s: release failed: %s" % (name, exc))

    def _release_idle(self):
        for name in list(self._sessions):
            if name not in self.spool.destinations or self._sessions[name].idle_expired():
                self._drop(name)
