"""port/sntp (RFC 4330) against an SNTP server in the same event loop, and the clock it sets
(modgate.timesync, port/clock): request bytes, the section 5 checks of a reply, the offset."""

import socket
import struct
import unittest

import support
from modgate.errors import ClockError
from modgate.port import aio, clock, entropy, sntp

NTP = 2208988800


def stamp(unix_ms):
    seconds = unix_ms // 1000 + NTP
    return struct.pack(">II", seconds & 0xFFFFFFFF, ((unix_ms % 1000) << 32) // 1000)


def reply(request, server_ms, first_byte=0x24, stratum=2, refid=b"LOCL", originate=None):
    """A server reply (LI 0, VN 4, mode 4 by default) whose clock reads `server_ms`."""
    out = bytearray(48)
    out[0] = first_byte
    out[1] = stratum
    out[12:16] = refid
    out[24:32] = request[40:48] if originate is None else originate
    out[32:40] = stamp(server_ms)
    out[40:48] = stamp(server_ms)
    return bytes(out)


class UdpServer:
    """One UDP socket on 127.0.0.1; `answer(request) -> bytes or None` scripts each reply."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.port = 20000 + int.from_bytes(entropy.random_bytes(2), "little") % 40000
            try:
                self.sock.bind(socket.getaddrinfo("127.0.0.1", self.port)[0][-1])
                break
            except OSError:
                continue
        self.sock.setblocking(False)

    async def serve(self, count=1):
        for _ in range(count):
            if not await aio.readable(self.sock, 5000):
                return
            data, addr = self.sock.recvfrom(128)
            out = self.answer(data)
            if out is not None:
                self.sock.sendto(out, addr)

    def close(self):
        self.sock.close()


def query_against(answer, timeout_ms=2000):
    server = UdpServer(answer)

    async def body():
        task = aio.create_task(server.serve())
        try:
            return await sntp.query("127.0.0.1", server.port, timeout_ms)
        finally:
            await task

    try:
        return support.run(body())
    finally:
        server.close()


class TestPackets(unittest.TestCase):
    def test_request_bytes(self):
        buf = bytearray(48)
        sent = sntp.request(buf, 1767225600123, b"\x01\x02\x03\x04")  # 2026-01-01T00:00:00.123Z
        self.assertEqual(buf[0], 0x23)  # LI 0, VN 4, mode 3 (client)
        self.assertEqual(bytes(buf[1:40]), bytes(39))
        self.assertEqual(struct.unpack_from(">I", buf, 40)[0], 1767225600 + NTP)
        self.assertEqual(sent, bytes(buf[40:44]) + b"\x01\x02\x03\x04")

    def test_timestamps_of_both_eras(self):
        self.assertEqual(sntp.ntp_to_unix_ms(stamp(1767225600500), 0), 1767225600500)
        # 2040: the seconds wrapped (era 1, RFC 4330 section 3)
        self.assertEqual(sntp.ntp_to_unix_ms(stamp(2208988800000), 0), 2208988800000)

    def test_section_5_checks(self):
        request = bytearray(48)
        sent = sntp.request(request, 1767225600000, b"abcd")
        good = reply(request, 1767225600000)
        self.assertEqual(sntp.check(bytearray(good), 48, sent)[2], 2)
        cases = (
            (reply(request, 0, first_byte=0x23), "not an SNTP server reply"),  # mode 3
            (reply(request, 1767225600000, originate=bytes(8)), "does not answer our request"),
            (reply(request, 1767225600000, stratum=0, refid=b"RATE"), "kiss-of-death 'RATE'"),
            (reply(request, 1767225600000, first_byte=0xE4), "not synchronised"),  # leap 3
            (reply(request, 1767225600000, stratum=16), "not synchronised"),
        )
        for data, words in cases:
            with self.assertRaises(ClockError) as caught:
                sntp.check(bytearray(data), 48, sent)
            self.assertIn(words, str(caught.exception))
        with self.assertRaises(ClockError):
            sntp.check(bytearray(good), 40, sent)


class TestQuery(unittest.TestCase):
    def test_offset_of_a_server_an_hour_ahead(self):
        offset, delay, stratum = query_against(lambda r: reply(r, clock.unix_ms() + 3600000))
        self.assertLess(abs(offset - 3600000), 1500)
        self.assertGreaterEqual(delay, 0)
        self.assertEqual(stratum, 2)

    def test_silence_is_a_bounded_clock_error(self):
        with self.assertRaises(ClockError) as caught:
            query_against(lambda r: None, 300)
        self.assertIn("no answer from SNTP server 127.0.0.1", str(caught.exception))
        self.assertIn("within 300 ms", str(caught.exception))

    def test_a_spoofed_answer_is_refused(self):
        with self.assertRaises(ClockError):
            query_against(lambda r: reply(r, clock.unix_ms(), originate=b"12345678"))


class TestClock(unittest.TestCase):
    def tearDown(self):
        clock._offset_s = 0

    def test_unix_ms_follows_set_unix_ms(self):
        target = 1893456000000  # 2030-01-01T00:00:00Z
        clock.set_unix_ms(target)
        self.assertLess(abs(clock.unix_ms() - target), 1500)
        self.assertEqual(clock.now()[:3], (2030, 1, 1))
        self.assertEqual(clock.utc(1893456000), (2030, 1, 1, 0, 0, 0))


if __name__ == "__main__":
    unittest.main()
