"""DICOM TLS (PS3.15 B.9, the BCP 195 secure transport profile) over port/sockets connections:
the only module that imports `tls` (MicroPython's mbedTLS binding) or `ssl` (CPython's OpenSSL).

A `Client` holds what the device trusts and shows: the CA bundle that signs the archives'
certificates and, for mutual TLS, our own certificate and key, all files on flash. Its
`connect` makes a TCP connection and returns a `TlsConnection`: a sockets.Connection whose
stream is the TLS socket, with the same bounded non-blocking coroutines, so an association does
not know it is encrypted. The server's certificate must chain to the bundle and name the host
we dialled (its DNS name or IP address); TLS 1.2 or later only. Nothing ever falls back to
plain TCP: a failure is a TlsError naming its cause.

The handshake is not a blocking call of its own: MicroPython's `tls` runs it inside the first
reads and writes of a non-blocking socket (as its asyncio streams do), and so does OpenSSL's
SSL_write. It therefore happens in the A-ASSOCIATE-RQ's write, within its own budget (the
connect timeout): a peer that stalls in it is a TlsError after that budget, not a hang.

Files may be PEM or DER. A board's mbedTLS is built without PEM, so PEM is decoded here, one
certificate at a time; the bundle should hold only the CAs of the archives (each parsed one
stays in RAM while an association is open).
"""

import binascii
import errno
import gc

from modgate import log
from modgate.compat import deadline, remaining_ms
from modgate.errors import LinkClosed, LinkTimeout, TlsError
from modgate.port import aio, fs, sockets

try:
    import tls as _tls  # MicroPython built with mbedTLS
except ImportError:  # pragma: no cover - CPython, or a MicroPython without TLS
    _tls = None
_ssl = None
if _tls is None:  # pragma: no cover - MicroPython has no `ssl` of its own without `tls`
    try:
        import ssl as _ssl
    except ImportError:
        _ssl = None

MAX_CA_CERTS = 8  # each parsed certificate holds ~1-2 KB of heap for the association's life
# The cipher suites offered: BCP 195's recommended ones (RFC 7525 4.2, as PS3.15 B.10's
# non-downgrading profile lists them: ephemeral ECDH, AES-GCM), and TLS 1.3's AES-GCM where the
# library has TLS 1.3. Nothing weaker is offered, so nothing weaker can be negotiated.
BCP195_SUITES = ("TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256", "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384",
                 "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
                 "TLS1-3-AES-128-GCM-SHA256", "TLS1-3-AES-256-GCM-SHA384")
_OPENSSL_SUITES = "ECDHE+AESGCM"  # the same for TLS 1.2 (OpenSSL keeps its TLS 1.3 AEAD suites)
_AGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))
# mbedTLS error codes (mbedtls/ssl.h) that say why a handshake ended.
_MBEDTLS_CLOSE_NOTIFY = -0x7880
_MBEDTLS_CONN_EOF = -0x7280
_MBEDTLS_FATAL_ALERT = -0x7780
_MBEDTLS_NOT_TLS = (-0x7200, -0x7700, -0x6700, -0x7300)  # invalid record, unexpected message...
_MBEDTLS_NO_COMMON = (-0x6E80, -0x6E00)  # protocol version, handshake failure
_MBEDTLS_ALLOC_FAILED = -0x7F00
# Free heap the handshake needs beside the record buffers (measured on qemu-armhf: it failed with
# 11.8 KB free as it began and completed with 13.8 KB; docs/benchmarks.md). Short of it, mbedTLS
# may fail the certificate's signature check for want of memory and report the certificate as not
# signed by a trusted CA: that is then reported as out of memory (transient), not as a wrong CA.
HANDSHAKE_HEAP = 14 * 1024
# Free heap below which mbedTLS failing to parse a certificate or key is taken for want of memory
# (it then says "invalid cert" all the same): the record buffers alone take ~21 KB, so with less
# no association could be made anyway, and a good file must not hold the queue as a broken one.
PARSE_HEAP = 24 * 1024
# The peer closed or reset the connection mid-handshake (mbedTLS passes socket errors on negated).
_EPIPE = getattr(errno, "EPIPE", 32)  # MicroPython's errno lacks it; Linux's value
_CLOSED = (_MBEDTLS_CONN_EOF, _MBEDTLS_CLOSE_NOTIFY, _EPIPE, -_EPIPE, errno.ECONNRESET, -errno.ECONNRESET)

