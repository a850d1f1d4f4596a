"""Split a console line into words; quotes keep spaces ("General Hospital" or 'a b')."""

from modgate.errors import ModgateError

MAX_WORDS = 24


class UsageError(ModgateError):
    """The command line is malformed (wrong words, bad quoting); the message says how to fix it."""

    def __init__(self, message, code="usage"):
        super().__init__(message)
        self.code = code


def split(line):
    """Words of `line`. Inside double quotes, backslash escapes a quote or a backslash."""
    words = []
    word = []
    quote = ""
    in_word = False
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        i += 1
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i < n and line[i] in '"\\':
                word.append(line[i])
                i += 1
            else:
                word.append(ch)
        elif ch == '"' or ch == "'":
            quote = ch
            in_word = True
        elif ch == " ":
            if in_word:
                words.append("".join(word))
                word = []
                in_word = False
        else:
            word.append(ch)
            in_word = True
        if len(words) > MAX_WORDS:
            raise UsageError("too many words (max %d)" % MAX_WORDS)
    if quote:
        raise UsageError("unterminated quote")
    if in_word:
        words.append("".join(word))
    if len(words) > MAX_WORDS:
        raise UsageError("too many words (max %d)" % MAX_WORDS)
    return words


def quote(value):
    """The inverse of split for one word: quotes it when it has spaces, quotes or is empty."""
    value = str(value)
    if value and " " not in value and '"' not in value and "'" not in value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
