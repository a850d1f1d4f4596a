"""Run the real firmware as an emulated board: the `run` job of firmware/main.py on MicroPython.

The board's console UART is a pty: the firmware reads and writes the pty's master side on its
stdin/stdout, and the field engineer (or a test) opens the slave path with pyserial. The firmware
logs to stderr; the emulator keeps that in `STATE/device.log` and watches it for the ready line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import tty
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from modgate_host import build, image

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


def link_ptys(one: Path, other: Path, timeout_s: float = 10.0) -> subprocess.Popen[bytes]:
    """Two raw ptys joined by socat, like the two ends of a serial cable, at the paths `one` and
    `other` (symbolic links to /dev/pts/N). Stop the returned process to unplug the cable."""
    for link in (one, other):
        link.unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={one}", f"pty,raw,echo=0,link={other}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while not (one.exists() and other.exists()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise EmulatorError("socat could not link two ptys (apt-get install socat)")
        time.sleep(0.02)
    return proc


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
        self.master_fd = -1
        self.slave_fd = -1
        self.console_path = ""
        self._ready = threading.Event()
        self._log_thread: threading.Thread | None = None
        self.log_path = self.state / "device.log"
        # A frame "UART": two linked ptys (socat), one for the firmware, one for the modality.
        self.frames_serial = frames_serial
        self._socat: subprocess.Popen[bytes] | None = None
        self.frames_tty = ""
        self._frame_device_tty = ""

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

    def _link_frame_ptys(self) -> str:
        """Link the frame UART's ptys; returns the firmware's end, keeps the modality's."""
        device_end, modality_end = self.state / "frames-device.tty", self.state / "frames-modality.tty"
        self._socat = link_ptys(device_end, modality_end)
        self.frames_tty = os.path.realpath(modality_end)
        return os.path.realpath(device_end)

    def command(self) -> list[str]:
        args = ["--state", str(self.state), "--frames-port", str(self.frames_port)]
        if self.config:
            args += ["--config", str(self.config)]
        for dest in self.dests:
            args += ["--dest", dest]
        if self.frames_serial:
            args += ["--frame-tty", self._frame_device_tty]
        return image.command(self.board, "run", *args, heap=self.heap)

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, object]:
        self.state.mkdir(parents=True, exist_ok=True)
        # The board's firmware image, code frozen in as on a real board (built once, outside the
        # ready timeout).
        image.image(self.board)
        if self.frames_serial and self._socat is None:
            self._frame_device_tty = self._link_frame_ptys()
        if self.master_fd < 0:
            self.master_fd, self.slave_fd = os.openpty()
            tty.setraw(self.slave_fd)
            self.console_path = os.ttyname(self.slave_fd)
        self._ready.clear()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=self.master_fd,
            stdout=self.master_fd,
            stderr=subprocess.PIPE,
            env=image.environment(),
            cwd=str(self.state),
        )
        self._log_thread = threading.Thread(target=self._pump_log, args=(self.proc,), daemon=True)
        self._log_thread.start()
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
        assert self.proc is not None
        code = self.proc.wait()
        if self._log_thread is not None:
            self._log_thread.join(timeout=2)
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
        if self._socat is not None:
            self._socat.terminate()
            self._socat.wait(timeout=10)
            self._socat = None
        for fd in (self.master_fd, self.slave_fd):
            if fd >= 0:
                os.close(fd)
        self.master_fd = self.slave_fd = -1

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
