"""Application Entity titles (PS3.5 Table 6.2-1, VR AE; PS3.8 9.3.2 called/calling AE fields)."""

from modgate.errors import ConfigError

MAX_LENGTH = 16


def validate(title):
    """Return `title` if it is a usable AE title, else raise ConfigError naming the problem.

    PS3.5 6.2: 1 to 16 characters of the default repertoire, no backslash (the value separator),
    no control characters; leading and trailing spaces are not significant, so a title of only
    spaces is no title at all.
    """
    if not isinstance(title, str):
        raise ConfigError("AE title must be text, got " + type(title).__name__)
    if not 1 <= len(title) <= MAX_LENGTH:
        raise ConfigError("AE title " + repr(title) + " must be 1 to 16 characters")
    for ch in title:
        code = ord(ch)
        if code < 0x20 or code > 0x7E:
            raise ConfigError("AE title " + repr(title) + " has a control or non-ASCII character")
        if ch == "\\":
            raise ConfigError("AE title " + repr(title) + " has a backslash")
    if not title.strip():
        raise ConfigError("AE title must not be all spaces")
    return title


def field(title):
    """The 16-byte PDU field for `title`: space padded (PS3.8 9.3.2, trailing spaces not significant)."""
    data = title.encode()
    return data + b" " * (MAX_LENGTH - len(data))
