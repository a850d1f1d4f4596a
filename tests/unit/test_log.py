"""The device log's ring: fixed bytes, whole lines, oldest dropped first."""

import unittest

from modgate import log


class TestRing(unittest.TestCase):
    def setUp(self):
        log.configure(ring_bytes=128, stream=None, level="debug")
        self.addCleanup(log.configure, ring_bytes=4096, level="info")

    def messages(self, count=100):
        return [line.split(": ", 1)[1] for line in log.tail(count)]

    def test_tail_gives_the_last_lines_oldest_first(self):
        for i in range(3):
            log.info("t", "m%d" % i)
        self.assertEqual(self.messages(), ["m0", "m1", "m2"])
        self.assertEqual(self.messages(2), ["m1", "m2"])
        self.assertEqual(log.tail(0), [])

    def test_oldest_whole_lines_are_dropped_when_full(self):
        for i in range(40):
            log.info("t", "message %02d" % i)
        kept = self.messages()
        # Each line is ~40 bytes: the ring holds the newest few, complete and in order.
        self.assertTrue(1 < len(kept) < 5, kept)
        self.assertEqual(kept, ["message %02d" % i for i in range(40 - len(kept), 40)])

    def test_a_line_longer_than_the_ring_is_cut_at_a_character(self):
        log.info("t", "\u00e9" * 200)  # two bytes each in UTF-8
        [line] = log.tail(5)
        self.assertTrue(line.endswith("\u00e9"))
        self.assertLess(len(line.encode()), 128)
        log.info("t", "after")
        self.assertEqual(self.messages(1), ["after"])

    def test_levels_below_the_minimum_are_not_kept(self):
        log.configure(ring_bytes=128, level="warn")
        log.info("t", "quiet")
        log.warn("t", "loud")
        self.assertEqual(self.messages(), ["loud"])


if __name__ == "__main__":
    unittest.main()