# Words of the libraries' verification texts (mbedTLS x509_crt_verify_info, OpenSSL's
# verify_message) and what they mean for the operator, most basic flaw first.
_VERIFY_CAUSES = (
    (("signed by the trusted", "issuer", "self-signed", "self signed", "untrusted"),
     "it is not signed by a CA in the CA bundle"),
    (("CN)", "mismatch"), "it is not issued to %s"),
    (("expired",), "it has expired"),
    (("future", "not yet valid"), "it is not valid yet (is the device clock right?)"),
    (("revoked",), "it is revoked"),
)


def free_heap():
    """Bytes of heap free after a collection; None where the runtime has no heap limit (CPython)."""
    if not hasattr(gc, "mem_free"):
        return None
    gc.collect()
    return gc.mem_free()


def _short_of_heap(what):
    """Raise MemoryError when a parse failure of `what` may have been for want of heap."""
    free = free_heap()
    if free is not None and free < PARSE_HEAP:
        raise MemoryError("no heap to parse %s (%d bytes free, ~%d needed)" % (what, free, PARSE_HEAP))


def available():
    """True when this runtime can make TLS connections."""
    return _tls is not None or _ssl is not None


class Client:
    """TLS client settings for one destination: CA bundle, optional client certificate and key
    (paths on flash). Reads and checks the files now, so a missing or broken file is reported
    before any connection is tried."""

    def __init__(self, ca_path, cert_path="", key_path=""):
        if not available():
            raise TlsError("this firmware image has no TLS (MicroPython built without tls)")
        self.ca_path = ca_path
        self.cert_path = cert_path
        self.key_path = key_path or cert_path
        self.context = self._context()

    def _context(self):
        if _tls is not None:
            ctx = _tls.SSLContext(_tls.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = _tls.CERT_REQUIRED
            known = ctx.get_ciphers()
            ctx.set_ciphers([name for name in BCP195_SUITES if name in known])
        else:  # pragma: no cover - CPython: verifies the host name and requires a certificate
            ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = _ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(_OPENSSL_SUITES)
        count = 0
        for label, der in _der_items(self.ca_path, "CA bundle"):
            if label and "CERTIFICATE" not in label:  # "" is a DER file
                continue
            count += 1
            if count > MAX_CA_CERTS:
                raise TlsError("CA bundle %s holds more than %d certificates: keep only the archives' CAs"
                               % (self.ca_path, MAX_CA_CERTS))
            try:
                if _tls is not None:
                    ctx.load_verify_locations(der)
                else:  # pragma: no cover
                    ctx.load_verify_locations(cadata=der)
            except (OSError, ValueError) as exc:
                _short_of_heap("the CA bundle " + self.ca_path)
                raise TlsError("CA bundle %s: certificate %d is not a valid X.509 certificate (%s)"
                               % (self.ca_path, count, exc))
        if not count:
            raise TlsError("CA bundle " + self.ca_path + " holds no certificate")
        if self.cert_path:
            self._identity(ctx)
        return ctx

    def _identity(self, ctx):
        """Our certificate and key, for a server that asks for one (mutual TLS)."""
        if _tls is None:  # pragma: no cover - CPython's OpenSSL reads PEM files itself
            try:
                ctx.load_cert_chain(self.cert_path, self.key_path)
            except (OSError, ValueError) as exc:
                raise TlsError("client certificate %s / key %s cannot be used (%s)"
                               % (self.cert_path, self.key_path, exc))
            return
        cert = der_item(self.cert_path, "client certificate", "CERTIFICATE")
        key = der_item(self.key_path, "client key", "PRIVATE KEY")
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ValueError) as exc:
            _short_of_heap("the client certificate " + self.cert_path)
            raise TlsError("client certificate %s / key %s cannot be used (%s)"
                           % (self.cert_path, self.key_path, exc))

    async def connect(self, host, port, timeout_ms):
        """A verified TLS connection to host:port: the TCP connect within `timeout_ms`, then the
        handshake within as long again (it completes in the first write)."""
        tcp = await sockets.connect(host, port, timeout_ms)
        try:
            sock = self.context.wrap_socket(tcp.sock, server_hostname=host, do_handshake_on_connect=False)
        except MemoryError:
            tcp.close()
            raise
        except (OSError, ValueError) as exc:
            tcp.close()
            if _code(exc) in (errno.ENOMEM, _MBEDTLS_ALLOC_FAILED):
                raise MemoryError("no heap for the TLS buffers of " + tcp.peer)
            raise TlsError("TLS with " + tcp.peer + " cannot start: " + _text(exc))
        return TlsConnection(sock, tcp, host, timeout_ms)


