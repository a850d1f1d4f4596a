"""Small data sets with sequences (modgate.dicom.dataset) and received text in its Specific
Character Set (modgate.dicom.charset), on every runtime: exact bytes out, tolerant but bounded
reading in, and a clear DecodeError for what breaks PS3.5."""

import io
import struct
import unittest

from modgate.dicom import charset, dataset
from modgate.errors import DecodeError

CODE = {0x00080100: True, 0x00080104: True}
WANTED = {0x00100010: True, 0x00400100: {0x00400009: True, 0x00400008: CODE}}


def el(tag, vr, value, explicit=True):
    """One element by hand (PS3.5 7.1.2/7.1.3), for the reader's inputs."""
    if not explicit:
        return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
    if vr in ("SQ", "UN", "OB", "UT"):
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def undefined(tag, vr, items, explicit=True):
    """A sequence of undefined length whose items are of undefined length too (PS3.5 7.5.2)."""
    head = (
        struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, 0xFFFFFFFF)
        if explicit
        else struct.pack("<HHL", tag >> 16, tag & 0xFFFF, 0xFFFFFFFF)
    )
    body = b""
    for item in items:
        body += (
            struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + item + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        )
    return head + body + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def read(data, explicit=True, wanted=WANTED):
    return dataset.read(io.BytesIO(data), len(data), explicit, wanted)


class TestEncode(unittest.TestCase):
    def test_explicit_bytes_with_a_nested_sequence(self):
        out = bytearray()
        dataset.encode(
            out,
            [
                (0x00100010, "PN", "Doe"),
                (0x00400100, "SQ", [[(0x00400009, "SH", "S1"), (0x00400008, "SQ", [])]]),
            ],
            True,
        )
        self.assertEqual(
            bytes(out),
            b"\x10\x00\x10\x00PN\x04\x00Doe "  # padded with a space
            b"\x40\x00\x00\x01SQ\x00\x00\x1e\x00\x00\x00"  # SQ, defined length 30
            b"\xfe\xff\x00\xe0\x16\x00\x00\x00"  # item of 22
            b"\x40\x00\x09\x00SH\x02\x00S1"
            b"\x40\x00\x08\x00SQ\x00\x00\x00\x00\x00\x00",
        )  # empty: universal
        self.assertEqual(
            read(bytes(out)), {0x00100010: b"Doe ", 0x00400100: [{0x00400009: b"S1", 0x00400008: []}]}
        )

    def test_implicit_bytes_and_uid_padding(self):
        out = bytearray()
        dataset.encode(out, [(0x0020000D, "UI", "1.2.3"), (0x00280010, "US", 512)], False)
        self.assertEqual(
            bytes(out), b"\x20\x00\x0d\x00\x06\x00\x00\x001.2.3\x00\x28\x00\x10\x00\x02\x00\x00\x00\x00\x02"
        )

    def test_items_alone_are_a_sequence_value(self):
        out = bytearray()
        dataset.encode_items(out, [[(0x00080100, "SH", "X1")], []], True)
        self.assertEqual(
            bytes(out),
            b"\xfe\xff\x00\xe0\x0a\x00\x00\x00\x08\x00\x00\x01SH\x02\x00X1\xfe\xff\x00\xe0\x00\x00\x00\x00",
        )

    def test_decoded_items_are_what_was_encoded(self):
        items = [
            [(0x00080050, "SH", "A1"), (0x0020000D, "UI", "1.2.3"),
             (0x00400008, "SQ", [[(0x00080100, "SH", "P1"), (0x00080104, "LO", "M\u00fcller")]]),
             (0x00400009, "SH", "S1")],
            [],
        ]
        out = bytearray()
        dataset.encode_items(out, items, True)
        self.assertEqual(dataset.decode_items(bytes(out)), items)

    def test_decoding_what_is_not_items_is_a_decode_error(self):
        out = bytearray()
        dataset.encode_items(out, [[(0x00080050, "SH", "A1")]], True)
        with self.assertRaises(DecodeError):
            dataset.decode_items(bytes(out[:-1]))
        with self.assertRaises(DecodeError):
            dataset.decode_items(b"\x08\x00\x50\x00SH\x02\x00A1")


