"""`modgate emulate`: run the firmware as an emulated board until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from modgate_host.emulator import BOARD_RUNTIME, REBOOT_EXIT_CODE, Emulator, EmulatorError
from modgate_host.runtimes import RuntimeUnavailable


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "emulate",
        help="run the device firmware as an emulated board",
        description="Start the firmware on an emulated board. When it is ready, print one JSON line "
        '{"console": PTY, "frames": "tcp://127.0.0.1:PORT", "pid": PID}. SIGTERM stops it cleanly; '
        "the state folder is the board's flash and survives restarts.",
    )
    p.add_argument("--board", choices=sorted(BOARD_RUNTIME), default="unix")
    p.add_argument("--state", type=Path, required=True, help="flash folder (kept across restarts)")
    p.add_argument("--config", type=Path, help="JSON configuration applied at boot")
    p.add_argument("--dest", action="append", default=[], metavar="AET@HOST:PORT", help="an archive")
    p.add_argument("--frames-port", type=int, default=0, help="frame input TCP port (0 picks a free one)")
    p.add_argument("--heap", help="MicroPython heap size (default: the board's budget)")
    p.add_argument(
        "--frames-serial",
        action="store_true",
        help="also give the board a frame UART: a pty pair, the modality's end printed as frames_serial",
    )
    p.add_argument(
        "--link-down",
        action="store_true",
        help="boot with the network cable pulled (remove STATE/link-down to plug it in)",
    )
    p.add_argument("--verbose", action="store_true", help="echo the device log on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    emu = Emulator(
        args.board,
        args.state,
        config=args.config,
        dests=args.dest,
        frames_port=args.frames_port,
        heap=args.heap,
        log_echo=sys.stderr if args.verbose else None,
        frames_serial=args.frames_serial,
    )
    if args.link_down:
        emu.set_link(False)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only signal here: the main thread is inside wait() and returns once the firmware exits.
        nonlocal stopping
        stopping = True
        emu.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while True:
            print(json.dumps(emu.start()), flush=True)
            code = emu.wait()
            if stopping:
                return 0
            if emu.reset_by_watchdog:
                print("modgate emulate: the watchdog reset the board (it was not fed); booting again",
                      file=sys.stderr)
            elif code != REBOOT_EXIT_CODE:
                print(f"modgate emulate: firmware exited with {code}; see {emu.log_path}", file=sys.stderr)
                return 1
    except (EmulatorError, RuntimeUnavailable) as exc:
        print(f"modgate emulate: {exc}", file=sys.stderr)
        return 2
    finally:
        emu.close()