class TlsConnection(sockets.Connection):
    """A connected TLS stream with sockets.Connection's interface. Until the handshake is over
    (the first bytes written or read), every failure is a TlsError naming the cause, and every
    wait is bounded by the handshake budget as well."""

    def __init__(self, sock, tcp, server_name, handshake_ms):
        super().__init__(sock, tcp.peer)
        self.tcp = tcp
        self.server_name = server_name
        self.established = False
        self.handshake_ms = handshake_ms
        self.version = ""
        self.cipher_suite = ""
        self._handshake_until = deadline(handshake_ms)
        self._free_at_start = free_heap()
        self._error = None  # the handshake's failure: every later call raises it again
        # OpenSSL may need the opposite direction of the call (a read during a write in the
        # handshake); mbedTLS's socket maps its poll itself, so on MicroPython this stays False.
        self._reverse = False
        self.write_now = self.send_now  # a TLS write may need a read first: always the full path

    def cork(self, on):
        self.tcp.cork(on)

    def send_now(self, view):
        self._reverse = False
        if self._error is not None:
            raise self._error
        try:
            n = self.sock.write(view) if _tls is not None else self.sock.send(view)
        except (OSError, ValueError) as exc:
            return self._failed(exc, True)
        if n is None:
            return 0  # MicroPython: would block (the handshake may be waiting to read)
        if n and not self.established:
            self._established()
        return n

    def recv_now(self, buf, nbytes):
        self._reverse = False
        if self._error is not None:
            raise self._error
        try:
            n = self.sock.readinto(buf, nbytes) if _tls is not None else self.sock.recv_into(buf, nbytes)
        except (OSError, ValueError) as exc:
            return self._failed(exc, False)
        if n and not self.established:
            self._established()
        return n

    async def send_all(self, data, timeout_ms, full=False):
        # `full` is not taken up: the session may need to read before it can write again.
        view = memoryview(data)
        total = len(view)
        sent = self.send_now(view)
        until = deadline(timeout_ms)
        while sent < total:
            await self._wait(not self._reverse, until, timeout_ms, "send to ")
            sent += self.send_now(view[sent:])

    async def recv_into(self, buf, nbytes, timeout_ms):
        n = self.recv_now(buf, nbytes)
        until = deadline(timeout_ms)
        while n is None:
            await self._wait(self._reverse, until, timeout_ms, "receive from ")
            n = self.recv_now(buf, nbytes)
        return n

    def readable(self, timeout_ms=0):
        if self._error is not None:
            return False  # nothing more will come: the session is gone
        pending = getattr(self.sock, "pending", None)  # OpenSSL may hold a decrypted record
        if pending is not None and pending():
            return True
        return super().readable(timeout_ms)

    def close(self):
        super().close()
        self.tcp.close()

    async def _wait(self, write, until, timeout_ms, what):
        left = remaining_ms(until)
        if not self.established:
            budget = remaining_ms(self._handshake_until)
            if budget < left:
                left = budget
        ready = aio.writable if write else aio.readable
        if left and await ready(self.sock, left):
            return
        if not self.established:
            raise TlsError("TLS handshake with %s did not finish within %d ms: the peer stopped answering"
                           " (is it a TLS port?)" % (self.peer, self.handshake_ms), True)
        raise LinkTimeout(what + self.peer + " timed out after " + str(timeout_ms) + " ms")

    def _established(self):
        self.established = True
        if _tls is not None:
            self.cipher_suite, self.version = self.sock.cipher()
        else:  # pragma: no cover
            self.version = self.sock.version()
            self.cipher_suite = self.sock.cipher()[0]
        log.info("net", "TLS with %s: %s %s, certificate of %s verified"
                 % (self.peer, self.version, self.cipher_suite, self.server_name))

    def _failed(self, exc, writing):
        """A read or write raised: None/0 when it would only block, else the error to raise."""
        if _ssl is not None and isinstance(exc, _ssl.SSLWantReadError):  # pragma: no cover
            self._reverse = writing
            return 0 if writing else None
        if _ssl is not None and isinstance(exc, _ssl.SSLWantWriteError):  # pragma: no cover
            self._reverse = not writing
            return 0 if writing else None
        code = _code(exc)
        if code in _AGAIN:
            return 0 if writing else None
        if self.established:
            if code in (_MBEDTLS_CLOSE_NOTIFY, _MBEDTLS_CONN_EOF) and not writing:
                return 0  # the peer closed (with or without a close_notify)
            what = "send to " if writing else "receive from "
            raise LinkClosed(what + self.peer + " failed: " + _text(exc))
        if code in (errno.ENOMEM, _MBEDTLS_ALLOC_FAILED):
            raise MemoryError("no heap for the TLS handshake with " + self.peer)
        cause, transient = _cause(exc, self.server_name)
        free = self._free_at_start
        if free is not None and free < HANDSHAKE_HEAP and "not signed by a CA" in cause:
            raise MemoryError("no heap to verify the certificate of %s (%d bytes free as the TLS handshake"
                              " began, ~%d needed): it is not known to be wrong"
                              % (self.peer, free, HANDSHAKE_HEAP))
        self._error = TlsError("TLS with " + self.peer + " failed: " + cause, transient)
        raise self._error


