"""Run one firmware test module under MicroPython: `micropython tests/mp_run.py test_name`.

Prints one line per test (`PASS|FAIL|ERROR|SKIP name - detail`) and a closing
`RESULT passed failed skipped` line that tools/mptest.py reads. MicroPython has no test
discovery, so the host driver names each module.
"""

import sys
import unittest


def main():
    name = sys.argv[1]
    counts = {"pass": 0, "fail": 0, "error": 0, "skip": 0}

    def report(status, test, detail):
        counts[status] += 1
        print(status.upper() + " " + name + "." + test + ((" - " + detail) if detail else ""))

    module = __import__(name)
    unittest.run_module(module, report)
    print("RESULT %d %d %d" % (counts["pass"], counts["fail"] + counts["error"], counts["skip"]))
    return 1 if counts["fail"] or counts["error"] else 0


sys.exit(main())
