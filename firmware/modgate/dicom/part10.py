"""DICOM Part 10 files (PS3.10 7.1): write the preamble and File Meta Information, read it back, and
stream the data set that follows, either as stored (Explicit VR Little Endian) or re-encoded on the
fly as Implicit VR Little Endian (PS3.5 A.1 / A.2) for peers that accept only the default syntax.

Public API (the network layer and the writer call these):
- `write_meta(stream, sop_class_uid, sop_instance_uid, transfer_syntax_uid=EXPLICIT_VR_LE)` -> bytes written
- `read_meta(f)` -> dict(sop_class_uid, sop_instance_uid, transfer_syntax_uid, dataset_offset);
  leaves `f` positioned at the first data set byte. Raises EncodeError when `f` is no Part 10 file.
- `DatasetReader(f, meta, transfer_syntax_uid, buf=None)`: `.readinto(memoryview) -> n` (0 at the end)
  gives the data set bytes in `transfer_syntax_uid` (Explicit or Implicit VR LE); `.length()` is their
  total, counted without reading values (the reader is rewound). Memory is bounded:
  values (pixel data included) are copied from the file straight into the caller's buffer; only
  element headers pass through a 16-byte scratch (`buf` if given, at least 16 bytes).
"""

import struct

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
# modgate's Implementation Class UID (PS3.7 D.3.3.2): a fixed 2.25 UUID-derived UID, never changed.
IMPLEMENTATION_CLASS_UID = "2.25.125848015309281528580730828827132428128"
IMPLEMENTATION_VERSION_NAME = "MODGATE_010"

PREAMBLE_LEN = 128
# VRs with a 2-byte reserved field and 4-byte length in Explicit VR (PS3.5 Table 7.1-1).
LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")


def _uid_bytes(uid):
    b = uid.encode()
    # UI values are padded with a single NUL to even length (PS3.5 6.2).
    return b + b"\x00" if len(b) & 1 else b


def _meta_element(out, group_elem, vr, value):
    out.append(struct.pack("<HH2sH", 0x0002, group_elem, vr, len(value)))
    out.append(value)


def write_meta(stream, sop_class_uid, sop_instance_uid, transfer_syntax_uid=EXPLICIT_VR_LE):
    """Write preamble, `DICM` and group 0002 (PS3.10 7.1) to `stream`; returns the bytes written."""
    parts = []
    parts.append(struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2))
    parts.append(b"\x00\x01")  # File Meta Information Version
    _meta_element(parts, 0x0002, b"UI", _uid_bytes(sop_class_uid))
    _meta_element(parts, 0x0003, b"UI", _uid_bytes(sop_instance_uid))
    _meta_element(parts, 0x0010, b"UI", _uid_bytes(transfer_syntax_uid))
    _meta_element(parts, 0x0012, b"UI", _uid_bytes(IMPLEMENTATION_CLASS_UID))
    name = IMPLEMENTATION_VERSION_NAME.encode()
    _meta_element(parts, 0x0013, b"SH", name + b" " if len(name) & 1 else name)
    body_len = 0
    for p in parts:
        body_len += len(p)
    stream.write(bytes(PREAMBLE_LEN))
    stream.write(b"DICM")
    stream.write(struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, body_len))
    for p in parts:
        stream.write(p)
    return PREAMBLE_LEN + 4 + 12 + body_len


def read_meta(f):
    """Parse the File Meta Information of the Part 10 file `f` (positioned at its start); see the
    module doc. Lives in dsreader.py with the reader, so writing objects does not pay RAM for it."""
    from modgate.dicom.dsreader import read_meta as read

    return read(f)


def DatasetReader(f, meta, transfer_syntax_uid, buf=None):
    """Stream the data set of a Part 10 file in the requested transfer syntax (see module doc).

    The reader lives in dsreader.py so that writing objects does not pay RAM for it."""
    from modgate.dicom.dsreader import DatasetReader as reader

    return reader(f, meta, transfer_syntax_uid, buf)
