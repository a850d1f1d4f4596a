"""Line editor for a serial terminal: bytes in, whole lines (or a clear error) out.

Handles what terminals send: CR, LF or CRLF to end a line, BS/DEL to erase, Ctrl-C to drop the
line, Ctrl-U to clear it, and ANSI escape sequences (arrow keys), which are swallowed. Any other
control or non-ASCII byte marks the line as rejected: it is never run half-filtered.
"""

from modgate.compat import const

CR = const(0x0D)
LF = const(0x0A)
BS = const(0x08)
DEL = const(0x7F)
ETX = const(0x03)  # Ctrl-C
NAK = const(0x15)  # Ctrl-U
ESC = const(0x1B)
TAB = const(0x09)
_ESC_MAX = const(16)

LINE = "line"
ERROR = "error"
CANCEL = "cancel"

# Lines starting with these echo '*' for what follows, so a secret never shows on the screen.
_MASKED = (b"unlock ", b"config set pin ", b"config set pin_hash ", b"config set user_passcode ")


class LineEditor:
    def __init__(self, max_len=240):
        self.max_len = max_len
        self.echo = True
        self._buf = bytearray()
        self._out = bytearray()  # echo bytes waiting to be written by the caller
        self._too_long = False
        self._bad = -1
        self._esc = 0  # 0 none, 1 after ESC, 2 inside CSI/SS3, counts bytes above
        self._after_cr = False
        self._mask_from = 0  # echo '*' for bytes after this position (a PIN follows)

    def take_echo(self):
        """Echo bytes produced since the last call (empty when echo is off)."""
        out = bytes(self._out)
        self._out[:] = b""
        return out

    def feed(self, data, start=0):
        """Process `data` from `start` until a line ends or the data does.

        Returns (next_start, event); event is None, (LINE, text), (ERROR, message) or
        (CANCEL, None). Callers loop until next_start == len(data), writing take_echo()
        before handling each event so the echo and the reply come out in order.
        """
        i = start
        n = len(data)
        while i < n:
            b = data[i]
            i += 1
            after_cr = self._after_cr
            self._after_cr = False
            if self._esc:
                self._escape(b)
            elif b == CR or b == LF:
                if b == LF and after_cr:
                    continue  # the LF of a CRLF
                self._after_cr = b == CR
                self._emit(b"\r\n")
                return i, self._finish()
            elif b == BS or b == DEL:
                if self._buf:
                    self._buf[:] = self._buf[:-1]
                    if len(self._buf) < self._mask_from:
                        self._mask_from = 0
                    self._emit(b"\b \b")
            elif b == ETX:
                self._reset()
                self._emit(b"^C\r\n")
                return i, (CANCEL, None)
            elif b == NAK:
                self._emit(b"\b \b" * len(self._buf))
                self._reset()
            elif b == ESC:
                self._esc = 1
            elif b == TAB or 0x20 <= b <= 0x7E:
                self._append(0x20 if b == TAB else b)
            elif self._bad < 0:
                self._bad = b
        return i, None

    def _escape(self, b):
        # ESC [ params final (CSI) or ESC O final (SS3): swallow; anything else ends the sequence.
        if self._esc == 1:
            self._esc = 2 if b in (0x5B, 0x4F) else 0
        elif 0x40 <= b <= 0x7E or self._esc > _ESC_MAX:
            self._esc = 0
        else:
            self._esc += 1

    def _append(self, b):
        buf = self._buf
        if len(buf) >= self.max_len:
            self._too_long = True
            return
        buf.append(b)
        if not self.echo:
            return
        if self._mask_from and len(buf) > self._mask_from:
            self._out.append(0x2A)  # '*'
            return
        self._out.append(b)
        if b == 0x20 and not self._mask_from:
            for prefix in _MASKED:
                if len(buf) == len(prefix) and bytes(buf) == prefix:
                    self._mask_from = len(buf)

    def _emit(self, data):
        if self.echo:
            self._out += data

    def _finish(self):
        if self._too_long:
            event = (ERROR, "line too long (max %d characters); line ignored" % self.max_len)
        elif self._bad >= 0:
            event = (ERROR, "non-printable byte 0x%02x in line; line ignored" % self._bad)
        else:
            event = (LINE, self._buf.decode().strip())
        self._reset()
        return event

    def _reset(self):
        self._buf[:] = b""
        self._too_long = False
        self._bad = -1
        self._esc = 0
        self._mask_from = 0
