"""Console line editor and tokenizer: terminal bytes in, whole lines or clear errors out."""

import unittest

from modgate.console.line import CANCEL, ERROR, LINE, LineEditor
from modgate.console.tokens import UsageError, quote, split


def run(editor, data):
    events = []
    pos = 0
    while pos < len(data):
        pos, event = editor.feed(data, pos)
        if event is not None:
            events.append(event)
    return events


class TestLineEditor(unittest.TestCase):
    def test_cr_lf_and_crlf_each_end_one_line(self):
        ed = LineEditor()
        self.assertEqual(
            run(ed, b"a\rb\nc\r\nd\n\re"), [(LINE, "a"), (LINE, "b"), (LINE, "c"), (LINE, "d"), (LINE, "")]
        )

    def test_backspace_and_delete_erase_and_echo(self):
        ed = LineEditor()
        self.assertEqual(run(ed, b"statx\x08us\x7f\x7fus\r"), [(LINE, "status")])
        self.assertIn(b"\b \b", ed.take_echo())
        self.assertEqual(run(ed, b"\x08\x08ok\r"), [(LINE, "ok")])  # erase on empty is harmless

    def test_ctrl_c_cancels_and_ctrl_u_clears(self):
        ed = LineEditor()
        self.assertEqual(run(ed, b"reboot\x03"), [(CANCEL, None)])
        self.assertEqual(run(ed, b"junk\x15help\r"), [(LINE, "help")])

    def test_too_long_is_an_error_then_recovers(self):
        ed = LineEditor(max_len=10)
        events = run(ed, b"x" * 50 + b"\rstatus\r")
        self.assertEqual(events[0][0], ERROR)
        self.assertIn("line too long", events[0][1])
        self.assertEqual(events[1], (LINE, "status"))

    def test_non_printable_rejects_the_whole_line(self):
        ed = LineEditor()
        events = run(ed, b"config set ae_title A\x00B\rhelp\r")
        self.assertEqual(events[0][0], ERROR)
        self.assertIn("0x00", events[0][1])
        self.assertEqual(events[1], (LINE, "help"))
        self.assertEqual(run(ed, b"\xc3\xa9\r")[0][0], ERROR)

    def test_arrow_keys_are_swallowed_and_tab_is_space(self):
        ed = LineEditor()
        self.assertEqual(run(ed, b"\x1b[Astat\x1b[1;5Dus\x1bOA\tx\r"), [(LINE, "status x")])

    def test_pin_echo_is_masked(self):
        ed = LineEditor()
        run(ed, b"unlock 4321\r")
        echo = ed.take_echo()
        self.assertNotIn(b"4321", echo)
        self.assertIn(b"unlock ****", echo)

    def test_echo_off(self):
        ed = LineEditor()
        ed.echo = False
        run(ed, b"status\r")
        self.assertEqual(ed.take_echo(), b"")


class TestTokens(unittest.TestCase):
    def test_split(self):
        self.assertEqual(split("config  set a b"), ["config", "set", "a", "b"])
        self.assertEqual(
            split('config set institution_name "General Hospital"'),
            ["config", "set", "institution_name", "General Hospital"],
        )
        self.assertEqual(split("x 'a b' \"\""), ["x", "a b", ""])
        self.assertEqual(split('x "say \\"hi\\""'), ["x", 'say "hi"'])
        self.assertEqual(split("   "), [])

    def test_errors(self):
        with self.assertRaises(UsageError):
            split('config set x "open')
        with self.assertRaises(UsageError):
            split("a " * 40)

    def test_quote_round_trips(self):
        for value in ("plain", "two words", 'a "q"', "", "back\\slash", "it's"):
            self.assertEqual(split("x " + quote(value)), ["x", value])
