"""Wires the firmware's pieces for a board, and dispatches the jobs of firmware/main.py."""

import sys

from modgate import VERSION

# job name -> module under modgate.jobs; imported only when asked for, so a board's
# normal boot never pays RAM for tools it does not run.
JOBS = ("run", "encode", "send", "echo")


def usage():
    print("modgate firmware " + VERSION)
    print("usage: main.py JOB [ARGS...]   jobs: " + ", ".join(JOBS))


def main(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        usage()
        return 0
    job = argv[0]
    if job not in JOBS:
        sys.stderr.write("unknown job " + repr(job) + "\n")
        usage()
        return 2
    module = __import__("modgate.jobs." + job, None, None, ("main",))
    return module.main(argv[1:]) or 0
