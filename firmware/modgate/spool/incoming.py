"""Objects on their way into the queue: the caller's temporary file and the file helpers the
commit and recovery paths need."""

from modgate.port import fs

_COPY_CHUNK = 2048


class Incoming:
    """An object being written by the caller: it writes `path`, then the spool commits or aborts
    it. `open_meta` is the caller's note for an open (multi-frame) object, None otherwise.
    `held`: bytes synced so far (open objects); `reserved`: bytes held in the budget for what
    is being written; `noted`: the note is on flash."""

    def __init__(self, path, number, open_meta, reserved):
        self.path = path
        self.number = number
        self.open_meta = open_meta
        self.reserved = reserved
        self.held = 0
        self.noted = False
        self.finished = False

    def size(self):
        return size_of(self.path)


def size_of(path):
    """Bytes in `path`, 0 when it cannot be read."""
    try:
        return fs.size(path)
    except OSError:
        return 0


def sync_path(path):
    """Sync a file the caller wrote and closed: reopened for append, nothing written, synced."""
    f = fs.open_file(path, "ab")
    try:
        fs.sync_file(f)
    finally:
        f.close()


def copy_prefix(src_path, nbytes, dst_path):
    """Write the first `nbytes` of `src_path` to `dst_path` and sync it (bounded buffer)."""
    view = memoryview(bytearray(_COPY_CHUNK))
    left = nbytes
    with fs.open_file(src_path, "rb") as src:
        with fs.open_file(dst_path, "wb") as dst:
            while left > 0:
                n = src.readinto(view[: min(left, _COPY_CHUNK)])
                if not n:
                    break
                dst.write(view[:n])
                left -= n
            fs.sync_file(dst)
