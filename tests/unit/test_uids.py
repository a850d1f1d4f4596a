"""UIDs (PS3.5 9.1, B.2): the default form is a version-4 UUID's integer, unique with no operator
input; an organisation's root gives ROOT.SERIAL.BOOT.SEQ."""

import unittest

from modgate.dicom import uids
from modgate.port import entropy


class Entropy:
    """Replaces entropy.random_bytes for one test: counts reads, or returns the same bytes
    every time (a board whose random source is stuck or repeats after every reset)."""

    def __init__(self, test, stuck=None):
        self.reads = 0
        self.stuck = stuck
        self.real = entropy.random_bytes
        entropy.random_bytes = self.read
        test.addCleanup(setattr, entropy, "random_bytes", self.real)

    def read(self, count):
        self.reads += 1
        return self.stuck[:count] if self.stuck is not None else self.real(count)


def uuid_int(uid):
    assert uid.startswith("2.25."), uid
    return int(uid[5:])


class TestUuidForm(unittest.TestCase):
    def test_integer_form_of_a_version_4_uuid(self):
        gen = uids.UidGenerator(None, "", 1)
        for _ in range(300):
            uid = gen.new()
            self.assertTrue(uids.valid(uid) and len(uid) <= 44, uid)
            n = uuid_int(uid)
            self.assertLess(n, 1 << 128)
            self.assertEqual((n >> 76) & 0xF, 4)  # version: octet 6, high nibble (X.667 15.2)
            self.assertEqual((n >> 62) & 0x3, 2)  # variant 10: octet 8, two high bits (X.667 15.3)

    def test_single_integer_value_is_the_big_endian_uuid(self):
        # X.667 6.3's example: f81d4fae-7dec-11d0-a765-00a0c91e6bf6 = 329800735698586629295641978511506172918
        example = bytes.fromhex("f81d4fae7dec11d0a76500a0c91e6bf6")
        self.assertEqual(int.from_bytes(example, "big"), 329800735698586629295641978511506172918)
        v4 = bytes.fromhex("f81d4fae7dec41d0a76500a0c91e6bf6")  # the same with version 4
        self.assertEqual(uids.uuid4_uid(v4), "2.25." + str(int.from_bytes(v4, "big")))
        self.assertEqual(uids.uuid4_uid(example), uids.uuid4_uid(v4))

    def test_one_entropy_read_per_uid(self):
        source = Entropy(self)
        gen = uids.UidGenerator("2.25", "7", 3)
        for _ in range(10):
            gen.new()
        self.assertEqual(source.reads, 10)
        self.assertEqual(gen.sequence, 10)

    def test_unique_even_when_the_random_source_repeats(self):
        Entropy(self, stuck=bytes(16))
        seen = set()
        for boot in (1, 2):
            gen = uids.UidGenerator(None, "", boot)
            for _ in range(500):
                seen.add(gen.new())
        later = uids.UidGenerator(None, "", 2, sequence=500)  # settings changed: goes on
        for _ in range(500):
            seen.add(later.new())
        self.assertEqual(len(seen), 1500)

    def test_no_serial_needed(self):
        for serial in ("", "S/N 12", "0042"):
            self.assertTrue(uids.valid(uids.UidGenerator("", serial, 9).new()))


class TestOrganisationRoot(unittest.TestCase):
    def test_root_serial_boot_sequence(self):
        gen = uids.UidGenerator("1.2.826.0.1.3680043.10.1", "0042", 3)
        self.assertEqual([gen.new(), gen.new()], ["1.2.826.0.1.3680043.10.1.42.3.1",
                                                  "1.2.826.0.1.3680043.10.1.42.3.2"])
        again = uids.UidGenerator("1.2.826.0.1.3680043.10.1", "0042", 3, sequence=gen.sequence)
        self.assertEqual(again.new(), "1.2.826.0.1.3680043.10.1.42.3.3")


if __name__ == "__main__":
    unittest.main()
