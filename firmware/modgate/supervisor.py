"""The device's tasks, their heartbeats, and the supervisor that feeds the watchdog.

Every task of the core is started here with a *bound*: the longest it may go without reporting
progress (`beat()`), which is more than its longest legitimate wait (a network timeout, a poll
period). The supervisor wakes every TICK_MS: it records how late it woke (the loop's longest
stall: how long some task held the CPU) and, while every task beat within its bound, feeds the
watchdog. A task that stops making progress is stuck: the supervisor logs it once and stops
feeding, so the (hardware or emulated) watchdog resets the board. A slow peer is not stuck: its
task beats around each bounded wait. A task that raises is logged and started again after
RESTART_MS (the device must outlive any one failure; everything acknowledged is on flash).
"""

import gc

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.port import aio

TICK_MS = 20
RESTART_MS = 1000
_TASK = 0
_BEAT = 1
_BOUND = 2
_FROZEN = 3


class Supervisor:
    def __init__(self, watchdog=None, feed_ms=1000, on_memory_error=None, on_stuck=None):
        self.watchdog = watchdog
        self.feed_ms = feed_ms
        self.on_memory_error = on_memory_error
        self.on_stuck = on_stuck  # (line) -> None: keeps the cause where the next boot finds it
        self.tasks = {}  # name -> [asyncio task, last beat (ticks), bound ms, frozen]
        self.stall_max_ms = 0
        self.stall_max_at = None  # name of the task that ran just before the longest stall
        self.stuck = None  # name of the first stuck task, once the watchdog is left to fire
        self.crashes = 0
        self._last = None

    # ---- tasks --------------------------------------------------------------------------------

    def spawn(self, name, body, bound_ms, restart=True):
        """Start task `name` running `body(beat)` (a coroutine function). With `restart` it is
        started again when it raises; without, it leaves the table when it ends."""
        self.cancel(name)
        entry = [None, ticks_ms(), bound_ms, False]

        def beat():
            if not entry[_FROZEN]:
                entry[_BEAT] = ticks_ms()
                self._last = name

        self.tasks[name] = entry
        entry[_TASK] = aio.create_task(self._guard(name, entry, body, beat, restart))
        return entry[_TASK]

    def cancel(self, name):
        entry = self.tasks.pop(name, None)
        if entry is not None and entry[_TASK] is not None:
            entry[_TASK].cancel()

    def cancel_all(self, prefix=""):
        for name in list(self.tasks):
            if name.startswith(prefix):
                self.cancel(name)

    def names(self, prefix=""):
        return [name for name in self.tasks if name.startswith(prefix)]

    def freeze(self, name):
        """Make task `name` stop reporting progress, as a stuck task would: the commissioning
        check that the watchdog really resets the board (console `selftest watchdog`)."""
        entry = self.tasks.get(name)
        if entry is None:
            return False
        entry[_FROZEN] = True
        log.warn("app", "selftest: task %s no longer reports progress; the watchdog should reset the board "
                 "within %d ms" % (name, entry[_BOUND] + 2 * self.feed_ms))
        return True

    async def _guard(self, name, entry, body, beat, restart):
        while True:
            try:
                await body(beat)
            except aio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the device
                self.crashes += 1
                log.error("app", "task %s failed: %s: %s" % (name, type(exc).__name__, exc))
                if isinstance(exc, MemoryError) and self.on_memory_error is not None:
                    self.on_memory_error()
                gc.collect()
                if restart and self.tasks.get(name) is entry:
                    beat()
                    await aio.sleep_ms(RESTART_MS)
                    continue
            if self.tasks.get(name) is entry:
                del self.tasks[name]
            return

    # ---- the supervisor's own loop ------------------------------------------------------------

    async def run(self):
        """Measure stalls and feed the watchdog while every task is alive. Never returns."""
        last_feed = ticks_ms()
        self._feed()
        while True:
            before = ticks_ms()
            await aio.sleep_ms(TICK_MS)
            now = ticks_ms()
            late = ticks_diff(now, before) - TICK_MS
            if late > self.stall_max_ms:
                self.stall_max_ms = late
                self.stall_max_at = self._last
            if ticks_diff(now, last_feed) >= self.feed_ms:
                last_feed = now
                if self.check(now) is None:
                    self._feed()

    def check(self, now=None):
        """The name of a task that went past its bound (logged once), or None when all are alive."""
        now = ticks_ms() if now is None else now
        for name in self.tasks:
            entry = self.tasks[name]
            age = ticks_diff(now, entry[_BEAT])
            if age > entry[_BOUND]:
                if self.stuck is None:
                    self.stuck = name
                    line = "task %s made no progress for %d ms (bound %d ms)" % (name, age, entry[_BOUND])
                    log.error("app", line + ": not feeding the watchdog, so it resets the board")
                    if self.on_stuck is not None:
                        self.on_stuck(line)
                return name
        return None

    def _feed(self):
        if self.watchdog is not None:
            self.watchdog.feed()

    def status(self, now=None):
        """{name: age of its last progress in ms} and the loop's longest stall, for `status`."""
        now = ticks_ms() if now is None else now
        ages = {}
        for name in self.tasks:
            ages[name] = ticks_diff(now, self.tasks[name][_BEAT])
        return {
            "tasks": ages,
            "loop_stall_max_ms": self.stall_max_ms,
            "loop_stall_max_after": self.stall_max_at,
            "task_failures": self.crashes,
            "stuck": self.stuck,
        }
