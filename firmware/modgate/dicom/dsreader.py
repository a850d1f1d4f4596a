"""File Meta Information reader, and the streaming reader of a Part 10 data set: Explicit VR LE as
stored, or re-encoded on the fly as Implicit VR LE (PS3.5 A.1, 7.1.3, 7.5). Reached through
`part10.read_meta` and `part10.DatasetReader` (documented there).
"""

import struct

from modgate.dicom.part10 import EXPLICIT_VR_LE, IMPLICIT_VR_LE, LONG_VRS, PREAMBLE_LEN
from modgate.errors import EncodeError

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIM = 0xFFFEE00D
SEQ_DELIM = 0xFFFEE0DD


def _read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) != n:
        raise EncodeError("not a DICOM Part 10 file: truncated file meta information")
    return data


def _text(value):
    end = len(value)
    while end and value[end - 1] in (0, 32):
        end -= 1
    return value[:end].decode()


def read_meta(f):
    """Parse the File Meta Information of the Part 10 file `f` (positioned at its start)."""
    head = _read_exact(f, PREAMBLE_LEN + 4)
    if head[PREAMBLE_LEN:] != b"DICM":
        raise EncodeError("not a DICOM Part 10 file: no DICM prefix")
    meta = {"sop_class_uid": None, "sop_instance_uid": None, "transfer_syntax_uid": None}
    offset = PREAMBLE_LEN + 4
    end = None
    names = {0x0002: "sop_class_uid", 0x0003: "sop_instance_uid", 0x0010: "transfer_syntax_uid"}
    # Group 0002 is always Explicit VR LE (PS3.10 7.1). The group length tells where it ends;
    # without one, stop at the first element of another group.
    while end is None or offset < end:
        hdr = f.read(8)
        if not hdr or len(hdr) < 8:
            break
        group, elem, vr, length = struct.unpack_from("<HH2sH", hdr, 0)
        if group != 0x0002:
            if end is not None:
                raise EncodeError("file meta information group length is wrong")
            f.seek(offset)
            break
        offset += 8
        if vr in LONG_VRS:
            length = struct.unpack_from("<L", _read_exact(f, 4), 0)[0]
            offset += 4
        value = _read_exact(f, length)
        offset += length
        if elem == 0x0000:
            end = offset + struct.unpack_from("<L", value, 0)[0]
        elif elem in names:
            meta[names[elem]] = _text(value)
    if not meta["transfer_syntax_uid"]:
        raise EncodeError("file meta information has no Transfer Syntax UID")
    meta["dataset_offset"] = offset
    return meta



class DatasetReader:
    """Stream the data set of a Part 10 file in the requested transfer syntax (see module doc)."""

    def __init__(self, f, meta, transfer_syntax_uid, buf=None):
        source = meta["transfer_syntax_uid"]
        if transfer_syntax_uid == source:
            self._recode = False
        elif source == EXPLICIT_VR_LE and transfer_syntax_uid == IMPLICIT_VR_LE:
            self._recode = True
        else:
            raise EncodeError("cannot stream " + source + " as " + transfer_syntax_uid)
        self._f = f
        self._start = meta["dataset_offset"]
        self._buf = buf if buf is not None and len(buf) >= 16 else bytearray(16)
        self._hdr = memoryview(self._buf)
        self._rewind()

    def _rewind(self):
        self._f.seek(self._start)
        self._pos = self._start  # source offset, to close defined-length SQ/items
        self._hdr_start = 0
        self._hdr_end = 0
        self._value_left = 0
        self._ends = []  # (source end offset, delimiter tag) of open defined-length SQ/items
        self._eof = False

    def length(self):
        """Bytes readinto will give from the start, found without reading any value, and the
        reader rewound. A P-DATA-TF states its fragment's length before the bytes (PS3.8 9.3.1),
        so a sender streaming from a small buffer needs the total first."""
        if not self._recode:
            end = self._f.seek(0, 2)
            self._f.seek(self._start)
            return end - self._start
        total = 0
        while True:
            if self._hdr_start < self._hdr_end:
                total += self._hdr_end - self._hdr_start
                self._hdr_start = self._hdr_end
            elif self._value_left:
                # Values pass through unchanged: count them, skip them.
                total += self._value_left
                self._pos += self._value_left
                self._f.seek(self._pos)
                self._value_left = 0
            elif self._eof or not self._next_header():
                break
        self._rewind()
        return total

    def raw_stream(self):
        """The file itself when the data set goes out as stored (no re-encoding): its next bytes
        are the data set's, so a sender may read them straight from it. None otherwise."""
        return None if self._recode else self._f

    def readinto(self, mv):
        """Fill `mv` with the next data set bytes; returns the count, 0 once the data set is done."""
        if not self._recode:
            return self._raw(mv, len(mv))
        want = len(mv)
        pos = 0
        while pos < want:
            if self._hdr_start < self._hdr_end:
                n = self._hdr_end - self._hdr_start
                if n > want - pos:
                    n = want - pos
                mv[pos:pos + n] = self._hdr[self._hdr_start:self._hdr_start + n]
                self._hdr_start += n
                pos += n
            elif self._value_left:
                n = self._value_left if self._value_left < want - pos else want - pos
                got = self._raw(mv[pos:pos + n], n)
                if not got:
                    raise EncodeError("data set truncated inside a value")
                self._value_left -= got
                self._pos += got
                pos += got
            elif self._eof or not self._next_header():
                break
        return pos

    def _raw(self, mv, n):
        f = self._f
        got = 0
        while got < n:
            k = f.readinto(mv[got:n] if got else mv)
            if not k:
                break
            got += k
        return got

    def _emit(self, tag, length):
        struct.pack_into("<HHL", self._buf, 0, tag >> 16, tag & 0xFFFF, length)
        self._hdr_start = 0
        self._hdr_end = 8

    def _next_header(self):
        """Read one Explicit VR header and queue its Implicit VR form (PS3.5 7.1.3 / 7.5)."""
        ends = self._ends
        if ends and self._pos >= ends[-1][0]:
            # A defined-length SQ or item ends here: Implicit output uses undefined lengths, so
            # lengths never need recomputing; close it with its delimitation item (PS3.5 7.5.2).
            self._emit(ends.pop()[1], 0)
            return True
        hdr = self._hdr
        got = self._raw(hdr[0:8], 8)
        if got == 0:
            self._eof = True
            return False
        if got < 8:
            raise EncodeError("data set truncated inside an element header")
        self._pos += 8
        group, elem = struct.unpack_from("<HH", self._buf, 0)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            # Item and delimiters have no VR in either syntax (PS3.5 7.5).
            length = struct.unpack_from("<L", self._buf, 4)[0]
            if tag == ITEM and length != UNDEFINED:
                ends.append((self._pos + length, ITEM_DELIM))
                length = UNDEFINED
            self._emit(tag, length)
            return True
        vr = bytes(hdr[4:6])
        if vr in LONG_VRS:
            if self._raw(hdr[8:12], 4) < 4:
                raise EncodeError("data set truncated inside an element header")
            self._pos += 4
            length = struct.unpack_from("<L", self._buf, 8)[0]
        else:
            length = struct.unpack_from("<H", self._buf, 6)[0]
        if vr == b"SQ":
            if length != UNDEFINED:
                ends.append((self._pos + length, SEQ_DELIM))
            self._emit(tag, UNDEFINED)
            return True
        self._emit(tag, length)
        self._value_left = length
        return True
