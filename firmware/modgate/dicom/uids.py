"""UID generation (PS3.5 9, B.2): unique across reboots and devices, at most 64 characters.

Public API:
- `UidGenerator(root, serial, boot_count, sequence=0)`; `.new()` -> str; `.sequence` counts them.
  With a root: `<root>.<serial>.<boot>.<seq>`;
  with root None or "": `2.25.<integer>` (PS3.5 B.2) whose 128 bits hold serial, boot and sequence.
  `serial` is the device serial (digits, or letters and digits read as base 36); `boot_count` the
  flash-kept counter the app bumps once per boot (`next_boot_count`), so sequences never repeat.
  Raises ConfigError when the root or serial cannot give valid UIDs.
- `next_boot_count(path)`: read, increment and durably store the boot counter at `path`.
- `valid(uid)`: True when `uid` follows PS3.5 9.1 (digits and dots, no leading zeros, <= 64 chars).
"""

from modgate.errors import ConfigError
from modgate.port import fs

MAX_LEN = 64
# 2.25 form: 128-bit integer = serial (40 bits) | boot (40 bits) | sequence (48 bits).
_SERIAL_BITS = 40
_BOOT_BITS = 40
_SEQ_BITS = 48


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


class UidGenerator:
    def __init__(self, root, serial, boot_count, sequence=0):
        """`sequence`: UIDs already issued in this boot by an earlier generator (settings changed),
        so the new one never reissues a (boot, sequence) pair, whatever root or serial it has."""
        self.serial = serial_number(serial)
        self.boot = int(boot_count)
        if self.boot < 0:
            raise ConfigError("boot count must not be negative")
        self.root = root.rstrip(".") if root else ""
        self.sequence = sequence
        if self.root:
            if not valid(self.root):
                raise ConfigError("uid_root %s is not a valid UID root (PS3.5 9.1)" % self.root)
            self._prefix = "%s.%d.%d." % (self.root, self.serial, self.boot)
            # Leave room for a 6-digit sequence at least.
            if len(self._prefix) + 6 > MAX_LEN:
                raise ConfigError("uid_root %s with this serial leaves no room in 64 characters" % self.root)
        else:
            if self.serial >> _SERIAL_BITS or self.boot >> _BOOT_BITS:
                raise ConfigError("serial or boot count too large for the 2.25 UID form; set uid_root")
            self._prefix = None
            self._high = (self.serial << (_BOOT_BITS + _SEQ_BITS)) | (self.boot << _SEQ_BITS)

    def new(self):
        """The next UID of this boot."""
        self.sequence += 1
        if self._prefix is not None:
            uid = self._prefix + str(self.sequence)
            if len(uid) > MAX_LEN:
                raise ConfigError("UID sequence exhausted for this boot")
            return uid
        if self.sequence >> _SEQ_BITS:
            raise ConfigError("UID sequence exhausted for this boot")
        return "2.25." + str(self._high | self.sequence)


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
