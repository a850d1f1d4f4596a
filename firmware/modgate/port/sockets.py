"""TCP for the event-driven core: the only module that imports `socket`.

Sockets are non-blocking; every wait is a coroutine (port.aio) bounded by a millisecond
timeout, so a slow or silent peer holds up only the task talking to it. Errors come out as
LinkTimeout or LinkClosed with the errno, never as a bare OSError from deep inside a protocol.
"""

import errno
import select
import socket

from modgate.compat import deadline, remaining_ms
from modgate.errors import LinkClosed, LinkTimeout
from modgate.port import aio

# Linux values; MicroPython's unix port lacks the names but accepts the numbers.
_IPPROTO_TCP = 6
_TCP_NODELAY = 1
_TCP_CORK = 3
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLL_ERR = getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16)
_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))


def _resolve(host, port):
    # Blocking, but instant for an IP address (what destinations normally are); a host name
    # costs one DNS round trip, during which the other tasks wait.
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]


def _errno(exc):
    return exc.args[0] if exc.args else None


class Connection:
    """A connected TCP stream with bounded waits. Not thread-safe; one owner at a time."""

    def __init__(self, sock, peer=""):
        self.sock = sock
        self.peer = peer
        sock.setblocking(False)
        try:
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # a port without TCP_NODELAY still works, only slower on small PDUs
        self._poller = select.poll()
        self._poller.register(sock, _POLLIN)
        self._can_cork = True
        # The sender's hot path (see write_now); CPython's sockets have no stream write.
        self.write_now = self._write_now if hasattr(sock, "write") else self.send_now

    def cork(self, on):
        """Hold written bytes until a full segment is ready (Linux TCP_CORK), or send what is held.

        A C-STORE's PDUs then leave in full segments, so the peer wakes once per ~64 KB instead
        of once per PDU: on loopback the large-object rate rose ~40%. Ports without the option
        (lwIP on boards) send as before; the first refusal stops further attempts."""
        if not self._can_cork:
            return
        try:
            self.sock.setsockopt(_IPPROTO_TCP, _TCP_CORK, 1 if on else 0)
        except (OSError, AttributeError):
            self._can_cork = False

    def fileno(self):
        return self.sock.fileno() if hasattr(self.sock, "fileno") else self.sock

    def pollable(self):
        """What a task waits on for input (port.aio.readable)."""
        return self.sock

    async def send_all(self, data, timeout_ms, full=False):
        """Write every byte of `data` (bytes, bytearray or memoryview) within `timeout_ms`; a
        peer that stops reading is a LinkTimeout, never a hang. Other tasks run while it waits.
        `full`: the socket just took less than it was given, so wait for room before trying
        (a send into a full socket only raises EAGAIN, an exception made per PDU)."""
        view = memoryview(data)
        total = len(view)
        sent = 0 if full else self.send_now(view)
        if sent >= total:
            return
        until = deadline(timeout_ms)
        while sent < total:
            left = remaining_ms(until)
            if not left or not await aio.writable(self.sock, left):
                raise LinkTimeout("send to " + self.peer + " timed out after " + str(timeout_ms) + " ms")
            sent += self.send_now(view[sent:])

    def send_now(self, view):
        """What a non-blocking send took of `view` (0 when the socket buffer is full)."""
        try:
            n = self.sock.send(view)
        except OSError as exc:
            if _errno(exc) in _IN_PROGRESS:
                return 0
            raise LinkClosed("send to " + self.peer + " failed: errno " + str(_errno(exc)))
        return n or 0

    def _write_now(self, view):
        """send_now without an exception handler of its own, for the C-STORE loop: on MicroPython
        a function with one takes its frame from the heap (~170 bytes a call on 64-bit). A full
        socket gives 0 (a stream write returns None, where send raises EAGAIN); a failed one
        raises OSError for the caller to take (Association.send_now's callers)."""
        return self.sock.write(view) or 0

    async def recv_into(self, buf, nbytes, timeout_ms):
        """Read up to `nbytes` into `buf` (a memoryview); the count, 0 when the peer closed;
        LinkTimeout when nothing came within `timeout_ms`."""
        n = self.recv_now(buf, nbytes)
        while n is None:
            if not await aio.readable(self.sock, timeout_ms):
                raise LinkTimeout("receive from " + self.peer + " timed out after " + str(timeout_ms) + " ms")
            n = self.recv_now(buf, nbytes)
        return n

    def recv_now(self, buf, nbytes):
        """A non-blocking read: the count (0 = closed), None when nothing is waiting."""
        try:
            if hasattr(self.sock, "readinto"):
                return self.sock.readinto(buf, nbytes)
            return self.sock.recv_into(buf, nbytes)
        except OSError as exc:
            if _errno(exc) not in _IN_PROGRESS:
                raise LinkClosed("receive from " + self.peer + " failed: errno " + str(_errno(exc)))
        return None

    def readable(self, timeout_ms=0):
        """True when a read would not block (data, or the peer closed). A synchronous look:
        `timeout_ms` other than 0 blocks every task; wait with port.aio.readable instead."""
        return bool(self._poller.poll(timeout_ms))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _peer_name(addr):
    """ "HOST:PORT" from CPython's (host, port) or MicroPython's raw sockaddr_in bytes."""
    if isinstance(addr, tuple):
        return "%s:%d" % (addr[0], addr[1])
    raw = bytes(addr)
    if len(raw) >= 8:
        return "%d.%d.%d.%d:%d" % (raw[4], raw[5], raw[6], raw[7], (raw[2] << 8) | raw[3])
    return "?"


