"""SNTP client (RFC 4330): one request, one answer over UDP, waiting through port.aio.

`query(host, port, timeout_ms)` asks a server once and returns what RFC 4330 section 5 gives a
client: the clock offset and the round-trip delay, both in milliseconds, and the server's
stratum. An answer that fails the section 5 checks (not a server reply, unsynchronised, a
kiss-of-death, not an answer to our request) is a ClockError naming the check; silence is a
ClockError after `timeout_ms`. Nothing blocks: the socket is non-blocking and the wait is a
bounded coroutine, so other tasks run while the server thinks.
"""

import socket
import struct

from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import ClockError
from modgate.port import aio, clock, entropy

PORT = 123
PACKET = 48
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
_VERSION = 4
_MODE_CLIENT = 3
_MODE_SERVER = 4
_LEAP_ALARM = 3  # leap indicator 3: the server's clock is not synchronised


def request(buf, unix_ms, nonce):
    """Fill `buf` (48 bytes) with a client request: LI 0, VN 4, mode 3, and our Transmit
    Timestamp: the seconds of `unix_ms` and 4 bytes of `nonce` as the fraction, so the answer's
    Originate Timestamp proves it answers this request (RFC 4330 section 5)."""
    for i in range(PACKET):
        buf[i] = 0
    buf[0] = (_VERSION << 3) | _MODE_CLIENT
    struct.pack_into(">I", buf, 40, (unix_ms // 1000 + NTP_UNIX_OFFSET) & 0xFFFFFFFF)
    buf[44:48] = nonce
    return bytes(buf[40:48])


def ntp_to_unix_ms(buf, offset):
    """The 64-bit NTP timestamp at buf[offset:] in milliseconds since 1970. Seconds with the top
    bit clear are in era 1 (from 2036, RFC 4330 section 3)."""
    seconds, fraction = struct.unpack_from(">II", buf, offset)
    if not seconds & 0x80000000:
        seconds += 1 << 32
    return (seconds - NTP_UNIX_OFFSET) * 1000 + ((fraction * 1000) >> 32)


def check(buf, n, sent):
    """RFC 4330 section 5's checks of a reply of `n` bytes to the request whose Transmit
    Timestamp was `sent`; (T2, T3, stratum) in ms since 1970, or ClockError."""
    if n < PACKET:
        raise ClockError("SNTP reply of %d bytes (needs 48)" % n)
    leap = buf[0] >> 6
    version = (buf[0] >> 3) & 7
    mode = buf[0] & 7
    stratum = buf[1]
    if mode != _MODE_SERVER or version not in (3, 4):
        raise ClockError("not an SNTP server reply (version %d, mode %d)" % (version, mode))
    if bytes(buf[24:32]) != sent:
        raise ClockError("SNTP reply does not answer our request (originate timestamp differs)")
    if stratum == 0:
        printable = all(32 <= c < 127 or c == 0 for c in buf[12:16])
        code = bytes(buf[12:16]).decode().strip("\x00 ") if printable else "?"
        raise ClockError("SNTP server sent kiss-of-death " + repr(code) + " (it refuses to serve us now)")
    if leap == _LEAP_ALARM or stratum > 15:
        raise ClockError("SNTP server is not synchronised (leap %d, stratum %d)" % (leap, stratum))
    if not any(buf[40:48]) or not any(buf[32:40]):
        raise ClockError("SNTP reply without receive or transmit timestamp")
    return ntp_to_unix_ms(buf, 32), ntp_to_unix_ms(buf, 40), stratum


async def query(host, port=PORT, timeout_ms=3000):
    """(offset_ms, delay_ms, stratum) from one exchange with the SNTP server host:port."""
    try:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    except OSError as exc:
        raise ClockError("cannot resolve SNTP server " + host + ": " + str(exc))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        buf = bytearray(PACKET + 16)
        t1 = clock.unix_ms()
        sent = request(buf, t1, entropy.random_bytes(4))
        start = ticks_ms()
        try:
            sock.sendto(memoryview(buf)[:PACKET], addr)
        except OSError as exc:
            raise ClockError("cannot send to SNTP server %s:%d: %s" % (host, port, exc))
        while True:
            left = timeout_ms - ticks_diff(ticks_ms(), start)
            if left <= 0 or not await aio.readable(sock, left):
                raise ClockError("no answer from SNTP server %s:%d within %d ms" % (host, port, timeout_ms))
            try:
                n = sock.readinto(buf) if hasattr(sock, "readinto") else sock.recv_into(buf)
            except OSError as exc:
                raise ClockError("SNTP server %s:%d: %s" % (host, port, exc))
            if n is None:
                continue  # woken without a datagram
            t4 = t1 + ticks_diff(ticks_ms(), start)  # the round trip by the monotonic ticks
            t2, t3, stratum = check(buf, n, sent)
            return ((t2 - t1) + (t3 - t4)) // 2, (t4 - t1) - (t3 - t2), stratum
    finally:
        sock.close()
