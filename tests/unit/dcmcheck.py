"""Read back an object the device stored and check its structure (on MicroPython too, where
pydicom is not): the Part 10 meta, every top-level element of the Explicit VR LE data set, Number
of Frames against the Pixel Data length, nothing after Pixel Data."""

import io
import struct

from modgate.dicom.dsreader import read_meta
from modgate.dicom.part10 import LONG_VRS
from modgate.port import fs

PIXEL_DATA = 0x7FE00010


def elements(data, offset):
    """{tag: (vr, value)} of the data set starting at `offset`; AssertionError when it is broken."""
    out = {}
    while offset < len(data):
        group, elem, vr = struct.unpack_from("<HH2s", data, offset)
        if vr in LONG_VRS:
            length = struct.unpack_from("<L", data, offset + 8)[0]
            offset += 12
        else:
            length = struct.unpack_from("<H", data, offset + 6)[0]
            offset += 8
        if offset + length > len(data):
            raise AssertionError("element (%04X,%04X) runs past the end of the file" % (group, elem))
        out[(group << 16) | elem] = (vr, data[offset:offset + length])
        offset += length
        if (group << 16) | elem == PIXEL_DATA and offset != len(data):
            raise AssertionError("%d bytes after Pixel Data" % (len(data) - offset))
    return out


def read_object(path, frame_bytes):
    """(SOP Instance UID, frames, pixel bytes) of the stored object at `path`, whose frames are
    `frame_bytes` each; AssertionError when its structure is not what the device must write."""
    return check(fs.read_bytes(path), frame_bytes)


def check(data, frame_bytes):
    """read_object() of an object's bytes."""
    f = io.BytesIO(data)
    meta = read_meta(f)
    found = elements(data, f.tell())
    if PIXEL_DATA not in found:
        raise AssertionError("no Pixel Data")
    uid = found[0x00080018][1].rstrip(b"\x00").decode()
    if uid != meta["sop_instance_uid"]:
        raise AssertionError("SOP Instance UID differs from the file meta's")
    pixels = found[PIXEL_DATA][1]
    frames = len(pixels) // frame_bytes
    if len(pixels) != frames * frame_bytes + ((frames * frame_bytes) & 1):
        raise AssertionError("Pixel Data of %d bytes is not whole frames of %d" % (len(pixels), frame_bytes))
    count = found.get(0x00280008)
    if count is not None and int(count[1].decode().strip()) != frames:
        raise AssertionError("Number of Frames %s, Pixel Data holds %d" % (count[1], frames))
    sc_multi_frame = meta["sop_class_uid"].startswith("1.2.840.10008.5.1.4.1.1.7.")
    if frames == 1 and sc_multi_frame and 0x00280009 in found:
        raise AssertionError("one frame with a Frame Increment Pointer (PS3.3 C.8.6.3: Type 1C)")
    return uid, frames, bytes(pixels[:frames * frame_bytes])
