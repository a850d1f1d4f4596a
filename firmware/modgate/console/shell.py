"""The console: bytes in (console.feed), replies out (stream.write(bytes)); PIN window; never evals.

Human mode echoes what is typed and answers in text after a prompt; JSON mode (`json on`, the
console_json setting, or `--json` as a command's last word) answers every line with exactly one
line {"ok": true, "cmd": ..., "data": ...} or {"ok": false, "cmd": ..., "code": ..., "error": ...}
and neither echoes nor prompts, so a host can read replies line by line.
Error codes: usage, unknown, invalid (a value failed validation), denied (PIN needed or wrong),
locked (wait after wrong PINs), failed (the device could not do it), line (bad input line),
internal (a bug; logged).
"""

import json

from modgate import VERSION, log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.console.line import CANCEL, ERROR, LINE, LineEditor
from modgate.console.tokens import UsageError, split

# The command table and the text renderer (about half the console's RAM) are imported when the
# console starts (Console.start), at boot: loaded later, into the heap of a busy board, they may
# find no room, and a field engineer must always get an answer.
from modgate.errors import ConfigError, ModgateError

PIN_DELAY_FIRST_MS = 1000
PIN_DELAY_MAX_MS = 300000


class Denied(ModgateError):
    def __init__(self, message, code="denied"):
        super().__init__(message)
        self.code = code


