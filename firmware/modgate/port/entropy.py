"""Random bytes for salts and nonces: the OS source where the port has one."""

try:
    from os import urandom as _urandom
except ImportError:  # pragma: no cover - ports without os.urandom
    _urandom = None


def random_bytes(count):
    if _urandom is not None:
        try:
            return _urandom(count)
        except (OSError, NotImplementedError):
            pass
    import random  # pragma: no cover - weak fallback, boards without an RNG driver

    return bytes(random.getrandbits(8) for _ in range(count))
