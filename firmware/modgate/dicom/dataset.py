"""Small data sets with nested sequences: encode elements into a bytearray, and read a received
data set (Explicit or Implicit VR Little Endian, PS3.5 7.1, 7.5) from a stream, keeping only the
elements asked for. Used for C-FIND identifiers (net/find.py, modgate.worklist) and for the
sequences the object writer puts into objects (Request Attributes Sequence, codes).

Public API:
- `encode(out, elements, explicit)`: append [(tag, vr, value)] to bytearray `out`. value: str
  (UTF-8; UI padded with NUL, others with a space), bytes (as is, padded), int (US), or, for SQ,
  a list of items, each a list of elements. Sequences and items get defined lengths.
- `encode_items(out, items, explicit)`: the value of one SQ element (its items) only.
- `decode_items(raw)`: what encode_items made (Explicit VR, defined lengths) back into items of
  (tag, vr, value), text as str without its padding: a context's sequences (modgate.mpps).
- `read(f, length, explicit, wanted, each=None)` -> {tag: bytes or [item dicts]}: read `length`
  bytes of a data set from file `f` (at its position). `wanted` maps the tags to keep: True for
  a value, a dict (the same shape) for a sequence whose items are read with it. Everything else
  is skipped without being held; each kept value is cut at MAX_VALUE bytes, each sequence at
  MAX_ITEMS items. `each` maps top-level sequence tags to a function called with every item
  (a dict) as soon as it is read, none kept and none cut: a thousand references pass through
  one item's worth of RAM. A data set that breaks the encoding rules raises DecodeError.
"""

import struct

from modgate.dicom.dsreader import ITEM, ITEM_DELIM, SEQ_DELIM, UNDEFINED
from modgate.dicom.part10 import LONG_VRS
from modgate.errors import DecodeError

MAX_VALUE = 1024  # longer than any text VR a worklist carries (PN: 3 groups of 64 bytes)
MAX_ITEMS = 8
MAX_DEPTH = 4  # sequences inside sequences; deeper nesting is refused, not followed


# ---- encoding ------------------------------------------------------------------------------------


def _raw(vr, value):
    if isinstance(value, int):
        return struct.pack("<H", value)
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) & 1:
        raw += b"\x00" if vr == "UI" else b" "  # PS3.5 6.2: UI pads with NUL, text with a space
    return raw


def encode(out, elements, explicit):
    """Append `elements` to `out` in the order given (callers keep tags ascending, PS3.5 7.1)."""
    for tag, vr, value in elements:
        start = len(out)
        long_form = not explicit or vr.encode() in LONG_VRS
        if not explicit:
            out += struct.pack("<HHL", tag >> 16, tag & 0xFFFF, 0)
        elif long_form:
            out += struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, 0)
        else:
            out += struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), 0)
        head = len(out) - start
        if vr == "SQ":
            encode_items(out, value or (), explicit)
        else:
            out += _raw(vr, value)
        length = len(out) - start - head
        if long_form:
            struct.pack_into("<L", out, start + head - 4, length)
        elif length > 0xFFFF:
            raise DecodeError("value of (%04X,%04X) too long for its VR" % (tag >> 16, tag & 0xFFFF))
        else:
            struct.pack_into("<H", out, start + 6, length)


def encode_items(out, items, explicit):
    for item in items:
        at = len(out)
        out += struct.pack("<HHL", 0xFFFE, 0xE000, 0)
        encode(out, item, explicit)
        struct.pack_into("<L", out, at + 4, len(out) - at - 8)


def decode_items(raw):
    items, end = _decode_items(memoryview(raw), 0, len(raw))
    return items


def _decode_items(mv, at, end):
    items = []
    while at < end:
        group, element, length = struct.unpack_from("<HHL", mv, at)
        if (group, element) != (0xFFFE, 0xE000) or at + 8 + length > end:
            raise DecodeError("not an item of defined length at byte %d" % at)
        items.append(_decode_elements(mv, at + 8, at + 8 + length))
        at += 8 + length
    return items, at


def _decode_elements(mv, at, end):
    out = []
    while at < end:
        group, element = struct.unpack_from("<HH", mv, at)
        vr = bytes(mv[at + 4:at + 6])
        if vr in LONG_VRS:
            length = struct.unpack_from("<L", mv, at + 8)[0]
            at += 12
        else:
            length = struct.unpack_from("<H", mv, at + 6)[0]
            at += 8
        if at + length > end:
            raise DecodeError("(%04X,%04X) overruns its item" % (group, element))
        tag = (group << 16) | element
        if vr == b"SQ":
            value = _decode_items(mv, at, at + length)[0]
        elif vr == b"US":
            value = struct.unpack_from("<H", mv, at)[0]
        else:
            value = bytes(mv[at:at + length]).decode()
            while value and value[-1] in "\x00 ":
                value = value[:-1]
        out.append((tag, vr.decode(), value))
        at += length
    return out


