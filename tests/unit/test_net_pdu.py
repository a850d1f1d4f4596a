"""PS3.8 9.3 PDUs and items: exact wire bytes, every length check, and a seeded decoder fuzz."""

import struct
import unittest

from modgate.net import items, pdu
from modgate.net.pdu import PDUError

SC = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT = "1.2.840.10008.1.2.1"


def _item(item_type, data):
    return struct.pack(">BBH", item_type, 0, len(data)) + data


# An A-ASSOCIATE-AC answering context 1 (accepted, Explicit VR LE) and 3 (rejected, result 4).
AC_BODY = (
    b"\x00\x01"  # protocol version
    + b"\x00\x00"  # reserved
    + b"MODGATE         "  # called AE (echoed, not tested)
    + b"ANY-SCP         "  # calling AE
    + bytes(32)  # reserved
    + _item(0x10, b"1.2.840.10008.3.1.1.1")  # application context
    + _item(0x21, b"\x01\x00\x00\x00" + _item(0x40, EXPLICIT.encode()))  # context 1: acceptance
    + _item(0x21, b"\x03\x00\x04\x00" + _item(0x40, b"1.2.840.10008.1.2"))  # context 3: TS not supported
    + _item(0x50, _item(0x51, b"\x00\x00\x10\x00")  # max length 4096
            + _item(0x52, b"1.2.3.4")  # implementation class UID
            + _item(0x55, b"PEER_1")  # implementation version name
            + _item(0x54, b"\x00\x02ab\x01\x00"))  # role selection: ignored by an SCU
)


def with_header(pdu_type, body):
    return bytearray(struct.pack(">BBL", pdu_type, 0, len(body)) + body)


class TestHeader(unittest.TestCase):
    def test_unknown_type_is_unrecognised_pdu(self):
        with self.assertRaises(PDUError) as ctx:
            pdu.parse_header(bytes([0x09, 0, 0, 0, 0, 4]), 1000)
        self.assertEqual(ctx.exception.reason, pdu.REASON_UNRECOGNISED_PDU)

    def test_fixed_length_pdus_must_have_length_4(self):
        for t in (pdu.A_ASSOCIATE_RJ, pdu.A_RELEASE_RQ, pdu.A_RELEASE_RP, pdu.A_ABORT):
            self.assertEqual(pdu.parse_header(with_header(t, bytes(4)), 100), (t, 4))
            with self.assertRaises(PDUError):
                pdu.parse_header(with_header(t, bytes(5)), 100)

    def test_huge_length_is_refused_before_reading(self):
        with self.assertRaises(PDUError):
            pdu.parse_header(bytes([4, 0, 0xFF, 0xFF, 0xFF, 0xFF]), 16384)

    def test_short_associate_and_empty_pdata(self):
        with self.assertRaises(PDUError):
            pdu.parse_header(with_header(pdu.A_ASSOCIATE_AC, bytes(20)), 1000)
        with self.assertRaises(PDUError):
            pdu.parse_header(with_header(pdu.P_DATA_TF, bytes(5)), 1000)


