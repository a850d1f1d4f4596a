"""No open doors (issue 19): the settings of secure transport, the frame input's allow-list
against real connections from two loopback addresses, and the clock task's use of SNTP."""

import unittest

import support
from ingest_fakes import FakeSink
from modgate import config
from modgate.config import Config
from modgate.errors import ConfigError
from modgate.ingest.tcp import TcpInput
from modgate.port import aio, clock, fs, sockets
from modgate.timesync import TimeSync
from test_port_sntp import UdpServer, reply


class TestSettings(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("security")
        self.conf = Config(fs.join(self.dir, "config.json")).load()

    def tearDown(self):
        support.remove_tree(self.dir)

    def test_allow_list_forms(self):
        both = ["10.0.0.5", "192.168.7.0/24"]
        self.assertEqual(self.conf.set("frames_allow", "10.0.0.5, 192.168.7.0/24"), both)
        self.assertEqual(self.conf.set("frames_allow", '["127.0.0.1"]'), ["127.0.0.1"])
        self.assertEqual(self.conf.set("frames_allow", ""), [])
        for bad in ("10.0.0.256", "10.0.0.0/33", "pacs.local", "1.2.3.4/x"):
            with self.assertRaises(ConfigError):
                self.conf.set("frames_allow", bad)
        with self.assertRaises(ConfigError):
            self.conf.set("frames_allow", " ".join("10.0.0.%d" % i for i in range(9)))  # at most 8
        self.assertEqual(config.default("frames_allow"), [])  # a hardware board: TCP frames off

    def test_allowed_matches_addresses_and_networks(self):
        allow = ["10.1.2.3", "192.168.0.0/16", "172.16.4.0/22"]
        self.assertTrue(config.allowed(allow, "10.1.2.3"))
        self.assertFalse(config.allowed(allow, "10.1.2.4"))
        self.assertTrue(config.allowed(allow, "192.168.200.9"))
        self.assertTrue(config.allowed(allow, "172.16.7.255"))
        self.assertFalse(config.allowed(allow, "172.16.8.0"))
        self.assertFalse(config.allowed(allow, "?"))
        self.assertTrue(config.allowed(["0.0.0.0/0"], "8.8.8.8"))
        self.assertFalse(config.allowed([], "127.0.0.1"))

    def test_destination_tls_and_security_keys(self):
        d = config.validate_destination({"name": "pacs", "aet": "PACS", "host": "10.0.0.7", "port": 2762,
                                         "tls": "on"})
        self.assertTrue(d["tls"])
        plain = config.validate_destination({"name": "a", "aet": "A", "host": "10.0.0.7", "port": 104})
        self.assertNotIn("tls", plain)
        with self.assertRaises(ConfigError):
            config.validate_destination({"name": "a", "aet": "A", "host": "h", "port": 104, "tsl": True})
        where = "ntp.hospital.example:1123"
        self.assertEqual(self.conf.set("sntp_server", where), where)
        for bad in ("ntp..x", "10.0.0.1:0", "10.0.0.1:99999"):
            with self.assertRaises(ConfigError):
                self.conf.set("sntp_server", bad)
        self.assertEqual(self.conf.get("tls_ca_file"), "tls/ca.pem")
        with self.assertRaises(ConfigError):
            self.conf.set("tls_ca_file", "")  # TLS always verifies against a bundle
        self.assertEqual(self.conf.set("tls_cert_file", ""), "")
        with self.assertRaises(ConfigError):
            self.conf.set("tls_key_file", "../keys/x.key")

    def test_commissioning_is_a_save_that_adds_or_moves_a_destination(self):
        self.assertFalse(self.conf.adds_destination())
        self.conf.set("station_name", "ROOM2")
        self.assertFalse(self.conf.adds_destination())
        dests = self.conf.get("destinations")
        dests[0]["host"] = "10.9.9.9"  # the same name, somewhere else: as dangerous as a new one
        self.conf.set("destinations", dests)
        self.assertTrue(self.conf.adds_destination())
        self.conf.set("destinations", [])
        self.assertFalse(self.conf.adds_destination())  # removing sends nothing anywhere
        self.conf.set("pin", "2468")
        self.conf.set("destinations", dests)
        self.conf.save()
        self.assertFalse(self.conf.adds_destination())
        with self.assertRaises(ConfigError):
            self.conf.set("pin", "")


class TestAllowList(unittest.TestCase):
    def test_sources_outside_the_list_are_closed_and_counted(self):
        async def body():
            sink = FakeSink()
            inputs = None
            for _ in range(20):
                listener, port = support.listener()
                listener.close()
                try:
                    inputs = TcpInput(sink, "0.0.0.0", port, allow=["127.0.0.2"])
                    break
                except OSError:
                    continue
            done = []
            server = aio.create_task(inputs.serve(stop=lambda: done))
            refused = []
            for _ in range(2):
                conn = await sockets.connect("127.0.0.1", port, 2000)
                buf = bytearray(4)
                refused.append(await conn.recv_into(memoryview(buf), 4, 2000))  # 0: closed at once
                conn.close()
            kept = await _connect_from("127.0.0.2", port)
            for _ in range(40):
                if inputs.links:
                    break
                await aio.sleep_ms(50)
            accepted = len(inputs.links)
            done.append(True)
            kept.close()
            await server
            return refused, accepted, inputs

        refused, accepted, inputs = support.run(body())
        self.assertEqual(refused, [0, 0])  # each refused source sees its connection closed at once
        self.assertEqual((inputs.refused, accepted), (2, 1))
        self.assertEqual(list(inputs._refused_at), ["127.0.0.1"])  # logged once a minute per address


async def _connect_from(source, port):
    """A TCP connection to 127.0.0.1:port made from address `source` (port.sockets has no bind)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(socket.getaddrinfo(source, 0)[0][-1])
    sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    return sock


class _Device:
    def __init__(self, conf):
        self.config = conf
        self.online = True
        self.set_to = None

    def set_clock_unix_ms(self, unix_ms, source):
        self.set_to = (unix_ms, source)


class TestTimeSync(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("timesync")
        self.conf = Config(fs.join(self.dir, "config.json")).load()

    def tearDown(self):
        support.remove_tree(self.dir)

    def sync(self, answer):
        server = UdpServer(answer)
        self.conf.set("sntp_server", "127.0.0.1:%d" % server.port)
        device = _Device(self.conf)

        async def body():
            sync = TimeSync(device)
            task = aio.create_task(server.serve())
            ok = await sync.sync_once(sync.server())
            await task
            return ok, sync

        try:
            ok, sync = support.run(body())
        finally:
            server.close()
        return ok, sync, device

    def test_a_clock_a_minute_late_is_corrected(self):
        ok, sync, device = self.sync(lambda r: reply(r, clock.unix_ms() + 60000))
        self.assertTrue(ok)
        self.assertLess(abs(sync.offset_ms - 60000), 1500)
        self.assertLess(abs(device.set_to[0] - clock.unix_ms() - 60000), 1500)
        self.assertTrue(device.set_to[1].startswith("sntp 127.0.0.1:"))
        status = sync.status()
        self.assertIsNone(status["last_error"])
        self.assertTrue(status["last_sync"].endswith("Z"))

    def test_a_right_clock_is_left_alone_and_a_bad_server_is_reported(self):
        ok, sync, device = self.sync(lambda r: reply(r, clock.unix_ms()))
        self.assertTrue(ok)
        self.assertIsNone(device.set_to)  # within a second: nothing to correct
        ok, sync, device = self.sync(lambda r: reply(r, clock.unix_ms(), stratum=0, refid=b"DENY"))
        self.assertFalse(ok)
        self.assertIn("kiss-of-death 'DENY'", sync.status()["last_error"])
        self.assertIsNone(sync.status()["last_sync"])


if __name__ == "__main__":
    unittest.main()
