"""StoreSession's last line of defence: running out of memory mid-association."""

import unittest

import support
from modgate.errors import DeliveryError
from modgate.net.scu import StoreSession


class _AssociationThatCannotAbort:
    """Stands for an association whose A-ABORT itself runs out of memory (no heap left to
    format the log line); only the heap limit of a real board triggers that, so it is staged."""

    def __init__(self):
        self.closed = 0

    async def abort(self, message, transient=True):
        raise MemoryError("memory allocation failed")

    def close(self):
        self.closed += 1


class TestOutOfMemory(unittest.TestCase):
    def setUp(self):
        self.session = StoreSession({"aet": "ARCHIVE", "host": "127.0.0.1", "port": 104},
                                    {"calling_aet": "MODGATE", "max_pdu": 4096})

    def test_socket_is_closed_even_when_the_abort_fails(self):
        assoc = _AssociationThatCannotAbort()
        self.session.assoc = assoc
        with self.assertRaises(DeliveryError) as caught:
            support.run(self.session._out_of_memory())
        self.assertTrue(caught.exception.transient)
        self.assertEqual(assoc.closed, 1)
        self.assertIsNone(self.session.assoc)


if __name__ == "__main__":
    unittest.main()
