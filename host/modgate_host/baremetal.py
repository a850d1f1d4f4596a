"""A bare-metal board in qemu-system-arm (qemu-mps2): its firmware image booted, its REPL driven
with mpremote's raw REPL, its frame UART on a loopback TCP port, its device console on a pty.

The qemu port boots to the REPL (it runs no main.py), so the host starts device code by sending
it to the raw REPL, as mpremote does on a real board; the board's RAM file system is read and
written the same way. qemu's `-serial` options join the board's UARTs to host character devices:
UART0 (the REPL and the log) to a pty, UART1 (frames) to a TCP server on 127.0.0.1, UART2 (the
device console, as a real board's console UART) to another pty.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from types import TracebackType
from typing import Any

from modgate_host import image
from modgate_host.build import load_board
from modgate_host.emulator import free_port
from modgate_host.runtimes import RuntimeUnavailable

PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+) \(label (serial\d)\)")
START_TIMEOUT_S = 20.0


class BoardError(RuntimeError):
    """The board did not boot, or device code raised; the message carries the board's words."""


class QemuBoard:
    """One power-up of a bare-metal board: start() boots it, stop() powers it off (the RAM file
    system goes with it)."""

    def __init__(self, board_id: str = "qemu-mps2") -> None:
        data = load_board(board_id)
        if data["kind"] != image.BAREMETAL_KIND:
            raise RuntimeUnavailable(f"board {board_id} is not a bare-metal board")
        self.board_id = board_id
        self.data = data
        self.frames_port = free_port()
        self.console_path = ""  # UART0: the REPL (mpremote) and the firmware's log
        self.device_console_path = ""  # UART2: the device console (modgate console, DeviceConsole)
        self.proc: subprocess.Popen[bytes] | None = None
        self.transport: Any = None

    @property
    def frames_url(self) -> str:
        """The frame UART, as `modgate simulate-modality --to` takes it."""
        return f"tcp://127.0.0.1:{self.frames_port}"

    def command(self) -> list[str]:
        runner = self.data["image_runner"]
        assert isinstance(runner, list)
        return [*map(str, runner), "-serial", "pty",
                "-serial", f"tcp:127.0.0.1:{self.frames_port},server=on,wait=off", "-serial", "pty",
                "-kernel", str(image.image(self.board_id))]

    def start(self) -> QemuBoard:
        cmd = self.command()  # builds the image first, outside the boot timeout
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        ptys: dict[bytes, str] = {}
        while len(ptys) < 2:
            line = self.proc.stdout.readline()
            found = PTY_LINE.search(line)
            if not found:
                self.stop()
                raise BoardError(f"qemu did not give the UARTs ptys: {line.decode(errors='replace')}")
            ptys[found.group(2)] = found.group(1).decode()
        self.console_path = ptys[b"serial0"]
        self.device_console_path = ptys[b"serial2"]
        try:
            self.attach()
        except BoardError:
            self.stop()
            raise
        return self

    def attach(self) -> None:
        """Open the console and enter the raw REPL (after release(), or at start)."""
        from mpremote.transport_serial import SerialTransport

        self.transport = SerialTransport(self.console_path, baudrate=115200)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.transport.enter_raw_repl(soft_reset=False)
                return
            except Exception as exc:  # noqa: BLE001 - mpremote raises bare Exception/TransportError
                if time.monotonic() > deadline:
                    raise BoardError(f"no raw REPL on {self.console_path}: {exc}") from exc
                time.sleep(0.2)

    def release(self) -> None:
        """Close the console so another program (mpremote, `modgate deploy`) can open it."""
        if self.transport is not None:
            try:
                self.transport.exit_raw_repl()
                self.transport.close()
            except OSError:
                pass
            self.transport = None

    def exec(self, code: str) -> str:
        """Run `code` on the board; its output. BoardError with the board's traceback if it raised.
        The code runs as the body of a function, so what it made is garbage once it returns: the
        REPL's globals would keep it alive into the next call (one heap, one power-up)."""
        from mpremote.transport import TransportExecError

        body = "\n".join("    " + line if line.strip() else "" for line in code.splitlines())
        wrapped = (f"def _host_call():\n{body}\n    pass\n"
                   "try:\n    _host_call()\nfinally:\n    del _host_call\n")
        try:
            out: bytes = self.transport.exec(wrapped)
        except TransportExecError as exc:
            first = exc.args[0] if exc.args else b""
            printed = first.decode(errors="replace") if isinstance(first, bytes) else ""
            raise BoardError(f"board raised:\n{printed}{exc.error_output}") from exc
        return out.decode()

    def exec_json(self, code: str) -> Any:
        """Run `code`, which prints one JSON line last; that value."""
        return json.loads(self.exec(code).strip().splitlines()[-1])

    def start_job(self, job: str, *args: str, ready: bytes = b"app: ready",
                  timeout_s: float = START_TIMEOUT_S) -> str:
        """Start firmware job `job` as a board boots into it, without waiting for it to end (the
        REPL is the job's from then on): the log on UART0 up to the line holding `ready`."""
        self.transport.exec_raw_no_follow(job_code(job, *args))
        serial = self.transport.serial
        log = b""
        deadline = time.monotonic() + timeout_s
        while ready not in log or not log.split(ready, 1)[1].count(b"\n"):
            if time.monotonic() > deadline:
                raise BoardError(f"job {job} not ready after {timeout_s} s:\n{log.decode(errors='replace')}")
            log += serial.read(serial.in_waiting or 1)
        return log.decode(errors="replace")

    def read_file(self, path: str) -> bytes:
        data: bytes = self.transport.fs_readfile(path)
        return data

    def heap(self) -> dict[str, int]:
        """The GC heap now, after a collection: free and allocated bytes."""
        code = ("import gc, json\ngc.collect()\n"
                "print(json.dumps({'free': gc.mem_free(), 'alloc': gc.mem_alloc()}))")
        result: dict[str, int] = self.exec_json(code)
        return result

    def stop(self) -> None:
        self.release()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> QemuBoard:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def job_code(job: str, *args: str) -> str:
    """Device code that boots the board module and runs firmware job `job` as main.py would."""
    return ("import board\nboard.start([])\nfrom modgate import app\n"
            f"_rc = app.main({[job, *args]!r})\n"
            # Not SystemExit: on a board that ends the REPL session with a soft reset.
            "if _rc:\n    raise RuntimeError('job " + job + " exited ' + str(_rc))\n")


