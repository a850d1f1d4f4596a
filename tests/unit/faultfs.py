"""Fault injection for modgate.port.fs (its `faults` hook): the Nth operation that changes the
medium fails with OSError, or the power goes at it.

    plan = faultfs.install(faultfs.Plan(fail_at=7))   # or Plan(cut_at=7), or Plan() to count
    try: ... finally: faultfs.uninstall()
Counted operations: every write to a file opened for writing, opening one, fsync, sync_dir,
rename, remove, mkdir. A power cut (PowerCut) tears a write in the middle (the first half
reaches the file) and stops every later operation; what was written before stays, as on a
medium that keeps what it acknowledged.
"""

from modgate.port import fs

EIO = 5


class PowerCut(BaseException):
    """The power went: not an OSError, and not an Exception, so no handler in the firmware sees it."""


class Plan:
    def __init__(self, fail_at=0, cut_at=0):
        self.fail_at = fail_at
        self.cut_at = cut_at
        self.count = 0
        self.dead = False
        self.hit = None  # (kind, path) of the operation failed or cut

    def _next(self, kind, path):
        """True when this operation is the one the power goes at (the caller tears it)."""
        if self.dead:
            raise PowerCut()
        self.count += 1
        if self.count == self.cut_at:
            self.hit = (kind, path)
            self.dead = True
            return True
        if self.count == self.fail_at:
            self.hit = (kind, path)
            raise OSError(EIO, "injected fault at operation %d: %s %s" % (self.count, kind, path))
        return False

    def op(self, kind, path):
        if self._next(kind, path):
            raise PowerCut()

    def wrap(self, f):
        return _File(self, f)


class _File:
    """A file opened for writing, whose writes the plan counts."""

    def __init__(self, plan, f):
        self.plan = plan
        self.f = f

    def write(self, data):
        if self.plan._next("write", ""):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise PowerCut()
        return self.f.write(data)

    def read(self, *args):
        return self.f.read(*args)

    def readinto(self, buf):
        return self.f.readinto(buf)

    def readline(self):
        return self.f.readline()

    def seek(self, *args):
        return self.f.seek(*args)

    def tell(self):
        return self.f.tell()

    def flush(self):
        if self.plan.dead:
            raise PowerCut()
        return self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def install(plan):
    fs.faults = plan
    return plan


def uninstall():
    fs.faults = None