class TestRead(unittest.TestCase):
    def test_implicit_with_undefined_lengths(self):
        code = el(0x00080100, "SH", b"C1", False) + el(0x00080104, "LO", b"Chest ", False)
        step = undefined(0x00400008, "", [code], False) + el(0x00400009, "SH", b"S7", False)
        data = el(0x00100010, "PN", b"Roe^Ann ", False) + undefined(0x00400100, "", [step], False)
        self.assertEqual(
            read(data, False),
            {
                0x00100010: b"Roe^Ann ",
                0x00400100: [{0x00400008: [{0x00080100: b"C1", 0x00080104: b"Chest "}], 0x00400009: b"S7"}],
            },
        )

    def test_unwanted_elements_and_sequences_are_skipped(self):
        inner = el(0x00400009, "SH", b"S1")
        data = (
            el(0x00080005, "CS", b"ISO_IR 100")
            + el(0x00081110, "SQ", b"")
            + undefined(0x00081120, "SQ", [el(0x00081150, "UI", b"1.2\x00")])
            + el(0x00100010, "PN", b"X ")
            + el(0x00400100, "SQ", struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner)
            + el(0x7FE00010, "OB", b"\x00" * 2000)
        )
        self.assertEqual(read(data), {0x00100010: b"X ", 0x00400100: [{0x00400009: b"S1"}]})

    def test_un_of_undefined_length_is_an_implicit_sequence(self):
        data = undefined(0x00400100, "UN", [el(0x00400009, "SH", b"S9", False)])
        self.assertEqual(read(data), {0x00400100: [{0x00400009: b"S9"}]})

    def test_long_values_and_many_items_are_bounded(self):
        items = [el(0x00400009, "SH", b"%02d" % i) for i in range(dataset.MAX_ITEMS + 3)]
        data = (
            el(0x00100010, "UT", b"A" * 3000)
            + undefined(0x00400100, "SQ", items)
            + el(0x00100020, "LO", b"P1")
        )
        out = read(data, True, {0x00100010: True, 0x00100020: True, 0x00400100: {0x00400009: True}})
        self.assertEqual(len(out[0x00100010]), dataset.MAX_VALUE)
        self.assertEqual(len(out[0x00400100]), dataset.MAX_ITEMS)
        self.assertEqual(out[0x00100020], b"P1")  # the reader found its place again after both

    def test_what_breaks_the_encoding_is_a_decode_error(self):
        bad = {
            "value past the end": el(0x00100010, "PN", b"Doe ")[:-2],
            "header cut": el(0x00100010, "PN", b"Doe ") + b"\x10\x00",
            "item where an element goes": struct.pack("<HHL", 0xFFFE, 0xE000, 0),
            "not an item inside a sequence": el(0x00400100, "SQ", el(0x00100010, "PN", b"X ")),
            "undefined length value": struct.pack("<HH2sHL", 0x0010, 0x0010, b"UT", 0, 0xFFFFFFFF),
            "item without its delimiter": undefined(0x00400100, "SQ", [b""])[:-16],
            "item longer than its sequence": el(0x00400100, "SQ", struct.pack("<HHL", 0xFFFE, 0xE000, 40)),
        }
        for name in bad:
            with self.assertRaises(DecodeError, msg=name):
                read(bad[name])

    def test_nesting_is_bounded(self):
        nested = el(0x00400009, "SH", b"S1")
        for _ in range(dataset.MAX_DEPTH + 1):
            nested = undefined(0x00400100, "SQ", [nested])
        deep = {}
        deep[0x00400100] = deep  # every level wanted
        with self.assertRaises(DecodeError):
            read(nested, True, deep)
        with self.assertRaises(DecodeError):
            read(nested, True, {})  # not wanted, but still walked to find its end: bounded too

    def test_implicit_undefined_length_non_sequence_is_refused(self):
        data = struct.pack("<HHL", 0x0010, 0x0020, 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        # Read as a sequence (undefined length), it holds a delimiter where an item belongs only at
        # the end: an empty sequence, which is not wanted and so is dropped.
        self.assertEqual(read(data, False, {}), {})


class TestCharsets(unittest.TestCase):
    def test_terms(self):
        self.assertEqual(
            charset.terms(b"ISO 2022 IR 6\\ISO 2022 IR 100 "), ["ISO 2022 IR 6", "ISO 2022 IR 100"]
        )
        self.assertEqual(charset.terms(b"\\ISO 2022 IR 87"), ["", "ISO 2022 IR 87"])
        self.assertEqual(charset.terms(None), [])

    def test_latin1_utf8_and_default(self):
        self.assertEqual(charset.decode(b"M\xfcller^J\xfcrgen", ["ISO_IR 100"]), ("Müller^Jürgen", True))
        self.assertEqual(charset.decode("Müller^Zoë".encode(), ["ISO_IR 192"]), ("Müller^Zoë", True))
        self.assertEqual(charset.decode(b"Doe^John", []), ("Doe^John", True))
        # Undeclared non-ASCII is not guessed at: shown escaped, and said to be so.
        self.assertEqual(charset.decode(b"M\xfcller", []), ("M\\xfcller", False))
        self.assertEqual(charset.decode(b"M\xc3", ["ISO_IR 192"]), ("M\\xc3", False))
        self.assertEqual(charset.decode(b"A\x85B", ["ISO_IR 100"]), ("A\\x85B", False))  # C1 control

    def test_iso_2022_ir_6_and_100(self):
        esc_latin1 = b"\x1b-A"
        value = b"Gr" + esc_latin1 + b"\xfc\xdfe^Hans"
        self.assertEqual(charset.decode(value, ["ISO 2022 IR 6", "ISO 2022 IR 100"]), ("Grüße^Hans", True))
        self.assertEqual(charset.decode(b"D\xe9j\xe0", ["ISO 2022 IR 100"]), ("Déjà", True))
        # Without its escape (as pydicom writes it), IR 100 is still the only upper set declared.
        both = ["ISO 2022 IR 6", "ISO 2022 IR 100"]
        self.assertEqual(charset.decode(b"Gr\xfc\xdfe", both), ("Grüße", True))
        # G1 not designated under IR 6 alone: the upper half is not Latin-1 there.
        self.assertEqual(charset.decode(b"D\xe9", ["ISO 2022 IR 6"]), ("D\\xe9", False))

    def test_what_cannot_be_decoded_is_escaped_never_raised(self):
        jis = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
        text, exact = charset.decode(jis, ["", "ISO 2022 IR 87"])
        self.assertFalse(exact)
        self.assertTrue(text.startswith("Yamada^Tarou="), text)
        self.assertIn("\\x1b", text)
        for raw, sets in (
            (b"\xd0\x9f", ["ISO_IR 144"]),
            (b"\x81\x30", ["GB18030"]),
            (bytes(range(256)), ["ISO_IR 100"]),
            (b"\x1b$)C\xff", ["ISO 2022 IR 149"]),
        ):
            text, exact = charset.decode(raw, sets)
            self.assertFalse(exact)
            self.assertTrue(all(ord(c) < 256 for c in text))


if __name__ == "__main__":
    unittest.main()
