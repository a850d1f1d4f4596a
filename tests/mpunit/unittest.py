"""A small unittest for MicroPython, which ships none.

It implements the part of the standard library's API our firmware tests use, so the same test
files run under pytest on CPython and under tests/mp_run.py on MicroPython.
"""

import sys


class SkipTest(Exception):
    pass


class _AssertRaises:
    def __init__(self, expected):
        self.expected = expected
        self.exception = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(self.expected.__name__ + " not raised")
        if issubclass(exc_type, self.expected):
            self.exception = exc
            return True
        return False


class _SubTest:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class TestCase:
    def __init__(self, name="runTest"):
        self._name = name
        self._cleanups = []

    def setUp(self):
        pass

    def tearDown(self):
        pass

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def addCleanup(self, func, *args, **kwargs):
        self._cleanups.append((func, args, kwargs))

    def doCleanups(self):
        while self._cleanups:
            func, args, kwargs = self._cleanups.pop()
            func(*args, **kwargs)

    def skipTest(self, reason):
        raise SkipTest(reason)

    def subTest(self, msg=None, **params):
        return _SubTest()

    def fail(self, msg=None):
        raise AssertionError(msg or "failed")

    def _check(self, ok, default, msg):
        if not ok:
            raise AssertionError(msg or default)

    def assertEqual(self, a, b, msg=None):
        self._check(a == b, "%r != %r" % (a, b), msg)

    def assertNotEqual(self, a, b, msg=None):
        self._check(a != b, "%r == %r" % (a, b), msg)

    def assertTrue(self, x, msg=None):
        self._check(x, "%r is not true" % (x,), msg)

    def assertFalse(self, x, msg=None):
        self._check(not x, "%r is not false" % (x,), msg)

    def assertIs(self, a, b, msg=None):
        self._check(a is b, "%r is not %r" % (a, b), msg)

    def assertIsNot(self, a, b, msg=None):
        self._check(a is not b, "%r is %r" % (a, b), msg)

    def assertIsNone(self, x, msg=None):
        self._check(x is None, "%r is not None" % (x,), msg)

    def assertIsNotNone(self, x, msg=None):
        self._check(x is not None, "unexpectedly None", msg)

    def assertIn(self, a, b, msg=None):
        self._check(a in b, "%r not in %r" % (a, b), msg)

    def assertNotIn(self, a, b, msg=None):
        self._check(a not in b, "%r in %r" % (a, b), msg)

    def assertIsInstance(self, x, cls, msg=None):
        self._check(isinstance(x, cls), "%r is not an instance of %r" % (x, cls), msg)

    def assertGreater(self, a, b, msg=None):
        self._check(a > b, "%r <= %r" % (a, b), msg)

    def assertGreaterEqual(self, a, b, msg=None):
        self._check(a >= b, "%r < %r" % (a, b), msg)

    def assertLess(self, a, b, msg=None):
        self._check(a < b, "%r >= %r" % (a, b), msg)

    def assertLessEqual(self, a, b, msg=None):
        self._check(a <= b, "%r > %r" % (a, b), msg)

    def assertAlmostEqual(self, a, b, places=7, msg=None):
        self._check(round(abs(a - b), places) == 0, "%r != %r within %d places" % (a, b, places), msg)

    def assertRaises(self, expected, func=None, *args, **kwargs):
        ctx = _AssertRaises(expected)
        if func is None:
            return ctx
        with ctx:
            func(*args, **kwargs)


def skip(reason):
    def decorator(func):
        def skipped(*args, **kwargs):
            raise SkipTest(reason)

        return skipped

    return decorator


def skipIf(condition, reason):
    return skip(reason) if condition else (lambda func: func)


def skipUnless(condition, reason):
    return skip(reason) if not condition else (lambda func: func)


def _test_classes(module):
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, TestCase) and obj is not TestCase:
            yield name, obj


def run_module(module, report):
    """Run every TestCase in `module`; call report(status, test_name, detail) for each test."""
    for cls_name, cls in _test_classes(module):
        try:
            cls.setUpClass()
        except SkipTest as exc:
            report("skip", cls_name, str(exc))
            continue
        for name in sorted(dir(cls)):
            if not name.startswith("test"):
                continue
            test = cls(name)
            full = cls_name + "." + name
            try:
                test.setUp()
                try:
                    getattr(test, name)()
                finally:
                    test.tearDown()
                    test.doCleanups()
                report("pass", full, "")
            except SkipTest as exc:
                report("skip", full, str(exc))
            except AssertionError as exc:
                report("fail", full, str(exc))
            except Exception as exc:
                sys.print_exception(exc) if hasattr(sys, "print_exception") else None
                report("error", full, type(exc).__name__ + ": " + str(exc))
        cls.tearDownClass()


def main(module="__main__"):
    mod = sys.modules[module] if isinstance(module, str) else module
    failures = []

    def report(status, name, detail):
        print(status.upper() + " " + name + ((" - " + detail) if detail else ""))
        if status in ("fail", "error"):
            failures.append(name)

    run_module(mod, report)
    sys.exit(1 if failures else 0)
