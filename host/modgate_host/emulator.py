"""Run the real firmware as an emulated board: the `run` job of firmware/main.py on MicroPython.

The board's console UART is a pty the field engineer (or a test) opens with pyserial; the
firmware's stdin/stdout reach it through `wires.ConsoleWire`, which behaves like a UART (output
nobody reads is lost instead of blocking the firmware). A frame UART (`frames_serial`) is a
`wires.UartWire` at the board's baud rate into its receive FIFO. The firmware logs to stderr;
the emulator keeps that in `STATE/device.log` and watches it for the ready line.

The board's watchdog (board.json `watchdog_ms`) is emulated too: the firmware feeds it through a
pipe (`--watchdog /dev/fd/N`), and firmware that stops feeding it is killed, as the hardware
watchdog resets a board; `reset_by_watchdog` then tells the owner to boot it again.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from modgate_host import build, image
from modgate_host.wires import ConsoleWire, UartWire

BOARD_RUNTIME = {board: runtime for runtime, board in image.BOARD_OF_RUNTIME.items()}
READY = re.compile(r"app: ready frames=(\S+)")
REBOOT_EXIT_CODE = 75
READY_TIMEOUT_S = 60.0


class EmulatorError(RuntimeError):
    """The firmware did not start or stopped unexpectedly."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def board_heap(board: str) -> str:
    """The emulated board's heap (board.json), as a MicroPython -X heapsize value."""
    return str(int(str(build.load_board(board)["emulated_heap_bytes"])))


