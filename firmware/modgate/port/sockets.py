"""TCP with poll-based timeouts: the only module that imports `socket` and `select`.

Every wait is bounded by a millisecond timeout; errors come out as LinkTimeout or LinkClosed
with the errno, never as a bare OSError from deep inside a protocol.
"""

import errno
import select
import socket

from modgate.compat import deadline, remaining_ms
from modgate.errors import LinkClosed, LinkTimeout

# Linux values; MicroPython's unix port lacks the names but accepts the numbers.
_IPPROTO_TCP = 6
_TCP_NODELAY = 1
_TCP_CORK = 3
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLL_ERR = getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16)
_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))


def _resolve(host, port):
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]


def _wait(sock, events, timeout_ms, what):
    poller = select.poll()
    poller.register(sock, events)
    ready = poller.poll(timeout_ms)
    if not ready:
        raise LinkTimeout(what + " timed out after " + str(timeout_ms) + " ms")
    return ready[0][1]


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

    def send_all(self, data, timeout_ms):
        """Write every byte of `data` (bytes, bytearray or memoryview) within `timeout_ms`."""
        view = memoryview(data)
        total = len(view)
        sent = 0
        until = deadline(timeout_ms)
        while sent < total:
            try:
                n = self.sock.send(view[sent:])
            except OSError as exc:
                if exc.args and exc.args[0] in _IN_PROGRESS:
                    n = 0
                else:
                    raise LinkClosed(
                        "send to " + self.peer + " failed: errno " + str(exc.args[0] if exc.args else "?")
                    )
            if n is None:
                n = 0
            sent += n
            if sent < total:
                left = remaining_ms(until)
                if left == 0:
                    raise LinkTimeout("send to " + self.peer + " timed out")
                ev = _wait(self.sock, _POLLOUT, left, "send to " + self.peer)
                if ev & _POLL_ERR and not ev & _POLLOUT:
                    raise LinkClosed("connection to " + self.peer + " broke while sending")

    def recv_into(self, buf, nbytes, timeout_ms):
        """Read up to `nbytes` into `buf` (a memoryview); return the count, 0 when the peer closed."""
        while True:
            try:
                n = (
                    self.sock.readinto(buf, nbytes)
                    if hasattr(self.sock, "readinto")
                    else self.sock.recv_into(buf, nbytes)
                )
            except OSError as exc:
                code = exc.args[0] if exc.args else None
                if code not in _IN_PROGRESS:
                    raise LinkClosed("receive from " + self.peer + " failed: errno " + str(code))
                n = None
            if n is not None:
                return n
            ready = self._poller.poll(timeout_ms)
            if not ready:
                raise LinkTimeout("receive from " + self.peer + " timed out after " + str(timeout_ms) + " ms")

    def readable(self, timeout_ms=0):
        """True when a read would not block (data, or the peer closed)."""
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


class Poller:
    """Waits on several streams (sockets, ttys) at once, for input; the ingest's TCP input uses it.

    `poll` returns (key, events) pairs where key is what the runtime reports: the registered
    object on MicroPython, its file descriptor on CPython."""

    def __init__(self):
        self._poll = select.poll()

    def register(self, obj):
        self._poll.register(obj, _POLLIN)

    def unregister(self, obj):
        self._poll.unregister(obj)

    def poll(self, timeout_ms):
        return self._poll.poll(timeout_ms)


def connect(host, port, timeout_ms):
    """Open a TCP connection within `timeout_ms`; LinkTimeout or LinkClosed (refused) otherwise."""
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
            if not exc.args or exc.args[0] not in _IN_PROGRESS:
                raise
        events = _wait(sock, _POLLOUT, timeout_ms, "connect to " + peer)
        if events & _POLL_ERR:
            # Refused or unreachable: poll reports the failed connect as an error/hang-up.
            raise OSError(errno.ECONNREFUSED)
    except LinkTimeout:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        code = exc.args[0] if exc.args else None
        reason = "refused" if code == errno.ECONNREFUSED else "errno " + str(code)
        raise LinkClosed("connect to " + peer + " failed: " + reason)
    return Connection(sock, peer)


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

    def accept(self, timeout_ms=0):
        """A new Connection, or None when no client arrived within `timeout_ms`."""
        poller = select.poll()
        poller.register(self.sock, _POLLIN)
        if not poller.poll(timeout_ms):
            return None
        try:
            sock, addr = self.sock.accept()
        except OSError:
            return None
        return Connection(sock, _peer_name(addr))

    def close(self):
        self.sock.close()
