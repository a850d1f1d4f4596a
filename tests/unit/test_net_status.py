"""Status classification (PS3.4 B.2.3, PS3.7 Annex C), AE titles and DIMSE command sets."""

import unittest

from modgate.errors import ConfigError
from modgate.net import aetitle, dimse, status


class TestStatus(unittest.TestCase):
    def test_classes(self):
        cases = {
            0x0000: "success", 0xB000: "warning", 0xB007: "warning", 0xB006: "warning", 0x0107: "transient",
            0xA700: "transient", 0xA7FF: "transient", 0x0213: "transient", 0x0110: "transient",
            0xA900: "permanent", 0xC000: "permanent", 0xCFFF: "permanent", 0x0122: "permanent",
            0x0124: "permanent", 0xA801: "permanent", 0xFF00: "transient", 0x1234: "transient",
            0x0111: "duplicate",
        }
        for code, klass in cases.items():
            self.assertEqual(status.classify(code)[0], klass, hex(code))

    def test_every_row_has_a_reason_and_a_known_class(self):
        for mask, value, klass, reason in status.STATUS_CLASSES:
            self.assertIn(klass, status.CLASSES)
            self.assertEqual(value & mask, value)
            self.assertTrue(len(reason) > 10)
        self.assertEqual(status.STATUS_CLASSES[-1][0], 0)  # the catch-all is last

    def test_duplicate_is_its_own_class_not_success(self):
        # PS3.7 C.4.5: only the forwarder knows whether an earlier attempt may have delivered it.
        self.assertEqual(status.classify(0x0111), (status.DUPLICATE, status.classify(0x0111)[1]))
        self.assertNotIn(status.classify(0x0111)[0], (status.SUCCESS, status.WARNING))
        self.assertEqual(status.CLASSES, ("success", "warning", "transient", "permanent", "duplicate"))

    def test_describe(self):
        self.assertTrue(status.describe(0xA700).startswith("0xA700 transient (PS3.4 B.2.3"))


class TestAeTitle(unittest.TestCase):
    def test_valid(self):
        for title in ("A", "MODGATE", "STORE SCP", "X" * 16, " PAD "):
            self.assertEqual(aetitle.validate(title), title)
        self.assertEqual(aetitle.field("AB"), b"AB" + b" " * 14)

    def test_invalid(self):
        for title in ("", "X" * 17, "A\\B", "A\tB", "A\x00", "    ", "\u00e9T", None, 5):
            with self.assertRaises(ConfigError):
                aetitle.validate(title)


class TestDimse(unittest.TestCase):
    def test_store_rq_round_trip(self):
        buf = bytearray(256)
        n = dimse.encode_store_rq(buf, 0, 7, "1.2.840.10008.5.1.4.1.1.7", "1.2.3.45")
        rsp = dimse.parse_response(buf[:n] + b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00", n + 10)
        self.assertEqual(rsp["command"], dimse.C_STORE_RQ)
        self.assertEqual(rsp["dataset_type"], dimse.DATASET_PRESENT)
        self.assertEqual(rsp["status"], 0)
        # Group length counts the bytes after its own element, UIDs padded with NUL to even length.
        self.assertEqual(int.from_bytes(bytes(buf[8:12]), "little"), n - 12)
        self.assertEqual(n % 2, 0)

    def test_echo_rq_has_no_dataset(self):
        buf = bytearray(128)
        n = dimse.encode_echo_rq(buf, 0, 1)
        self.assertEqual(n, 12 + 8 + 18 + 10 + 10 + 10)

    def test_broken_response(self):
        with self.assertRaises(dimse.DimseError):
            dimse.parse_response(b"\x00\x00\x00\x01\x04\x00\x00\x00", 8)  # element past the end
        with self.assertRaises(dimse.DimseError):
            dimse.parse_response(b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x80", 10)  # no status


if __name__ == "__main__":
    unittest.main()