# ---- reading -------------------------------------------------------------------------------------


class _Stream:
    """A file read forward with its position counted, so defined lengths can be checked."""

    def __init__(self, f, length):
        self.f = f
        self.base = f.tell()
        self.pos = 0
        self.end = length
        self.head = bytearray(8)
        self.mv = memoryview(self.head)

    def header(self, n):
        """The next n (4 or 8) bytes into self.head."""
        if self.pos + n > self.end:
            raise DecodeError("data set ends inside an element header")
        got = self.f.readinto(self.mv[:n])
        if got != n:
            raise DecodeError("data set shorter than its length")
        self.pos += n

    def take(self, n):
        keep = n if n <= MAX_VALUE else MAX_VALUE
        data = self.f.read(keep) if keep else b""
        if len(data) != keep:
            raise DecodeError("data set shorter than its length")
        self.pos += keep
        if keep < n:
            self.skip(n - keep)
        return data

    def skip(self, n):
        self.pos += n
        self.f.seek(self.base + self.pos)


def read(f, length, explicit, wanted, each=None):
    s = _Stream(f, length)
    return _dataset(s, length, explicit, wanted, 0, each)


def _bound(s, end, length, what):
    stop = s.pos + length
    if stop > (s.end if end is None else end):
        raise DecodeError(what + " of length %d runs past its container" % length)
    return stop


def _dataset(s, end, explicit, wanted, depth, each=None):
    """Elements until `end` (a defined length) or, with end None, an Item Delimitation Item."""
    out = {}
    head = s.head
    while end is None or s.pos < end:
        if end is None and s.pos >= s.end:
            raise DecodeError("item of undefined length without its delimitation item")
        s.header(8)
        group, element = struct.unpack_from("<HH", head, 0)
        tag = (group << 16) | element
        if group == 0xFFFE:
            if tag == ITEM_DELIM and end is None and depth:
                return out
            raise DecodeError("item tag (FFFE,%04X) where an element was expected" % element)
        if explicit:
            vr = bytes(head[4:6])
            if vr in LONG_VRS:
                s.header(4)
                length = struct.unpack_from("<L", head, 0)[0]
            else:
                length = struct.unpack_from("<H", head, 6)[0]
        else:
            vr = None
            length = struct.unpack_from("<L", head, 4)[0]
        sub = wanted.get(tag)
        # Implicit VR names no VR: a sequence is known by the caller's map or by its undefined
        # length; UN of undefined length holds an Implicit VR sequence (PS3.5 6.2.2).
        if vr == b"SQ" or (vr is None and (isinstance(sub, dict) or length == UNDEFINED)) or (
                vr == b"UN" and length == UNDEFINED):
            if length != UNDEFINED and not isinstance(sub, dict):
                s.skip(_bound(s, end, length, "sequence") - s.pos)
                continue
            if depth >= MAX_DEPTH:
                raise DecodeError("sequences nested deeper than %d" % MAX_DEPTH)
            stop = None if length == UNDEFINED else _bound(s, end, length, "sequence")
            one = each.get(tag) if each is not None else None
            items = _items(s, stop, explicit and vr != b"UN", sub if isinstance(sub, dict) else {}, depth + 1,
                           one)
            if isinstance(sub, dict) and one is None:
                out[tag] = items
            continue
        if length == UNDEFINED:
            raise DecodeError("(%04X,%04X) has an undefined length" % (group, element))
        _bound(s, end, length, "value")
        if sub is None:
            s.skip(length)
        else:
            out[tag] = s.take(length)
    return out


def _items(s, end, explicit, wanted, depth, each=None):
    """The items of one sequence, until `end` or a Sequence Delimitation Item; with `each`,
    every item goes to it as it is read and none is kept."""
    items = []
    head = s.head
    while end is None or s.pos < end:
        s.header(8)
        tag = (struct.unpack_from("<H", head, 0)[0] << 16) | struct.unpack_from("<H", head, 2)[0]
        length = struct.unpack_from("<L", head, 4)[0]
        if tag == SEQ_DELIM and end is None:
            return items
        if tag != ITEM:
            raise DecodeError("sequence holds (%04X,%04X), not an item" % (tag >> 16, tag & 0xFFFF))
        stop = None if length == UNDEFINED else _bound(s, end, length, "item")
        if each is not None:
            each(_dataset(s, stop, explicit, wanted, depth))
            continue
        if len(items) >= MAX_ITEMS:
            if stop is None:
                _dataset(s, None, explicit, {}, depth)
            else:
                s.skip(stop - s.pos)
            continue
        items.append(_dataset(s, stop, explicit, wanted, depth))
    return items