class TestEncode(unittest.TestCase):
    def test_associate_rq_bytes(self):
        buf = bytearray(512)
        end = pdu.encode_associate(buf, pdu.A_ASSOCIATE_RQ, b"ANY-SCP         ", b"MODGATE         ")
        end = items.encode_rq_items(buf, end, [(1, SC, (EXPLICIT,))], 16384, "1.2.3", "V1")
        n = pdu.finish_associate(buf, end)
        expect = (
            b"\x01\x00" + struct.pack(">L", n - 6)  # type 1, reserved, length
            + b"\x00\x01\x00\x00"  # protocol version 1, reserved
            + b"ANY-SCP         MODGATE         " + bytes(32)  # called, calling, reserved
            + _item(0x10, b"1.2.840.10008.3.1.1.1")
            + _item(0x20, b"\x01\x00\x00\x00" + _item(0x30, SC.encode()) + _item(0x40, EXPLICIT.encode()))
            + _item(0x50, _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.3") + _item(0x55, b"V1"))
        )
        self.assertEqual(bytes(buf[:n]), expect)
        self.assertEqual(n, items.rq_size([(1, SC, (EXPLICIT,))], "1.2.3", "V1"))
        rq = items.decode_associate(buf, n - 6, False)
        self.assertEqual(rq["contexts"], {1: (SC, [EXPLICIT])})
        self.assertEqual((rq["called"], rq["calling"], rq["max_pdu"]), ("ANY-SCP", "MODGATE", 16384))

    def test_fixed_pdus(self):
        buf = bytearray(16)
        head = b"\x00\x00\x00\x00\x04"  # reserved, length 4
        self.assertEqual(bytes(buf[:pdu.encode_release_rq(buf)]), b"\x05" + head + bytes(4))
        self.assertEqual(bytes(buf[:pdu.encode_release_rp(buf)]), b"\x06" + head + bytes(4))
        self.assertEqual(bytes(buf[:pdu.encode_abort(buf, 2, 6)]), b"\x07" + head + b"\x00\x00\x02\x06")
        self.assertEqual(bytes(buf[:pdu.encode_reject(buf, 1, 1, 7)]), b"\x03" + head + b"\x00\x01\x01\x07")
        self.assertEqual(pdu.decode_reject(buf), (1, 1, 7))

    def test_pdata_header_and_pdv_walk(self):
        buf = bytearray(64)
        buf[12:17] = b"hello"
        n = pdu.pack_pdata(buf, 5, pdu.CONTROL_COMMAND | pdu.CONTROL_LAST, 5)
        self.assertEqual(bytes(buf[:12]), b"\x04\x00\x00\x00\x00\x0b\x00\x00\x00\x07\x05\x03")
        self.assertEqual(pdu.parse_header(buf, 100), (pdu.P_DATA_TF, 11))
        self.assertEqual(pdu.next_pdv(buf, 6, n), (5, 3, 12, 17))

    def test_bad_pdv(self):
        buf = bytearray(b"\x04\x00\x00\x00\x00\x06" + b"\x00\x00\x00\x01\x01\x00")
        with self.assertRaises(PDUError):
            pdu.next_pdv(buf, 6, 12)  # item length 1 < 2
        buf = bytearray(b"\x04\x00\x00\x00\x00\x06" + b"\x00\x00\x00\x02\x01\x10")
        with self.assertRaises(PDUError):
            pdu.next_pdv(buf, 6, 12)  # reserved control bits
        buf = bytearray(b"\x04\x00\x00\x00\x00\x06" + b"\x00\x00\x00\x09\x01\x00")
        with self.assertRaises(PDUError):
            pdu.next_pdv(buf, 6, 12)  # runs past the PDU

    def test_texts(self):
        self.assertEqual(pdu.reject_text(1, 1, 7),
                         "rejected permanent by service user: called AE title not recognised")
        self.assertEqual(pdu.reject_text(2, 3, 1),
                         "rejected transient by service provider (presentation): temporary congestion")
        self.assertEqual(pdu.abort_text(2, 1), "aborted by service provider: unrecognised PDU")
        self.assertEqual(pdu.abort_text(0, 0), "aborted by service user")


class TestDecodeAc(unittest.TestCase):
    def test_ac(self):
        buf = with_header(pdu.A_ASSOCIATE_AC, AC_BODY)
        ac = items.decode_associate(buf, len(AC_BODY), True)
        self.assertEqual(ac["contexts"], {1: (0, EXPLICIT), 3: (4, "1.2.840.10008.1.2")})
        self.assertEqual(ac["max_pdu"], 4096)
        self.assertEqual(ac["implementation_uid"], "1.2.3.4")
        self.assertEqual(ac["implementation_version"], "PEER_1")

    def test_unknown_item_type(self):
        body = AC_BODY + _item(0x77, b"xx")
        with self.assertRaises(PDUError) as ctx:
            items.decode_associate(with_header(2, body), len(body), True)
        self.assertEqual(ctx.exception.reason, pdu.REASON_UNRECOGNISED_PARAMETER)

    def test_item_running_past_the_pdu(self):
        body = AC_BODY[:-3]
        with self.assertRaises(PDUError):
            items.decode_associate(with_header(2, body), len(body), True)

    def test_overlong_uid_and_missing_user_info(self):
        head = AC_BODY[:68] + _item(0x10, b"1.2.840.10008.3.1.1.1")
        body = head + _item(0x21, b"\x01\x00\x00\x00" + _item(0x40, b"1." * 40)) + _item(0x50, b"")
        with self.assertRaises(PDUError):
            items.decode_associate(with_header(2, body), len(body), True)
        with self.assertRaises(PDUError):
            items.decode_associate(with_header(2, head), len(head), True)


class _Lcg:
    """Deterministic on every runtime (MicroPython's random differs from CPython's)."""

    def __init__(self, seed):
        self.state = seed

    def next(self, n):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return self.state % n


def decode_any(buf, limit):
    """What the association does with received bytes: header, then body by type."""
    pdu_type, length = pdu.parse_header(buf, limit)
    if len(buf) < 6 + length:
        return None
    if pdu_type in (pdu.A_ASSOCIATE_AC, pdu.A_ASSOCIATE_RQ):
        return items.decode_associate(buf, length, pdu_type == pdu.A_ASSOCIATE_AC)
    if pdu_type == pdu.P_DATA_TF:
        offset = 6
        while offset < 6 + length:
            offset = pdu.next_pdv(buf, offset, 6 + length)[3]
    return pdu_type


class TestFuzz(unittest.TestCase):
    COUNT = 300

    def test_mutated_pdus_decode_or_raise_pdu_error(self):
        rng = _Lcg(20261127)
        seeds = [
            with_header(pdu.A_ASSOCIATE_AC, AC_BODY),
            bytearray(b"\x04\x00\x00\x00\x00\x0b\x00\x00\x00\x07\x05\x03hello"),
            bytearray(b"\x03\x00\x00\x00\x00\x04\x00\x01\x01\x07"),
        ]
        outcomes = {"ok": 0, "error": 0}
        for i in range(self.COUNT):
            buf = bytearray(seeds[i % len(seeds)])
            for _ in range(1 + rng.next(4)):
                kind = rng.next(3)
                pos = rng.next(len(buf))
                if kind == 0:
                    buf[pos] = rng.next(256)
                elif kind == 1 and len(buf) > 7:
                    buf = buf[:pos] + buf[pos + 1:] if pos > 6 else buf[:-1]
                else:
                    buf[pos:pos] = bytes([rng.next(256)])
            try:
                decode_any(buf, 4096)
                outcomes["ok"] += 1
            except PDUError:
                outcomes["error"] += 1
        self.assertEqual(outcomes["ok"] + outcomes["error"], self.COUNT)
        self.assertGreater(outcomes["error"], 0)


if __name__ == "__main__":
    unittest.main()
