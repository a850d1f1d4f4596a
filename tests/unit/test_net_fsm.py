"""PS3.8 Table 9-10 as data, and the dispatch that runs it."""

import unittest

from modgate.errors import ModgateError
from modgate.net import fsm

ACTIONS = ("AE-1", "AE-2", "AE-3", "AE-4", "AE-5", "AE-6", "AE-7", "AE-8", "DT-1", "DT-2", "AR-1", "AR-2",
           "AR-3", "AR-4", "AR-5", "AR-6", "AR-7", "AR-8", "AR-9", "AR-10", "AA-1", "AA-2", "AA-3", "AA-4",
           "AA-5", "AA-6", "AA-7", "AA-8")


class TestTable(unittest.TestCase):
    def test_shape(self):
        self.assertEqual(len(fsm.TABLE), 19)
        used = set()
        for event, row in fsm.TABLE.items():
            self.assertEqual(len(row), 5 * fsm.STATES, event)
            for state in range(1, 14):
                name = fsm.action(event, state)
                if name is not None:
                    self.assertIn(name, ACTIONS)
                    used.add(name)
        self.assertEqual(len(used), len(ACTIONS))

    def test_cells_from_the_standard(self):
        self.assertEqual(fsm.action("Evt3", 5), "AE-3")
        self.assertEqual(fsm.action("Evt4", 5), "AE-4")
        self.assertEqual(fsm.action("Evt13", 10), "AR-10")
        self.assertEqual(fsm.action("Evt13", 11), "AR-3")
        self.assertEqual(fsm.action("Evt15", 4), "AA-2")
        self.assertEqual(fsm.action("Evt17", 13), "AR-5")
        self.assertEqual(fsm.action("Evt19", 13), "AA-7")
        self.assertEqual(fsm.action("Evt19", 6), "AA-8")
        self.assertIsNone(fsm.action("Evt9", 7))
        self.assertIsNone(fsm.action("Evt1", 6))


class _Handler:
    def __init__(self):
        self.calls = []

    def AE_1(self, arg):
        self.calls.append(("AE-1", arg))
        return 4

    def AE_2(self, arg):
        self.calls.append(("AE-2", arg))
        return 5


class TestStateMachine(unittest.TestCase):
    def test_fire_runs_action_and_moves(self):
        h = _Handler()
        m = fsm.StateMachine(h)
        self.assertEqual(m.fire("Evt1", "x"), 4)
        self.assertEqual(m.fire("Evt2"), 5)
        self.assertEqual(h.calls, [("AE-1", "x"), ("AE-2", None)])

    def test_blank_cell_and_missing_action_raise(self):
        m = fsm.StateMachine(_Handler())
        with self.assertRaises(ModgateError):
            m.fire("Evt9")
        m.state = 5
        with self.assertRaises(ModgateError):
            m.fire("Evt3")  # AE-3 not provided by this handler


if __name__ == "__main__":
    unittest.main()
