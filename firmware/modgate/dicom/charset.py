"""Text of received data sets in their Specific Character Set (0008,0005), PS3.5 6.1 and PS3.3
C.12.1.1.2: decoded for the default repertoire (ISO-IR 6), ISO_IR 100 (Latin-1), ISO_IR 192
(UTF-8), and ISO 2022 IR 6 / ISO 2022 IR 100 with their escape sequences (PS3.5 6.1.2.5).

Anything else (ISO 2022 IR 87 Japanese, ISO_IR 144 Cyrillic, GB18030, ...) is not decoded: its
ASCII characters are kept and every other byte is shown as \\xNN, and the result says it is not
exact, so the caller can refuse to write it into an object. Nothing here raises on bad bytes.

Public API:
- `terms(raw)` -> [str]: the values of a Specific Character Set element (bytes).
- `decode(raw, terms)` -> (text, exact): exact is False when some byte had to be escaped.
"""

_ESC = 0x1B
# Delimiters after which an ISO 2022 value returns to its initial designations (PS3.5 6.1.2.5.3).
_RESETS = b"\r\n\t\x0c^=\\"
_LATIN1 = ("ISO_IR 100", "ISO 2022 IR 100")
_ASCII = ("", "ISO_IR 6", "ISO 2022 IR 6")


def terms(raw):
    if not raw:
        return []
    text = str(bytes(raw), "ascii") if all(b < 128 for b in raw) else ""
    return [t.strip(" \x00") for t in text.split("\\")]


def _escaped(b):
    return "\\x%02x" % b


def _printable(b):
    """A byte of the default repertoire: G0 graphics and the controls text VRs allow."""
    return 0x20 <= b < 0x7F or b in (0x0A, 0x0D, 0x0C, 0x09)


def decode(raw, charsets):
    """(text, exact) of the value bytes `raw` under `charsets` (see terms)."""
    raw = bytes(raw)
    first = charsets[0] if charsets else ""
    if len(charsets) <= 1 and first == "ISO_IR 192":
        try:
            return str(raw, "utf-8"), True
        except (UnicodeError, ValueError):
            return _fallback(raw)
    if len(charsets) <= 1 and first in ("", "ISO_IR 6", "ISO_IR 100"):
        return _single(raw, first == "ISO_IR 100")
    if first.startswith("ISO 2022") or (first == "" and len(charsets) > 1):
        return _iso2022(raw, charsets)
    return _fallback(raw)


def _single(raw, latin1):
    out = []
    exact = True
    for b in raw:
        if _printable(b):
            out.append(chr(b))
        elif latin1 and b >= 0xA0:
            out.append(chr(b))  # ISO 8859-1 upper half is Unicode U+00A0..U+00FF
        else:
            out.append(_escaped(b))
            exact = False
    return "".join(out), exact


def _fallback(raw):
    """Text of a value in a character set we cannot decode: its ASCII, every other byte escaped."""
    return _single(raw, False)[0], False


def _iso2022(raw, charsets):
    """Code extension with ISO 2022 IR 6 and IR 100 (ESC ( B and ESC - A); any other
    designation makes the following bytes escaped until a supported one or a delimiter."""
    for term in charsets:
        if term not in _ASCII and term not in _LATIN1:
            return _fallback(raw)
    # G0 starts as ASCII. G1 should be designated by ESC - A before Latin-1 is used (PS3.5
    # 6.1.2.5), but writers such as pydicom send IR 100's upper half without it; with IR 100 the
    # only upper set declared, such bytes can mean nothing else, so they are taken as Latin-1.
    initial_g1 = "ISO 2022 IR 100" in charsets
    g1 = initial_g1
    g0_known = True
    out = []
    exact = True
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b == _ESC:
            seq = raw[i + 1:i + 3]
            if seq == b"(B":
                g0_known = True
            elif seq == b"-A" and "ISO 2022 IR 100" in charsets:
                g1 = True
            else:
                g0_known = False  # a set we cannot decode: show its bytes, do not guess
                out.append(_escaped(b))
                exact = False
                i += 1
                continue
            i += 3
            continue
        if b in _RESETS:
            g0_known = True
            g1 = initial_g1
        if b < 0x80 and g0_known and _printable(b):
            out.append(chr(b))
        elif b >= 0xA0 and g1 and g0_known:
            out.append(chr(b))
        else:
            out.append(_escaped(b))
            exact = False
        i += 1
    return "".join(out), exact
