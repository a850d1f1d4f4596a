"""The port layer: file helpers, clock and loopback TCP with bounded waits."""

import json
import os
import unittest

import support
from modgate.compat import deadline, remaining_ms, ticks_add, ticks_diff, ticks_ms
from modgate.errors import LinkClosed, LinkTimeout
from modgate.port import aio, clock, fs, sockets


class TestFs(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("fs")
        self.addCleanup(support.remove_tree, self.dir)

    def test_join(self):
        self.assertEqual(fs.join("a", "b", "c"), "a/b/c")
        self.assertEqual(fs.join("a/", "b"), "a/b")
        self.assertEqual(fs.join("a", "/b"), "/b")

    def test_write_atomic_replaces_and_leaves_no_temp(self):
        path = fs.join(self.dir, "cfg.json")
        fs.write_atomic(path, b"one")
        fs.write_atomic(path, b"two")
        self.assertEqual(fs.read_bytes(path), b"two")
        self.assertEqual(fs.listdir(self.dir), ["cfg.json"])

    def test_write_json_atomic_round_trips_text_and_replaces(self):
        path = fs.join(self.dir, "note.json")
        note = {"context": {"patient_name": "Müller^Zoë", "codes": [["P1", "99L", "", "Chest"]]}, "n": 3}
        fs.write_json_atomic(path, {"old": True})
        fs.write_json_atomic(path, note)
        self.assertEqual(json.loads(fs.read_bytes(path)), note)
        self.assertEqual(fs.listdir(self.dir), ["note.json"])

    def test_makedirs_nested_and_idempotent(self):
        path = fs.join(self.dir, "a/b/c")
        fs.makedirs(path)
        fs.makedirs(path)
        self.assertTrue(fs.isdir(path))
        self.assertFalse(fs.isdir(fs.join(self.dir, "missing")))


class TestClock(unittest.TestCase):
    def test_set_time_round_trips(self):
        clock.set_time(2030, 1, 2, 3, 4, 5)
        got = clock.now()
        self.assertEqual(got[:5], (2030, 1, 2, 3, 4))
        self.assertTrue(clock.is_set())
        clock.set_time(2001, 1, 1, 0, 0, 0)
        self.assertFalse(clock.is_set())

    def test_ticks_wrap_safely(self):
        start = ticks_ms()
        self.assertEqual(ticks_diff(ticks_add(start, 1234), start), 1234)
        self.assertGreater(remaining_ms(deadline(10000)), 9000)


class TestSockets(unittest.TestCase):
    # Random, so runs on several runtimes at once do not collide.
    PORT = 40000 + int.from_bytes(os.urandom(2), "little") % 20000

    def setUp(self):
        self.listener = sockets.Listener("127.0.0.1", self.PORT)
        self.addCleanup(self.listener.close)

    async def pair(self):
        client = await sockets.connect("127.0.0.1", self.PORT, 2000)
        server = await self.listener.accept(2000)
        self.assertIsNotNone(server)
        return client, server

    def test_round_trip_and_close(self):
        async def body():
            client, server = await self.pair()
            await client.send_all(b"ping" * 1000, 2000)
            buf = bytearray(8192)
            got = 0
            while got < 4000:
                got += await server.recv_into(memoryview(buf)[got:], 8192 - got, 2000)
            self.assertEqual(bytes(buf[:8]), b"pingping")
            client.close()
            self.assertEqual(await server.recv_into(memoryview(buf), 10, 2000), 0)
            server.close()

        support.run(body())

    def test_receive_times_out(self):
        async def body():
            client, server = await self.pair()
            with self.assertRaises(LinkTimeout):
                await server.recv_into(memoryview(bytearray(4)), 4, 50)
            client.close()
            server.close()

        support.run(body())

    def test_a_peer_that_stops_reading_is_a_send_timeout(self):
        async def body():
            client, server = await self.pair()
            started = ticks_ms()
            with self.assertRaises(LinkTimeout):
                for _ in range(1000):  # far more than any socket buffer holds
                    await client.send_all(bytearray(65536), 300)
            self.assertLess(ticks_diff(ticks_ms(), started), 5000)
            client.close()
            server.close()

        support.run(body())

    def test_a_wait_lets_other_tasks_run(self):
        ticks = []

        async def ticker():
            for _ in range(5):
                ticks.append(1)
                await aio.sleep_ms(10)

        async def body():
            client, server = await self.pair()
            side = aio.create_task(ticker())
            with self.assertRaises(LinkTimeout):
                await server.recv_into(memoryview(bytearray(4)), 4, 200)
            await side
            client.close()
            server.close()

        support.run(body())
        self.assertEqual(len(ticks), 5)  # the ticker ran while the receive waited

    def test_many_timed_waits_at_once_all_time_out_and_free_their_slots(self):
        count = 30  # more than the preallocated deadline slots: the rest use wait_for

        async def body():
            pairs = []
            for _ in range(count):  # no await inside a comprehension on MicroPython
                pairs.append(await self.pair())
            started = ticks_ms()
            waits = [aio.create_task(aio.readable(server.pollable(), 100 + 10 * i))
                     for i, (_, server) in enumerate(pairs)]
            results = []
            for w in waits:
                results.append(await w)
            took = ticks_diff(ticks_ms(), started)
            # One side writes: its wait is answered, not timed out.
            client, server = pairs[0]
            await client.send_all(b"x", 1000)
            ready = await aio.readable(server.pollable(), 2000)
            for client, server in pairs:
                client.close()
                server.close()
            return results, took, ready

        results, took, ready = support.run(body())
        self.assertEqual(results, [False] * count)
        self.assertTrue(ready)
        self.assertLess(took, 3000)
        self.assertGreaterEqual(took, 100 + 10 * (count - 1))
        slots = getattr(aio, "_slots", [])
        self.assertEqual([slot for slot in slots if slot[0] is not None], [])

    def test_corked_bytes_arrive_once_uncorked(self):
        async def body():
            client, server = await self.pair()
            client.cork(True)
            await client.send_all(b"pdu" * 100, 2000)
            client.cork(False)
            buf = bytearray(300)
            got = 0
            while got < 300:
                got += await server.recv_into(memoryview(buf)[got:], 300 - got, 2000)
            self.assertEqual(bytes(buf), b"pdu" * 100)
            client.close()
            server.close()

        support.run(body())

    def test_cork_is_a_no_op_where_the_port_lacks_it(self):
        class NoCork:
            def setsockopt(self, *args):
                raise OSError(92)  # ENOPROTOOPT, as lwIP answers

        async def body():
            conn, server = await self.pair()
            real, conn.sock = conn.sock, NoCork()
            conn.cork(True)  # no exception
            self.assertFalse(conn._can_cork)
            conn.cork(False)  # and no further attempt
            conn.sock = real
            conn.close()
            server.close()

        support.run(body())

    def test_refused_connect_is_link_closed(self):
        with self.assertRaises(LinkClosed):
            support.run(sockets.connect("127.0.0.1", 1, 2000))