def _cause(exc, server_name):
    """(what went wrong in words, transient) for an exception raised during the handshake."""
    text = _text(exc)
    code = _code(exc)
    verify = getattr(exc, "verify_message", None)  # CPython's SSLCertVerificationError
    if verify or (isinstance(exc, ValueError) and not isinstance(exc, OSError)):
        found = []
        for words, meaning in _VERIFY_CAUSES:
            for word in words:
                if word in (verify or text):
                    found.append(meaning % server_name if "%s" in meaning else meaning)
                    break
        what = "; ".join(found) if found else "it failed verification"
        return "the server certificate was refused: " + what + " (" + (verify or text) + ")", False
    reason = str(getattr(exc, "reason", "") or "")
    if code == _MBEDTLS_FATAL_ALERT or "ALERT" in reason:
        return ("the server ended the handshake with an alert (" + text + "): it may not accept our client"
                " certificate (tls_cert_file), or have no TLS 1.2 cipher suite in common"), False
    if code in _MBEDTLS_NO_COMMON or "VERSION" in reason or "NO_SHARED" in reason:
        return "no TLS version or cipher suite in common (BCP 195 needs TLS 1.2 or later): " + text, False
    if code in _MBEDTLS_NOT_TLS or "RECORD" in reason or "PACKET" in reason:
        return "the peer does not speak TLS on this port (" + text + ")", False
    if code in _CLOSED or "EOF" in reason:
        return ("the peer closed the connection during the handshake (is it a TLS port? does it want a"
                " client certificate, tls_cert_file?)"), True
    return "handshake error: " + text, True


def _code(exc):
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _text(exc):
    """The library's words for `exc` (mbedTLS: (code, text); OpenSSL: its reason string)."""
    args = getattr(exc, "args", ())
    if len(args) > 1 and isinstance(args[1], str):
        return args[1].strip().replace("\n", "; ")
    text = str(exc).strip()
    return text.replace("\n", "; ") if text else exc.__class__.__name__


def der_item(path, what, kind):
    """The DER bytes of the first `kind` item (CERTIFICATE, PRIVATE KEY) of a PEM or DER file."""
    for label, der in _der_items(path, what):
        if not label or label.endswith(kind):
            return der  # a DER key may be PKCS#8, PKCS#1 or SEC1: mbedTLS tries each
    raise TlsError(what + " " + path + " holds no " + kind)


def _der_items(path, what):
    """(PEM label, DER bytes) for each item of a PEM file, or ("", bytes) for a DER file; read
    a line at a time, so a bundle never has to fit in RAM as text."""
    try:
        f = fs.open_file(path, "rb")
    except OSError:
        raise TlsError(what + " " + path + " is not on flash")
    try:
        line = f.readline()
        if line[:1] == b"\x30":  # DER: an ASN.1 SEQUENCE
            yield "", line + f.read()
            return
        label = None
        chunks = []
        locked = False
        while line:
            text = line.strip()
            if text.startswith(b"-----BEGIN "):
                label = text[11:].rstrip(b"-").decode()
                chunks = []
                locked = label.startswith("ENCRYPTED")
            elif text.startswith(b"-----END ") and label is not None:
                if locked:
                    raise TlsError(what + " " + path + " is encrypted: store the key without a passphrase")
                try:
                    der = binascii.a2b_base64(b"".join(chunks))
                except ValueError:
                    raise TlsError(what + " " + path + ": a " + label + " block is not valid base64")
                yield label, der
                label = None
            elif label is not None and text:
                if b":" in text:  # an RFC 1421 header: "Proc-Type: 4,ENCRYPTED" marks a locked key
                    locked = locked or b"ENCRYPTED" in text
                else:
                    chunks.append(text)
            line = f.readline()
    finally:
        f.close()