class Emulator:
    """One emulated board. `start()` returns once the firmware logged that it is ready."""

    def __init__(
        self,
        board: str,
        state: Path,
        config: Path | None = None,
        dests: Sequence[str] = (),
        frames_port: int = 0,
        heap: str | None = None,
        log_echo: IO[str] | None = None,
        frames_serial: bool = False,
    ) -> None:
        if board not in BOARD_RUNTIME:
            raise EmulatorError(f"board {board!r} cannot be emulated; choose from {', '.join(BOARD_RUNTIME)}")
        self.board = board
        self.state = Path(state)
        self.config = config
        self.dests = list(dests)
        self.frames_port = frames_port or free_port()
        self.heap = heap or board_heap(board)
        self.log_echo = log_echo
        self.proc: subprocess.Popen[bytes] | None = None
        self.console: ConsoleWire | None = None
        self.console_path = ""
        self._ready = threading.Event()
        self._log_thread: threading.Thread | None = None
        self.log_path = self.state / "device.log"
        # A frame UART: the modality's pty to the firmware's, at the board's line rate.
        self.frames_serial = frames_serial
        self.uart: UartWire | None = None
        self.frames_tty = ""
        self.watchdog_ms = int(str(build.load_board(board).get("watchdog_ms") or 0))
        self.watchdog_resets = 0
        self.reset_by_watchdog = False
        self._watchdog_thread: threading.Thread | None = None

    @property
    def frames_url(self) -> str:
        return f"tcp://127.0.0.1:{self.frames_port}"

    def ready_line(self) -> dict[str, object]:
        assert self.proc is not None
        line: dict[str, object] = {
            "console": self.console_path,
            "frames": self.frames_url,
            "pid": self.proc.pid,
        }
        if self.frames_tty:
            line["frames_serial"] = self.frames_tty
        return line

    def _frame_uart(self) -> UartWire:
        spec = build.load_board(self.board).get("frames") or {}
        assert isinstance(spec, dict)
        uart = UartWire(self.state / "frames-device.tty", self.state / "frames-modality.tty",
                        baud=spec.get("baud"), rxbuf=spec.get("rxbuf"), log=self.note)
        self.frames_tty = uart.modality_path
        return uart

    def command(self, watchdog: str | None = None) -> list[str]:
        args = ["--state", str(self.state), "--frames-port", str(self.frames_port)]
        if self.config:
            args += ["--config", str(self.config)]
        for dest in self.dests:
            args += ["--dest", dest]
        if self.uart is not None:
            args += ["--frame-tty", self.uart.device_path]
        if watchdog:
            args += ["--watchdog", watchdog]
        return image.command(self.board, "run", *args, heap=self.heap)

    def set_link(self, up: bool) -> None:
        """Plug the emulated network cable in, or pull it (boards/unix/board.py EmulatedLink)."""
        flag = self.state / "link-down"
        if up:
            flag.unlink(missing_ok=True)
        else:
            self.state.mkdir(parents=True, exist_ok=True)
            flag.write_bytes(b"")

    def note(self, line: str) -> None:
        """A line of the emulator's own in the device log (and on the echo stream)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(self.log_path, "a") as log:
            log.write(f"{stamp} {line}\n")
        if self.log_echo is not None:
            print(line, file=self.log_echo, flush=True)

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, object]:
        self.state.mkdir(parents=True, exist_ok=True)
        # The board's firmware image, code frozen in as on a real board (built once, outside the
        # ready timeout).
        image.image(self.board)
        if self.frames_serial and self.uart is None:
            self.uart = self._frame_uart()
        if self.console is None:
            self.console = ConsoleWire()
            self.console_path = self.console.path
        self._ready.clear()
        self.reset_by_watchdog = False
        stdin, stdout = self.console.attach()
        feeds, feed_end = os.pipe() if self.watchdog_ms else (-1, -1)
        try:
            self.proc = subprocess.Popen(
                self.command(f"/dev/fd/{feed_end}" if self.watchdog_ms else None),
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=image.environment(),
                cwd=str(self.state),
                pass_fds=(feed_end,) if self.watchdog_ms else (),
            )
        finally:
            for fd in (stdin, stdout, feed_end):
                if fd >= 0:
                    os.close(fd)
        self._log_thread = threading.Thread(target=self._pump_log, args=(self.proc,), daemon=True)
        self._log_thread.start()
        if self.watchdog_ms:
            self._watchdog_thread = threading.Thread(target=self._watch, args=(self.proc, feeds), daemon=True)
            self._watchdog_thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                if self._log_thread is not None:
                    self._log_thread.join(timeout=5)  # so the log holds the firmware's last words
                raise EmulatorError(
                    f"firmware exited with {self.proc.returncode} before it was ready; see {self.log_path}:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.kill()
                raise EmulatorError(f"firmware not ready within {timeout_s:.0f} s; see {self.log_path}")
        return self.ready_line()

    def _watch(self, proc: subprocess.Popen[bytes], feeds: int) -> None:
        """The emulated watchdog, armed when the board starts (board.py builds it, as a real
        board's WDT starts in board.start): firmware that stops feeding it is reset."""
        last = time.monotonic()
        try:
            while proc.poll() is None:
                ready, _, _ = select.select([feeds], [], [], 0.1)
                if ready:
                    if not os.read(feeds, 4096):
                        return  # the firmware closed its end: it is exiting
                    last = time.monotonic()
                elif (time.monotonic() - last) * 1000 > self.watchdog_ms:
                    self.reset_by_watchdog = True
                    self.watchdog_resets += 1
                    self.note(f"emulator: watchdog: not fed for {self.watchdog_ms} ms; resetting the board")
                    proc.kill()
                    return
        finally:
            os.close(feeds)

    def _pump_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with open(self.log_path, "ab") as log:
            for raw in proc.stderr:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                if self.log_echo is not None:
                    print(line, file=self.log_echo, flush=True)
                if READY.search(line):
                    self._ready.set()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait(self) -> int:
        """The firmware's exit code once it stopped (see `reset_by_watchdog`)."""
        assert self.proc is not None
        code = self.proc.wait()
        if self._log_thread is not None:
            self._log_thread.join(timeout=2)
        if self._watchdog_thread is not None:
            self._watchdog_thread.join(timeout=2)
        return code

    def terminate(self) -> None:
        """Ask the firmware to stop (SIGTERM) without waiting; safe from a signal handler."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if the firmware does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_thread is not None:
            self._log_thread.join(timeout=2)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a power cut, as far as the firmware can tell."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        if self.uart is not None:
            self.uart.close()
            self.uart = None
        if self.console is not None:
            self.console.close()
            self.console = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
