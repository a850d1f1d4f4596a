"""The device console over a serial line: the only module that imports pyserial.

`serial.serial_for_url` opens a real tty (/dev/ttyUSB0), a pty (/dev/pts/N, the emulator), or a
URL (`socket://127.0.0.1:7000`, `loop://`), so tests and the field use one code path.

The session switches the console to JSON mode (see firmware/modgate/console/shell.py): each
command line gets exactly one reply line {"ok": ..., "cmd": ..., "data"|"code"+"error": ...}.
Device-side refusals come back as typed exceptions (DeviceError subclasses).
"""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Any

import serial

DEFAULT_BAUD = 115200
DEFAULT_TIMEOUT_S = 10.0
_READ_SLICE_S = 0.05


class TransportError(Exception):
    """The console cannot be reached: the port does not open, or the device does not answer."""


class DeviceError(Exception):
    """The device answered with a refusal; `code` is the console's error code."""

    def __init__(self, cmd: str, code: str, message: str) -> None:
        super().__init__(message)
        self.cmd = cmd
        self.code = code
        self.message = message


class CommandRejected(DeviceError):
    """Wrong words: an unknown command, bad arguments, or a line the console would not take."""


class InvalidValue(DeviceError):
    """A value failed the device's validation (AE title rules, port range, UID root...)."""


class PermissionDenied(DeviceError):
    """The command needs the PIN, the PIN was wrong, or wrong PINs lock unlocking for a while."""


class OperationFailed(DeviceError):
    """The device tried and failed (C-ECHO refused, queue entry missing, internal error)."""


_ERRORS: dict[str, type[DeviceError]] = {
    "usage": CommandRejected,
    "unknown": CommandRejected,
    "line": CommandRejected,
    "invalid": InvalidValue,
    "denied": PermissionDenied,
    "locked": PermissionDenied,
    "failed": OperationFailed,
    "internal": OperationFailed,
}