async def connect(host, port, timeout_ms):
    """Open a TCP connection within `timeout_ms`; LinkTimeout or LinkClosed (refused) otherwise.
    The connect runs in the background: other tasks go on while the peer is slow to answer."""
    peer = host + ":" + str(port)
    try:
        addr = _resolve(host, port)
    except OSError as exc:
        raise LinkClosed("cannot resolve " + host + ": " + str(exc))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            sock.connect(addr)
        except OSError as exc:
            if _errno(exc) not in _IN_PROGRESS:
                raise
        if not await aio.writable(sock, timeout_ms):
            raise LinkTimeout("connect to " + peer + " timed out after " + str(timeout_ms) + " ms")
        if _events(sock, _POLLOUT) & _POLL_ERR:
            # Refused or unreachable: poll reports the failed connect as an error/hang-up.
            raise OSError(errno.ECONNREFUSED)
    except LinkTimeout:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        code = _errno(exc)
        reason = "refused" if code == errno.ECONNREFUSED else "errno " + str(code)
        raise LinkClosed("connect to " + peer + " failed: " + reason)
    except BaseException:
        sock.close()  # cancelled (the destination was replaced): no socket may outlive its task
        raise
    return Connection(sock, peer)


def _events(sock, mask):
    poller = select.poll()
    poller.register(sock, mask)
    ready = poller.poll(0)
    return ready[0][1] if ready else 0


class Listener:
    """A listening TCP socket whose `accept` never blocks past its timeout."""

    def __init__(self, host, port, backlog=4):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(_resolve(host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        self.sock = sock
        self.host = host
        self.bound_port = port

    def port(self):
        """The bound port (useful after binding port 0), or 0 when the port cannot tell."""
        getsockname = getattr(self.sock, "getsockname", None)
        if getsockname is None:
            return self.bound_port
        name = getsockname()
        if isinstance(name, tuple):
            return name[1]
        return int.from_bytes(bytes(name[2:4]), "big")  # raw sockaddr_in

    async def accept(self, timeout_ms=None):
        """A new Connection, or None when no client arrived within `timeout_ms`."""
        if not await aio.readable(self.sock, timeout_ms):
            return None
        try:
            sock, addr = self.sock.accept()
        except OSError:
            return None
        return Connection(sock, _peer_name(addr))

    def close(self):
        self.sock.close()
