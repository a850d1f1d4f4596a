"""User Identity negotiation (PS3.7 D.3.3.7): the A-ASSOCIATE-RQ sub-item's exact bytes, the
AC's response sub-item, and what a session proposes to TLS and plain destinations."""

import struct
import unittest

from modgate.net import items, pdu
from modgate.net.pdu import PDUError
from modgate.net.scu import StoreSession
from test_net_pdu import AC_BODY, EXPLICIT, SC, _item, with_header


class TestRequest(unittest.TestCase):
    def encode(self, identity):
        buf = bytearray(512)
        end = pdu.encode_associate(buf, pdu.A_ASSOCIATE_RQ, b"ANY-SCP         ", b"MODGATE         ")
        end = items.encode_rq_items(buf, end, [(1, SC, (EXPLICIT,))], 16384, "1.2.3", "V1", identity)
        n = pdu.finish_associate(buf, end)
        self.assertEqual(n, items.rq_size([(1, SC, (EXPLICIT,))], "1.2.3", "V1", identity))
        return bytes(buf[:n])

    def test_username_and_passcode_sub_item(self):
        rq = self.encode(items.user_identity("modgate", "s3cret"))
        sub = (b"\x58\x00" + struct.pack(">H", 1 + 1 + 2 + 7 + 2 + 6)  # item 58H, reserved, length
               + b"\x02"  # User-Identity-Type 2: username and passcode
               + b"\x01"  # positive response requested
               + b"\x00\x07modgate"  # primary field length, username (UTF-8)
               + b"\x00\x06s3cret")  # secondary field length, passcode
        user_info = _item(0x50, _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.3")
                          + _item(0x55, b"V1") + sub)
        self.assertTrue(rq.endswith(user_info), rq[-60:])

    def test_username_alone_has_an_empty_secondary_field(self):
        rq = self.encode(items.user_identity("modgate"))
        self.assertTrue(rq.endswith(b"\x58\x00\x00\x0d\x01\x01\x00\x07modgate\x00\x00"))
        self.assertIsNone(items.user_identity(""))  # no username: no sub-item at all
        self.assertNotIn(b"\x58\x00", self.encode(None)[-40:])

    def test_the_rq_still_decodes(self):
        rq = bytearray(self.encode(items.user_identity("modgate", "x")))
        decoded = items.decode_associate(rq, len(rq) - 6, False)
        self.assertEqual(decoded["contexts"], {1: (SC, [EXPLICIT])})


class TestResponse(unittest.TestCase):
    def ac(self, extra):
        body = bytearray(AC_BODY)
        user = body.rindex(b"\x50\x00")  # the user information item, at the end
        length = struct.unpack_from(">H", body, user + 2)[0] + len(extra)
        struct.pack_into(">H", body, user + 2, length)
        body += extra
        return with_header(2, bytes(body)), len(body)

    def test_positive_response_is_seen(self):
        buf, n = self.ac(_item(0x59, b"\x00\x00"))  # server response: empty (types 1 and 2)
        self.assertEqual(items.decode_associate(buf, n, True)["identity_response"], b"")
        buf, n = self.ac(_item(0x59, b"\x00\x03abc"))
        self.assertEqual(items.decode_associate(buf, n, True)["identity_response"], b"abc")
        plain = with_header(2, AC_BODY)
        self.assertIsNone(items.decode_associate(plain, len(AC_BODY), True)["identity_response"])

    def test_a_response_that_overruns_is_invalid(self):
        buf, n = self.ac(_item(0x59, b"\x00\x09abc"))
        with self.assertRaises(PDUError):
            items.decode_associate(buf, n, True)


class TestSessionProposal(unittest.TestCase):
    def session(self, tls):
        dest = {"aet": "PACS", "host": "127.0.0.1", "port": 104, "tls": tls}
        return StoreSession(dest, {"calling_aet": "MODGATE", "max_pdu": 4096, "tls_ca_file": "/ca.pem",
                                   "user_identity": "modgate", "user_passcode": "pw"})

    def test_the_passcode_travels_only_over_tls(self):
        self.assertEqual(self.session(True).identity, (items.IDENTITY_USERNAME_PASSCODE, b"modgate", b"pw"))
        self.assertEqual(self.session(False).identity, (items.IDENTITY_USERNAME, b"modgate", b""))


if __name__ == "__main__":
    unittest.main()