def quote(value: object) -> str:
    """One console word for `value` (the inverse of the firmware's tokens.split)."""
    text = str(value)
    if text and not any(c in text for c in " \"'"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_port(
    port: str,
    baudrate: int = DEFAULT_BAUD,
    timeout_s: float = _READ_SLICE_S,
    write_timeout_s: float | None = None,
) -> Any:
    """A raw pyserial port for `port` (path or URL); TransportError when it cannot be opened.
    pyserial's errors are OSErrors, so users of the port catch OSError."""
    try:
        return serial.serial_for_url(
            port, baudrate=baudrate, timeout=timeout_s, write_timeout=write_timeout_s
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise TransportError(f"cannot open {port}: {exc}") from exc


# Device commands that change nothing (docs/console.md): safe to ask again.
READ_ONLY = {("status",), ("ident",), ("help",), ("config", "show"), ("config", "get"), ("dest", "list"),
             ("queue", "list"), ("queue", "dead"), ("log", "tail"), ("time", "get"), ("patient", "show"),
             ("worklist", "list"), ("worklist", "show")}
# Commands whose second run with the same words ends where the first did (the reply mode, the
# lock, a staged value, a destination's settings, a save of what is staged): safe to ask again
# when the device had no heap for the first reply, whether or not the first took effect.
IDEMPOTENT = {("json",), ("lock",), ("config", "set"), ("config", "save"), ("dest", "add")}
_REPEATABLE = READ_ONLY | IDEMPOTENT
NO_MEMORY_RETRIES = 2
NO_MEMORY_PAUSE_S = 0.3


def _repeatable(words: tuple[object, ...]) -> bool:
    head = tuple(str(w) for w in words[:2])
    return head[:1] in _REPEATABLE or head in _REPEATABLE


class DeviceConsole:
    """A JSON-mode session with the device console. Use as a context manager."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._serial: Any = None
        self._pending = b""

    def open(self) -> DeviceConsole:
        self._serial = open_port(self.port, self.baudrate)
        self._write(b"\x03")  # drop whatever half line a previous session left
        time.sleep(0.05)
        self._drain()
        self.call("json", "on")
        return self

    def close(self) -> None:
        if self._serial is None:
            return
        try:
            self._write(b"\x03lock\rjson off\r")  # never leave a privileged window open on the device
            time.sleep(0.02)
        except TransportError:
            pass
        try:
            self._serial.close()
        finally:
            self._serial = None

    def __enter__(self) -> DeviceConsole:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def call(self, *words: object, timeout_s: float | None = None) -> Any:
        """Run one command; return its `data`, or raise the DeviceError subclass for its code.
        A command that only reads, or whose second run ends where the first did (IDEMPOTENT),
        is asked again when the device had no heap for its reply (a board's RAM is briefly
        short while it stores and sends); any other never is, since its effect may have
        happened before the reply failed."""
        if self._serial is None:
            raise TransportError("console is not open")
        line = " ".join(quote(w) for w in words) + " --json"
        for attempt in range(1 + NO_MEMORY_RETRIES):
            self._drain()
            self._write(line.encode() + b"\r")
            reply = self._read_reply(str(words[0]) if words else "", timeout_s or self.timeout_s)
            short = not reply.get("ok") and "out of memory" in str(reply.get("error", ""))
            if not (short and _repeatable(words)) or attempt == NO_MEMORY_RETRIES:
                break
            time.sleep(NO_MEMORY_PAUSE_S)
        if reply.get("ok"):
            return reply.get("data")
        code = str(reply.get("code", "failed"))
        error_class = _ERRORS.get(code, OperationFailed)
        raise error_class(str(reply.get("cmd", "")), code, str(reply.get("error", "refused")))

    def unlock(self, pin: str) -> Any:
        return self.call("unlock", pin)

    def lock(self) -> Any:
        return self.call("lock")

    def write_raw(self, data: bytes) -> None:
        self._write(data)

    # ---- line reading ----

    def _write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"write to {self.port} failed: {exc}") from exc

    def _drain(self) -> None:
        self._pending = b""
        try:
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError, AttributeError):
            pass

    def _read_reply(self, first_word: str, timeout_s: float) -> dict[str, Any]:
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            line = self._read_line(until)
            if line is None:
                break
            reply = _parse_reply(line)
            if reply is None:
                continue  # echo, prompt or banner of a human-mode console
            cmd = str(reply.get("cmd", ""))
            if cmd and first_word and cmd.split()[0] != first_word[:32]:
                continue  # a stale reply to an earlier line
            return reply
        raise TransportError(f"no reply from {self.port} within {timeout_s:g} s (is it a modgate console?)")

    def _read_line(self, until: float) -> bytes | None:
        while True:
            cut = self._pending.find(b"\n")
            if cut >= 0:
                line, self._pending = self._pending[:cut], self._pending[cut + 1 :]
                return line.rstrip(b"\r")
            if time.monotonic() >= until:
                return None
            try:
                chunk = self._serial.read(1)  # waits up to the port's short timeout
                if chunk:
                    waiting = getattr(self._serial, "in_waiting", 0)
                    if waiting:
                        chunk += self._serial.read(waiting)
            except (serial.SerialException, OSError) as exc:
                raise TransportError(f"read from {self.port} failed: {exc}") from exc
            if chunk:
                self._pending += chunk
                if len(self._pending) > 1 << 20:
                    raise TransportError(f"{self.port} sends a line over 1 MiB; not a modgate console?")


def _parse_reply(line: bytes) -> dict[str, Any] | None:
    start = line.find(b"{")
    if start < 0 or not line.endswith(b"}"):
        return None
    try:
        reply = json.loads(line[start:].decode("utf-8", "replace"))
    except ValueError:
        return None
    if isinstance(reply, dict) and "ok" in reply and "cmd" in reply:
        return reply
    return None
