"""The data set of a normalized request (N-ACTION, N-CREATE, N-SET) written to a Part 10 file on
flash, element by element, so that a request listing a thousand objects never sits in RAM. The
network layer sends it as it sends a stored object: streamed, and re-encoded to Implicit VR
Little Endian on the way when the peer accepted only that (part10.DatasetReader).

`DatasetFile(stream, sop_class, sop_instance)` writes the File Meta Information (PS3.10 7.1,
Explicit VR Little Endian), then:
- `.elements([(tag, vr, value)])`: elements as modgate.dicom.dataset encodes them (an SQ value
  is a list of items, each a list of elements, with defined lengths);
- `.begin_sequence(tag)`, `.item([(tag, vr, value)])`, `.end_sequence()`: a sequence written as
  its items come, with undefined length and a Sequence Delimitation Item (PS3.5 7.5.2);
- `.begin_item()`, `.end_item()`: an item of undefined length, for an item holding a sequence
  that is itself written item by item.
The caller keeps tags ascending (PS3.5 7.1) and closes the stream.
"""

import struct

from modgate.dicom import dataset, part10

UNDEFINED = 0xFFFFFFFF


class DatasetFile:
    def __init__(self, stream, sop_class, sop_instance):
        self.stream = stream
        part10.write_meta(stream, sop_class, sop_instance, part10.EXPLICIT_VR_LE)

    def elements(self, elements):
        out = bytearray()
        dataset.encode(out, elements, True)
        self.stream.write(out)

    def item(self, elements):
        out = bytearray()
        dataset.encode_items(out, (elements,), True)
        self.stream.write(out)

    def begin_sequence(self, tag):
        self.stream.write(struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, UNDEFINED))

    def end_sequence(self):
        self.stream.write(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))

    def begin_item(self):
        self.stream.write(struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED))

    def end_item(self):
        self.stream.write(struct.pack("<HHL", 0xFFFE, 0xE00D, 0))
