"""Firmware entry point, the same on every board and in the emulator.

A board boots into `run`; the host companion starts the same file with another job
(`encode`, `send`, `echo`, ...) to run one piece of device code on files.
"""

import sys

from modgate import app

argv = getattr(sys, "argv", None) or []
sys.exit(app.main(argv[1:] if len(argv) > 1 else ["run"]))
