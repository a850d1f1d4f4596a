"""Flash file system access: plain `os`, which both runtimes have (MicroPython has no os.path).

`faults` is None on a device. A test may set it to an object with `op(kind, path)` (called before
every change to the medium: "mkdir", "remove", "rename", "open" for writing, "fsync",
"sync_dir"; it raises to make that operation fail) and `wrap(f)` (returns the file object writes
go through, so the test can fail or tear the Nth write). tests/unit/faultfs.py is that object.
Unset it costs one global lookup per operation.
"""

import errno
import os

SEP = "/"
_S_IFDIR = 0x4000
faults = None


def join(*parts):
    path = ""
    for part in parts:
        if not path or part.startswith(SEP):
            path = part
        elif path.endswith(SEP):
            path += part
        else:
            path += SEP + part
    return path


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def isdir(path):
    try:
        return os.stat(path)[0] & _S_IFDIR != 0
    except OSError:
        return False


def size(path):
    return os.stat(path)[6]


def mtime(path):
    return os.stat(path)[8]


def makedirs(path):
    if not path or isdir(path):
        return
    parent = path.rsplit(SEP, 1)[0] if SEP in path.rstrip(SEP) else ""
    if parent and parent != path:
        makedirs(parent)
    try:
        if faults is not None:
            faults.op("mkdir", path)
        os.mkdir(path)
    except OSError:
        if not isdir(path):
            raise


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def remove(path):
    """Remove a file: True when it went, False when there was none; OSError when it stays."""
    try:
        if faults is not None:
            faults.op("remove", path)
        os.remove(path)
        return True
    except OSError as exc:
        if _missing(exc):
            return False
        raise


def _missing(exc):
    return exc.args and exc.args[0] == errno.ENOENT


def rename(src, dst):
    if faults is not None:
        faults.op("rename", dst)
    os.rename(src, dst)


def open_file(path, mode="rb"):
    if faults is not None and (mode[0] != "r" or "+" in mode):
        faults.op("open", path)
        return faults.wrap(open(path, mode))
    return open(path, mode)


def sync_file(f):
    """Flush a file to the medium, as far as the port allows (the unix port has no fsync)."""
    if faults is not None:
        faults.op("fsync", "")
    f.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None:
        try:
            fsync(f.fileno())
        except (AttributeError, OSError):
            pass


def sync_dir(path):
    """Make a rename in `path` durable where the OS needs it (CPython on Linux). Best effort: a
    port that cannot open a folder has nothing to sync, so errors are not raised."""
    fsync = getattr(os, "fsync", None)
    opener = getattr(os, "open", None)
    try:
        if faults is not None:
            faults.op("sync_dir", path)
        if fsync is None or opener is None:
            return
        fd = opener(path, 0)
        try:
            fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_atomic(path, data):
    """Replace `path` with `data` so that a power cut leaves either the old or the new content."""
    tmp = path + ".tmp"
    with open_file(tmp, "wb") as f:
        f.write(data)
        sync_file(f)
    rename(tmp, path)
    sync_dir(path.rsplit(SEP, 1)[0] if SEP in path else ".")


def write_json_atomic(path, value):
    """write_atomic for a JSON value, streamed into the file: no text of the whole value is
    built in the heap (a note with a context is ~1 KB, twice over as a str and its bytes)."""
    tmp = path + ".tmp"
    with open_file(tmp, "w") as f:
        dump_json(value, f)
        sync_file(f)
    rename(tmp, path)
    sync_dir(path.rsplit(SEP, 1)[0] if SEP in path else ".")


def dump_json(value, f):
    """Write `value` as JSON into the open text file `f`, streamed where the runtime can (a
    native file on MicroPython, any file on CPython); a file object MicroPython cannot stream into
    (a test's wrapper) gets the text whole."""
    import json

    try:
        json.dump(value, f)
    except OSError as exc:
        if exc.args and isinstance(exc.args[0], int):
            raise  # a real I/O error carries its errno (ENOSPC...): not a stream it cannot use
        f.write(json.dumps(value))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def free_bytes(path):
    """Free space on the file system holding `path`, or None when the port cannot tell."""
    try:
        st = os.statvfs(path)
    except (AttributeError, OSError):
        return None
    # f_bavail counts fragments of f_frsize (POSIX); LittleFS ports report both sizes alike.
    return (st[1] or st[0]) * st[4]


def iterdir(path):
    """Names in `path`, unsorted, one at a time: os.ilistdir on MicroPython keeps RAM flat
    however many files a folder holds. A missing folder yields nothing."""
    ilistdir = getattr(os, "ilistdir", None)
    if ilistdir is None:
        try:
            names = os.listdir(path)
        except OSError:
            return
        for name in names:
            yield name
        return
    try:
        items = ilistdir(path)
    except OSError:
        return
    for item in items:
        yield item[0]
