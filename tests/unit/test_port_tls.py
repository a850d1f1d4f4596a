"""port/tls: DICOM TLS (PS3.15 B.9) against a real TLS server in the same event loop, on CPython
(OpenSSL) and on MicroPython (mbedTLS): a verified handshake in the first write, and the causes
of a refusal in words (untrusted, expired, misnamed, a stalled peer), each a TlsError that says
whether retrying can help. Certificates: tests/unit/data/tls (see its README)."""

import unittest

import support
from modgate.errors import TlsError
from modgate.port import aio, fs, tls

try:
    import tls as _server_tls  # MicroPython
except ImportError:  # pragma: no cover - CPython
    _server_tls = None
    import ssl as _server_ssl

DATA = fs.join(__file__.rpartition("/")[0], "data", "tls")


def data(name):
    return fs.join(DATA, name)


def server_context(cert, key, client_ca=None):
    """A TLS server context for `cert`/`key` (data file names); requiring a client certificate
    signed by `client_ca` when given."""
    if _server_tls is not None:
        ctx = _server_tls.SSLContext(_server_tls.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.der_item(data(cert), "cert", "CERTIFICATE"),
                            tls.der_item(data(key), "key", "PRIVATE KEY"))
        if client_ca:
            ctx.verify_mode = _server_tls.CERT_REQUIRED
            ctx.load_verify_locations(tls.der_item(data(client_ca), "ca", "CERTIFICATE"))
        return ctx
    ctx = _server_ssl.SSLContext(_server_ssl.PROTOCOL_TLS_SERVER)  # pragma: no cover
    ctx.load_cert_chain(data(cert), data(key))
    if client_ca:
        ctx.verify_mode = _server_ssl.CERT_REQUIRED
        ctx.load_verify_locations(data(client_ca))
    return ctx


async def serve_once(listener, ctx, outcome):
    """Accept one client, answer b"ping" with b"pong" over TLS; outcome["error"] if it failed."""
    conn = await listener.accept(5000)
    if conn is None:
        outcome["error"] = "no client"
        return
    sock = ctx.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
    server = tls.TlsConnection(sock, conn, "", 5000)
    buf = bytearray(4)
    try:
        got = await server.recv_into(memoryview(buf), 4, 5000)
        outcome["got"] = bytes(buf[:got])
        await server.send_all(b"pong", 5000)
        await aio.sleep_ms(50)
    except Exception as exc:  # the client refused us: what the server saw does not matter
        outcome["error"] = str(exc)
    finally:
        server.close()


async def exchange(client, host, server_ctx):
    """(the client's reply bytes, the TlsConnection) of one ping/pong with a one-shot server."""
    listener, port = support.listener()
    outcome = {}
    task = aio.create_task(serve_once(listener, server_ctx, outcome))
    conn = None
    try:
        conn = await client.connect(host, port, 3000)
        await conn.send_all(b"ping", 3000)
        buf = bytearray(4)
        got = await conn.recv_into(memoryview(buf), 4, 3000)
        return bytes(buf[:got]), conn
    finally:
        if conn is not None:
            conn.close()
        await task
        listener.close()


class TestHandshake(unittest.TestCase):
    def test_verified_exchange_in_the_first_write(self):
        reply, conn = support.run(exchange(tls.Client(data("ca.pem")), "127.0.0.1",
                                           server_context("server.pem", "server.key")))
        self.assertEqual(reply, b"pong")
        self.assertTrue(conn.established)
        self.assertIn(conn.version, ("TLSv1.2", "TLSv1.3"))  # BCP 195: 1.2 or later
        self.assertIn("GCM", conn.cipher_suite)  # a BCP 195 suite (AEAD, ephemeral keys)

    def test_a_der_ca_file_and_mutual_tls(self):
        client = tls.Client(data("ca.der"), data("client.pem"), data("client.key"))
        server = server_context("server.pem", "server.key", "ca.pem")
        reply, _ = support.run(exchange(client, "127.0.0.1", server))
        self.assertEqual(reply, b"pong")

    def refusal(self, client, host, cert, key):
        with self.assertRaises(TlsError) as caught:
            support.run(exchange(client, host, server_context(cert, key)))
        return caught.exception

    def test_a_server_signed_by_another_ca(self):
        exc = self.refusal(tls.Client(data("ca.pem")), "127.0.0.1", "rogue.pem", "rogue.key")
        self.assertIn("not signed by a CA in the CA bundle", str(exc))
        self.assertFalse(exc.transient)  # a configuration problem: the queue waits, no backoff storm

    def test_a_ca_refusal_on_a_short_heap_is_reported_as_memory(self):
        # mbedTLS out of memory in the signature check says "not signed by the trusted CA": with
        # less heap than the handshake needs as it began, that must not hold the queue as a wrong CA.
        saved = tls.free_heap
        tls.free_heap = lambda: tls.HANDSHAKE_HEAP - 1
        try:
            with self.assertRaises(MemoryError) as caught:
                support.run(exchange(tls.Client(data("ca.pem")), "127.0.0.1",
                                     server_context("rogue.pem", "rogue.key")))
            expired = self.refusal(tls.Client(data("ca.pem")), "127.0.0.1", "expired.pem", "expired.key")
        finally:
            tls.free_heap = saved
        self.assertIn("no heap to verify the certificate of 127.0.0.1:", str(caught.exception))
        self.assertIn("it has expired", str(expired))  # a flaw found without memory stays what it is

    def test_an_expired_server_certificate(self):
        exc = self.refusal(tls.Client(data("ca.pem")), "127.0.0.1", "expired.pem", "expired.key")
        self.assertIn("it has expired", str(exc))
        self.assertFalse(exc.transient)

    def test_a_certificate_for_another_host(self):
        exc = self.refusal(tls.Client(data("ca.pem")), "localhost", "server.pem", "server.key")
        self.assertIn("not issued to localhost", str(exc))  # its only name is IP:127.0.0.1
        self.assertFalse(exc.transient)

    def test_a_peer_that_never_answers_is_bounded(self):
        async def stalled():
            listener, port = support.listener()  # connects complete; nobody ever answers
            try:
                conn = await tls.Client(data("ca.pem")).connect("127.0.0.1", port, 300)
                try:
                    await conn.send_all(b"ping", 10000)
                finally:
                    conn.close()
            finally:
                listener.close()

        with self.assertRaises(TlsError) as caught:
            support.run(stalled())
        self.assertIn("did not finish within 300 ms", str(caught.exception))
        self.assertTrue(caught.exception.transient)