# The firmware's own ingest path on the board, wired as the run job wires its frame UART: the
# device (config, spool, acquirer on the RAM file system) and a FrameLink (FrameReceiver) on the
# frame UART, served on asyncio until `objects` objects are committed or no frame came for
# `idle_ms`. The REPL is free again afterwards, to read the spool. It prints one JSON line: what
# was committed, the spool, and the heap (free once ready, the least free seen while frames came,
# free at the end, each after a collection).
FRAME_SESSION = """
import gc, json
import board
from modgate.compat import ticks_diff, ticks_ms
from modgate.port import aio
ports = board.start([])
from modgate.device import Device
from modgate.ingest.link import FrameLink
from modgate.port.uart import open_serial
device = Device(ports)
link = FrameLink(open_serial(ports["frame_uart"]), device.acquirer, "uart", close_on_idle=False,
                 max_frame_bytes=device.config.get("frames_max_bytes"))
gc.collect()
ready = gc.mem_free()
seen = {{"frames": 0, "at": ticks_ms(), "least": ready}}
def done():
    acquirer = device.acquirer
    if acquirer.frames_acked != seen["frames"]:
        seen["frames"] = acquirer.frames_acked
        seen["at"] = ticks_ms()
        gc.collect()
        seen["least"] = min(seen["least"], gc.mem_free())
    return acquirer.objects_committed >= {objects} or ticks_diff(ticks_ms(), seen["at"]) > {idle_ms}
aio.run(link.run(lambda: None, done))
gc.collect()
entries = [dict(e, path=device.spool.data_path(e["id"])) for e in device.spool.list({objects})]
print(json.dumps({{"committed": device.acquirer.objects_committed,
                  "frames_acked": device.acquirer.frames_acked, "entries": entries,
                  "heap_ready_free": ready, "heap_least_free": seen["least"],
                  "heap_end_free": gc.mem_free()}}))
"""


def frame_session_code(objects: int, idle_ms: int = 20000) -> str:
    return FRAME_SESSION.format(objects=int(objects), idle_ms=int(idle_ms))
