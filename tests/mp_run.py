"""Run one firmware test module under MicroPython: `micropython tests/mp_run.py test_name`.

The tests are plain unittest.TestCase classes; under MicroPython `unittest` is micropython-lib's
(vendored in tests/mpunit, see tools/vendor_unittest.sh), whose runner prints one line per test.
This adds the CPython asserts that package lacks, runs the module, then prints a `SKIP name -
reason` line per skipped test and a closing `RESULT passed failed skipped` line that
tools/mptest.py reads. MicroPython has no test discovery, so the host driver names each module.
"""

import sys
import unittest


def _check(ok, default, msg):
    if not ok:
        raise AssertionError(msg or default)


def _add_missing_asserts(case):
    """CPython's assertNotIn, assertGreater and assertLess, which micropython-lib's TestCase lacks."""
    extra = {
        "assertNotIn": lambda self, x, y, msg=None: _check(x not in y, "%r found in %r" % (x, y), msg),
        "assertGreater": lambda self, x, y, msg=None: _check(x > y, "%r not greater than %r" % (x, y), msg),
        "assertLess": lambda self, x, y, msg=None: _check(x < y, "%r not less than %r" % (x, y), msg),
    }
    for name in extra:
        if not hasattr(case, name):
            setattr(case, name, extra[name])


def main():
    name = sys.argv[1]
    _add_missing_asserts(unittest.TestCase)
    result = unittest.main(__import__(name))
    for test, reason in result.skipped:
        print("SKIP " + name + "." + str(test[0]) + " - " + str(reason))
    failed = result.failuresNum + result.errorsNum
    passed = result.testsRun - failed - result.skippedNum
    print("RESULT %d %d %d" % (passed, failed, result.skippedNum))
    return 1 if failed else 0


sys.exit(main())
