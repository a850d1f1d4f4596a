"""Trusted time: the device clock kept right by an SNTP server (RFC 4330, port/sntp.py).

A task of the device core: every `sntp_interval_s` (and a minute after a failure) it asks the
`sntp_server` once and corrects the clock when it is a second or more off (the clock keeps
whole seconds: a smaller correction is noise). Without a server it does nothing: the clock is
whatever `time set` made it. `status()` is what the console's `status` shows: server, offset
and delay of the last exchange, when it was, and the last error. Objects written before the
clock was ever set keep their epoch dates and the warnings they were written with
(docs/conformance-statement.md 6.4).
"""

from modgate import log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.errors import ClockError
from modgate.port import aio, clock

TIMEOUT_MS = 3000  # one exchange; a server this slow is as good as none
RETRY_MS = 60000  # after a failure
STEP_WARN_MS = 5000  # a correction this large is worth a warning (the clock was wrong)
_SET_THRESHOLD_MS = 1000  # the clock keeps whole seconds: a smaller correction is noise


class TimeSync:
    def __init__(self, device):
        self.device = device
        self.last_sync = None  # clock.unix_ms() just after the last good exchange
        self.offset_ms = None
        self.delay_ms = None
        self.stratum = None
        self.last_error = None
        self._due = ticks_ms()
        self._server = ""

    def server(self):
        """(host, port) of the configured server, or None."""
        text = self.device.config.get("sntp_server")
        if not text:
            return None
        host, _, port = text.partition(":")
        from modgate.port import sntp

        return host, int(port) if port else sntp.PORT

    def changed(self):
        """Settings were applied: ask the (new) server now."""
        self._due = ticks_ms()  # the run loop looks within a second

    async def run(self, beat):
        while True:
            beat()
            where = self.server()
            if where is not None and self.device.online and ticks_diff(ticks_ms(), self._due) >= 0:
                await self.sync_once(where)
                beat()
            # A plain sleep, as the core's idle workers wait (no Event behind a timed wait: heap).
            await aio.sleep_ms(1000)

    async def sync_once(self, where):
        """One exchange with the server; the clock corrected when it is off. True when it worked."""
        from modgate.port import sntp

        name = "%s:%d" % where
        if name != self._server:
            self._server = name
            self.last_sync = None
        try:
            offset, delay, stratum = await sntp.query(where[0], where[1], TIMEOUT_MS)
        except ClockError as exc:
            if str(exc) != self.last_error:
                log.warn("clock", str(exc) + "; clock left as it is, next try in %d s" % (RETRY_MS // 1000))
            self.last_error = str(exc)
            self._due = ticks_add(ticks_ms(), RETRY_MS)
            return False
        first = self.last_sync is None
        if offset >= _SET_THRESHOLD_MS or offset <= -_SET_THRESHOLD_MS or not clock.is_set():
            self.device.set_clock_unix_ms(clock.unix_ms() + offset, "sntp " + name)
        self.offset_ms, self.delay_ms, self.stratum = offset, delay, stratum
        self.last_sync = clock.unix_ms()
        self.last_error = None
        text = "synchronised with %s: offset %+d ms, delay %d ms, stratum %d" % (name, offset, delay, stratum)
        if offset >= STEP_WARN_MS or offset <= -STEP_WARN_MS:
            log.warn("clock", text + " (the clock was that far off)")
        elif first:
            log.info("clock", text)
        self._due = ticks_add(ticks_ms(), self.device.config.get("sntp_interval_s") * 1000)
        return True

    def status(self):
        where = self.device.config.get("sntp_server")
        if not where:
            return {"server": None}
        last = None
        if self.last_sync is not None:
            last = "%04d-%02d-%02dT%02d:%02d:%02dZ" % clock.utc(self.last_sync // 1000)
        return {"server": where, "last_sync": last, "offset_ms": self.offset_ms, "delay_ms": self.delay_ms,
                "stratum": self.stratum, "last_error": self.last_error}