class Console:
    def __init__(self, device, stream, max_line=240):
        self.device = device
        self.stream = stream
        self.editor = LineEditor(max_line)
        self.json = False
        self.after_reply = None
        self._unlocked_until = None
        self._failures = 0
        self._retry_at = None
        try:
            self.set_json(bool(device.config.get("console_json")))
        except ModgateError:
            self.set_json(False)

    # ---- I/O ----

    def start(self):
        """Greet a human (JSON mode stays silent until asked)."""
        if not self.json:
            self._write("modgate " + VERSION + " console; type help\r\n")
            self._prompt()

    async def feed(self, data):
        """Handle received bytes: echo, and run each complete line. A command that waits on the
        network (dest echo) waits here; the device's other tasks go on meanwhile."""
        pos = 0
        n = len(data)
        while pos < n:
            pos, event = self.editor.feed(data, pos)
            echo = self.editor.take_echo()
            if echo:
                self.stream.write(echo)
            if event is None:
                continue
            kind, value = event
            if kind == LINE:
                await self.run_line(value)
            elif kind == ERROR:
                self._reply({"ok": False, "cmd": "", "code": "line", "error": value}, self.json, None)
            elif kind == CANCEL and not self.json:
                self._prompt()

    async def run_line(self, line):
        """Execute one line and write its reply (and the prompt in human mode)."""
        as_json = self.json
        if line.endswith(" --json") or line == "--json":
            line = line[:-6].strip()
            as_json = True
        reply, entry = await self.execute(line)
        if reply is not None:
            self._reply(reply, as_json, entry)
        elif not as_json:
            self._prompt()
        after, self.after_reply = self.after_reply, None
        if after is not None:
            after()

    async def execute(self, line):
        """(reply dict or None for a blank line, table entry or None). Never raises (but for
        cancellation, which is the device stopping)."""
        entry = None
        name = ""
        try:
            words = split(line)
            if not words:
                return None, None
            name = words[0][:32]
            from modgate.console import commands

            entry, args = commands.find(words)
            name = entry[0] + (" " + entry[1] if entry[1] else "")
            self._authorize(entry, args)
            data = entry[3](self, args)
            if hasattr(data, "send"):
                data = await data  # a handler that talks to the network returns a coroutine
            return {"ok": True, "cmd": name, "data": data}, entry
        except UsageError as exc:
            return _error(name, exc.code, exc), entry
        except ConfigError as exc:
            return _error(name, "invalid", exc), entry
        except Denied as exc:
            return _error(name, exc.code, exc), entry
        except ModgateError as exc:
            return _error(name, "failed", exc), entry
        except MemoryError as exc:
            try:
                log.warn("console", "'" + name + "': out of memory (" + str(exc) + ")")
            except MemoryError:
                pass
            return _error(name, "internal", "out of memory"), entry
        except Exception as exc:  # a bug in a handler or the device must not kill the console
            log.error("console", "'" + name + "' raised " + type(exc).__name__ + ": " + str(exc)[:80])
            return _error(name, "internal", type(exc).__name__ + ": " + str(exc)[:80]), entry

    def _reply(self, reply, as_json, entry):
        if as_json:
            try:
                # Streamed straight to a native stream (UART, stdout) on MicroPython: no
                # reply-sized string is built, which a busy, fragmented heap may not hold.
                json.dump(reply, self.stream)
                self._write("\r\n")
            except (OSError, TypeError):
                try:
                    text = json.dumps(reply)
                except (TypeError, ValueError) as exc:
                    reason = "unencodable reply: " + str(exc)
                    text = json.dumps(_error(reply.get("cmd", ""), "internal", reason))
                self._write(text + "\r\n")
            return
        from modgate.console import render

        for line in render.reply_lines(reply, entry):
            self._write(line + "\r\n")
        self._prompt()

    def _prompt(self):
        self._write("modgate" + ("# " if self.privilege_state() == "unlocked" else "> "))

    def _write(self, text):
        self.stream.write(text.encode())

    def set_json(self, on):
        self.json = on
        self.editor.echo = not on

    # ---- privilege ----

    def _authorize(self, entry, args):
        from modgate.console import commands

        priv = entry[2]
        if priv == commands.PRIV_KEY:
            priv = self.device.config.is_privileged(args[0]) if args else False
        if priv and not self.unlocked():
            usage = entry[0] + (" " + entry[1] if entry[1] else "")
            raise Denied("'" + usage + "' needs the PIN: type 'unlock PIN' first")

    def unlocked(self):
        if not self.device.config.has_pin():
            return True
        until = self._unlocked_until
        return until is not None and ticks_diff(until, ticks_ms()) > 0

    def privilege_state(self):
        """'open' (no PIN provisioned), 'unlocked' or 'locked'."""
        if not self.device.config.has_pin():
            return "open"
        return "unlocked" if self.unlocked() else "locked"

    def unlock(self, pin):
        """Check `pin`. A wrong PIN refuses further attempts for a doubling delay; nothing sleeps."""
        conf = self.device.config
        if not conf.has_pin():
            return {"privileged": "open", "note": "no PIN provisioned; privileged commands are open"}
        now = ticks_ms()
        if self._retry_at is not None:
            wait = ticks_diff(self._retry_at, now)
            if wait > 0:
                raise Denied("too many wrong PINs; try again in %d s" % ((wait + 999) // 1000), "locked")
        if not conf.check_pin(pin):
            self._failures += 1
            delay = PIN_DELAY_FIRST_MS << min(self._failures - 1, 12)
            delay = min(delay, PIN_DELAY_MAX_MS)
            self._retry_at = ticks_add(now, delay)
            self._unlocked_until = None
            log.warn("console", "wrong PIN (%d in a row); wait %d s" % (self._failures, delay // 1000))
            raise Denied("wrong PIN; next attempt allowed in %d s" % ((delay + 999) // 1000))
        self._failures = 0
        self._retry_at = None
        return self.grant()

    def grant(self):
        """Open the privileged window now (after a right PIN, or after setting a new one)."""
        window_s = self.device.config.get("unlock_window_s")
        self._unlocked_until = ticks_add(ticks_ms(), window_s * 1000)
        log.info("console", "privileged commands unlocked for %d s" % window_s)
        return {"privileged": "unlocked", "for_s": window_s}

    def lock(self):
        self._unlocked_until = None


def _error(name, code, message):
    return {"ok": False, "cmd": name, "code": code, "error": str(message)}