class TestFiles(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("tls")

    def tearDown(self):
        support.remove_tree(self.dir)

    def write(self, name, text):
        path = fs.join(self.dir, name)
        fs.write_atomic(path, text.encode())
        return path

    def test_missing_and_empty_bundles_are_named(self):
        with self.assertRaises(TlsError) as caught:
            tls.Client(fs.join(self.dir, "none.pem"))
        self.assertIn("is not on flash", str(caught.exception))
        with self.assertRaises(TlsError) as caught:
            tls.Client(self.write("empty.pem", "just words\n"))
        self.assertIn("holds no certificate", str(caught.exception))

    def test_a_broken_certificate_is_named(self):
        with self.assertRaises(TlsError) as caught:
            bad = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
            tls.Client(self.write("bad.pem", bad))
        self.assertIn("certificate 1", str(caught.exception))

    def test_a_certificate_unparsed_on_a_short_heap_is_memory_not_broken(self):
        # mbedTLS says "invalid cert" when it has no memory to parse one: a good bundle must not
        # hold the queue as a broken file because the heap was short that moment.
        saved = tls.free_heap
        tls.free_heap = lambda: tls.PARSE_HEAP - 1
        try:
            with self.assertRaises(MemoryError) as caught:
                bad = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
                tls.Client(self.write("bad.pem", bad))
        finally:
            tls.free_heap = saved
        self.assertIn("no heap to parse the CA bundle", str(caught.exception))

    def test_pem_items_decode_one_at_a_time(self):
        text = fs.read_bytes(data("ca.pem")).decode() + fs.read_bytes(data("server.pem")).decode()
        items = list(tls._der_items(self.write("two.pem", text), "bundle"))
        self.assertEqual([label for label, _ in items], ["CERTIFICATE", "CERTIFICATE"])
        self.assertEqual(items[0][1], fs.read_bytes(data("ca.der")))

    def test_an_encrypted_key_is_refused_with_a_reason(self):
        locked = self.write("locked.key", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
                            "DEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")
        with self.assertRaises(TlsError) as caught:
            tls.der_item(locked, "client key", "PRIVATE KEY")
        self.assertIn("encrypted", str(caught.exception))


class TestCauses(unittest.TestCase):
    """The words for what each library raises (mbedTLS verify texts and error codes, OpenSSL's)."""

    def cause(self, exc):
        return tls._cause(exc, "10.1.2.3")

    def test_verification_texts(self):
        flags = ("\nThe certificate validity has expired\n"
                 "The certificate Common Name (CN) does not match with the expected CN\n")
        text, transient = self.cause(ValueError(flags))
        self.assertFalse(transient)
        self.assertIn("it is not issued to 10.1.2.3; it has expired", text)
        self.assertIn("valid yet", self.cause(ValueError("The certificate validity starts in the future"))[0])

    def test_mbedtls_codes(self):
        alert = self.cause(OSError(-0x7780, "SSL - A fatal alert message was received from our peer"))
        self.assertIn("alert", alert[0])
        self.assertFalse(alert[1])
        self.assertIn("does not speak TLS", self.cause(OSError(-0x7200, "SSL - Invalid record"))[0])
        closed = self.cause(OSError(104))
        self.assertIn("closed the connection during the handshake", closed[0])
        self.assertTrue(closed[1])
        self.assertIn("version or cipher suite", self.cause(OSError(-0x6E80, "SSL - version"))[0])


if __name__ == "__main__":
    unittest.main()
