"""UID generation (PS3.5 9, B.2): globally unique with no operator input, at most 64 characters.

Public API:
- `UidGenerator(root, serial, boot_count, sequence=0)`; `.new()` -> str; `.sequence` counts them.
  - root None, "" or "2.25" (the default): `2.25.<integer>`, the single-integer form (ITU-T X.667
    6.3) of a version-4, random-number-based UUID (X.667 clause 15), as PS3.5 B.2 describes. Its
    122 free bits are the first bits of SHA-256 over 16 fresh bytes from the board's entropy
    source (one read per UID), the serial, the boot count and the sequence: random where the
    board has a random source, and even where that source is weak or repeats after a reset, two
    UIDs of one boot (different sequence) or of two boots (different boot count) differ unless
    SHA-256 collides. `serial` and `boot_count` need not be unique for this form.
  - any other root (an organisation's registered root): `<root>.<serial>.<boot>.<seq>`, unique
    when the organisation gives every device its own serial (digits, or letters and digits read
    as base 36); `boot_count` is the flash-kept counter bumped once per boot, so no UID of this
    device repeats. Raises ConfigError when the root or serial cannot give valid UIDs.
  `sequence`: UIDs already issued in this boot by an earlier generator (after a settings change),
  so a new generator never reissues one.
- `next_boot_count(path)`: read, increment and durably store the boot counter at `path`.
- `valid(uid)`: True when `uid` follows PS3.5 9.1 (digits and dots, no leading zeros, <= 64 chars).
"""

import hashlib

from modgate.errors import ConfigError
from modgate.port import entropy, fs

MAX_LEN = 64
UUID_ROOT = "2.25"


def valid(uid):
    if not uid or len(uid) > MAX_LEN:
        return False
    for part in uid.split("."):
        if not part or not part.isdigit() or (len(part) > 1 and part[0] == "0"):
            return False
    return True


def serial_number(serial):
    """The device serial as a non-negative integer (digits as decimal, else base 36)."""
    text = str(serial).strip()
    if not text:
        raise ConfigError("device serial is empty: UIDs need it")
    try:
        return int(text) if text.isdigit() else int(text, 36)
    except ValueError:
        raise ConfigError("device serial %s: only letters and digits can make UIDs" % text)


def uuid4_uid(random16):
    """PS3.5 B.2 UID of the version-4 UUID made from the 16 bytes `random16` (X.667 15.1-15.3:
    version bits 0100 in octet 6, variant bits 10 in octet 8; big-endian integer, X.667 6.3)."""
    b = bytearray(random16[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return UUID_ROOT + "." + str(int.from_bytes(bytes(b), "big"))


class UidGenerator:
    def __init__(self, root, serial, boot_count, sequence=0):
        self.boot = int(boot_count)
        if self.boot < 0:
            raise ConfigError("boot count must not be negative")
        self.root = root.rstrip(".") if root else ""
        self.sequence = sequence
        if self.root and self.root != UUID_ROOT:
            self.serial = serial_number(serial)
            if not valid(self.root):
                raise ConfigError("uid_root %s is not a valid UID root (PS3.5 9.1)" % self.root)
            self._prefix = "%s.%d.%d." % (self.root, self.serial, self.boot)
            # Leave room for a 6-digit sequence at least.
            if len(self._prefix) + 6 > MAX_LEN:
                raise ConfigError("uid_root %s with this serial leaves no room in 64 characters" % self.root)
        else:
            self._prefix = None
            self._salt = ("modgate:%s:%d:" % (str(serial).strip(), self.boot)).encode()

    def new(self):
        """The next UID of this boot."""
        self.sequence += 1
        if self._prefix is None:
            h = hashlib.sha256(entropy.random_bytes(16))
            h.update(self._salt)
            h.update(str(self.sequence).encode())
            return uuid4_uid(h.digest())
        uid = self._prefix + str(self.sequence)
        if len(uid) > MAX_LEN:
            raise ConfigError("UID sequence exhausted for this boot")
        return uid


def next_boot_count(path):
    """Increment the boot counter kept at `path` (a decimal text file) and return the new value."""
    count = 0
    if fs.exists(path):
        try:
            count = int(fs.read_bytes(path).decode().strip() or "0")
        except ValueError:
            count = 0
    count += 1
    fs.write_atomic(path, str(count).encode())
    return count
