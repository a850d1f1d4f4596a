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


# An A-ASSOCIATE-AC as pynetdicom 3.0.4 encodes it (tests/host/test_pdu_reference.py rebuilds it):
# context 1 accepted with Explicit VR LE, context 3 refused (4), maximum length 16383 (odd).
PYNETDICOM_AC = bytes.fromhex(
    "0200000000db00010000414e592d5343502020202020202020204d4f4447415445202020202020202020"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "10000015312e322e3834302e31303030382e332e312e312e31"
    "2100001b0100000040000013312e322e3834302e31303030382e312e322e31"
    "210000190300040040000011312e322e3834302e31303030382e312e32"
    "5000003e5100000400003fff52000020312e322e3832362e302e312e333638303034332e392e333831312e322e302e32"
    "5500000e50594e45544449434f4d5f323032"
)


def hostile_ac(accepted_id=1, refused_id=3):
    """PYNETDICOM_AC with everything PS3.8 tells a receiver to ignore made as awkward as it gets:
    every reserved byte set (PS3.8 9.3.3, Table 9-17), AE title fields not text, a top-level item
    and a user information sub-item of unknown types (9.3.1), and the refused context's transfer
    syntax sub-item replaced by junk (Table 9-18). The context IDs may be set to answer an RQ."""
    ac = bytearray(PYNETDICOM_AC)
    ac[103] = accepted_id
    ac[134] = refused_id
    ac[1] = 0xFF  # PDU reserved byte
    ac[8:10] = b"\xff\xff"  # reserved, after the protocol version
    ac[10:42] = bytes(range(0x80, 0xA0))  # called and calling AE: reserved in an AC, not tested
    ac[42:74] = b"\xa5" * 32  # reserved
    # Item reserved bytes: application context (74), context 1 (99) with its reserved bytes
    # after ID and result (104, 106) and its transfer syntax sub-item (107), context 3 (130, 135, 137).
    for at in (75, 100, 104, 106, 108, 131, 135, 137):
        ac[at] = 0xEE
    # Context 3 (result 4): its 21-byte transfer syntax sub-item at 138 becomes junk.
    junk = "\u00e9t\u00e9 \u00e9t\u00e9!".encode()
    ac[138:159] = b"\x7f\xee\x00\x11" + junk + b"\xff" * (17 - len(junk))
    assert len(ac) == len(PYNETDICOM_AC)
    # Before user information (159): an item of a type PS3.8 does not define.
    unknown = b"\x60\xee\x00\x04\xde\xad\xbe\xef"
    # User information: reserved byte set, and an unknown sub-item (0x5F) first.
    user = b"\x50\xee" + struct.pack(">H", 0x3E + 6) + b"\x5f\x00\x00\x02ok" + ac[163:]
    body = ac[6:159] + unknown + user
    return bytearray(b"\x02\xff" + struct.pack(">L", len(body))) + body


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
        buf = bytearray(b"\x04\x00\x00\x00\x00\x06" + b"\x00\x00\x00\x02\x01\xfe")
        self.assertEqual(pdu.next_pdv(buf, 6, 12), (1, 2, 12, 12))  # reserved bits not tested (E.2)
        buf = bytearray(b"\x04\x00\x00\x00\x00\x06" + b"\x00\x00\x00\x09\x01\x00")
        with self.assertRaises(PDUError):
            pdu.next_pdv(buf, 6, 12)  # runs past the PDU

    def test_pdv_room_is_even(self):
        # PS3.8 E.1: every fragment has an even length, whatever maximum the peer announced.
        for peer_max in (16383, 16384, 257, 4096, 131071):
            for start in (6, 12, 118, 119):
                room = pdu.pdv_room(peer_max + 6, start)
                self.assertEqual(room & 1, 0)
                self.assertTrue(peer_max + 6 - start - 6 - 1 <= room <= peer_max + 6 - start - 6)
        self.assertEqual(pdu.pdv_room(16383 + 6, 6), 16376)
        self.assertTrue(pdu.pdv_room(20, 20) < 2)

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
        # A refused context's transfer syntax is not significant (PS3.8 Table 9-18).
        self.assertEqual(ac["contexts"], {1: (0, EXPLICIT), 3: (4, None)})
        self.assertEqual(ac["max_pdu"], 4096)
        self.assertEqual(ac["implementation_uid"], "1.2.3.4")
        self.assertEqual(ac["implementation_version"], "PEER_1")

    def test_unknown_item_types_are_skipped(self):
        # PS3.8 9.3.1: a receiver ignores items it does not know, top level and sub-items alike.
        body = AC_BODY + _item(0x77, b"xx")
        self.assertEqual(items.decode_associate(with_header(2, body), len(body), True)["max_pdu"], 4096)

    def test_pynetdicom_ac_as_encoded(self):
        buf = bytearray(PYNETDICOM_AC)
        length = pdu.parse_header(buf, 1000)[1]
        ac = items.decode_associate(buf, length, True)
        self.assertEqual(ac["contexts"], {1: (0, EXPLICIT), 3: (4, None)})
        self.assertEqual((ac["max_pdu"], ac["implementation_version"]), (16383, "PYNETDICOM_202"))

    def test_hostile_ac_is_accepted_and_read_the_same(self):
        buf = hostile_ac()
        self.assertNotEqual(bytes(buf), PYNETDICOM_AC)
        pdu_type, length = pdu.parse_header(buf, 1000)
        self.assertEqual(pdu_type, pdu.A_ASSOCIATE_AC)
        ac = items.decode_associate(buf, length, True)
        self.assertEqual(ac["contexts"], {1: (0, EXPLICIT), 3: (4, None)})
        self.assertEqual(ac["max_pdu"], 16383)
        self.assertEqual(ac["implementation_uid"], "1.2.826.0.1.3680043.9.3811.2.0.2")
        self.assertEqual((ac["called"], ac["calling"]), ("", ""))

    def test_accepted_context_still_needs_one_syntax(self):
        head = AC_BODY[:68] + _item(0x10, b"1.2.840.10008.3.1.1.1")
        user = _item(0x50, _item(0x51, b"\x00\x00\x10\x00"))
        for context in (b"\x01\x00\x00\x00", b"\x01\x00\x00\x00" + _item(0x40, b"1.2") + _item(0x40, b"1.3")):
            body = head + _item(0x21, context) + user
            with self.assertRaises(PDUError):
                items.decode_associate(with_header(2, body), len(body), True)
        body = head + _item(0x21, b"\x01\x00\x00\x00" + _item(0x7A, b"?") + _item(0x40, b"1.2")) + user
        ac = items.decode_associate(with_header(2, body), len(body), True)
        self.assertEqual(ac["contexts"], {1: (0, "1.2")})

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
