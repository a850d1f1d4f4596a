"""Variable items of A-ASSOCIATE-RQ and -AC (PS3.8 9.3.2.1-9.3.3.3, PS3.7 Annex D.3.3).

Item header: type (1), reserved (1), 2-byte big-endian length of what follows. Presentation
context items hold sub-items of the same shape; the user information item holds sub-items for
the maximum length (PS3.8 D.1), the Implementation Class UID and Version Name (PS3.7 D.3.3.2-3)
and, when configured, User Identity (PS3.7 D.3.3.7).

Decoding is as lenient as PS3.8 asks of a receiver: reserved fields are not tested, items of an
unknown type are skipped (9.3.1), and the AC's AE title fields (reserved, Table 9-17) and the
transfer syntax sub-item of a refused presentation context (Table 9-18) are not looked at.
What the standard defines and we rely on (lengths, the accepted syntax, our context IDs) is.
"""

import struct

from modgate.compat import const
from modgate.net.pdu import (
    ASSOCIATE_FIXED,
    HEADER,
    PROTOCOL_VERSION,
    REASON_INVALID_PARAMETER,
    REASON_UNEXPECTED_PARAMETER,
    PDUError,
)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # DICOM Application Context Name (PS3.7 A.2.1)

APPLICATION_CONTEXT_ITEM = const(0x10)
CONTEXT_RQ_ITEM = const(0x20)
CONTEXT_AC_ITEM = const(0x21)
ABSTRACT_SYNTAX_ITEM = const(0x30)
TRANSFER_SYNTAX_ITEM = const(0x40)
USER_INFO_ITEM = const(0x50)
MAX_LENGTH_ITEM = const(0x51)
IMPLEMENTATION_UID_ITEM = const(0x52)
ROLE_SELECTION_ITEM = const(0x54)
IMPLEMENTATION_VERSION_ITEM = const(0x55)
USER_IDENTITY_RQ_ITEM = const(0x58)
USER_IDENTITY_AC_ITEM = const(0x59)
# User-Identity-Type (PS3.7 Table D.3-14): a username, or a username and passcode.
IDENTITY_USERNAME = const(1)
IDENTITY_USERNAME_PASSCODE = const(2)

# Presentation context result/reason in the AC (PS3.8 Table 9-18).
ACCEPTANCE = const(0)
MAX_UID = const(64)


def _put(buf, offset, item_type, data):
    n = len(data)
    struct.pack_into(">BBH", buf, offset, item_type, 0, n)
    buf[offset + 4:offset + 4 + n] = data
    return offset + 4 + n


def _user_info(buf, offset, max_pdu, impl_uid, impl_version, identity=None, roles=()):
    start = offset
    offset += 4
    struct.pack_into(">BBHL", buf, offset, MAX_LENGTH_ITEM, 0, 4, max_pdu)
    offset = _put(buf, offset + 8, IMPLEMENTATION_UID_ITEM, impl_uid.encode())
    for uid, scu, scp in roles:
        # SCP/SCU Role Selection (PS3.7 D.3.3.4): UID length, UID, SCU role, SCP role.
        data = uid.encode()
        struct.pack_into(">BBHH", buf, offset, ROLE_SELECTION_ITEM, 0, len(data) + 4, len(data))
        buf[offset + 6:offset + 6 + len(data)] = data
        offset += 6 + len(data)
        buf[offset] = scu
        buf[offset + 1] = scp
        offset += 2
    if impl_version:
        offset = _put(buf, offset, IMPLEMENTATION_VERSION_ITEM, impl_version.encode())
    if identity is not None:
        offset = _user_identity(buf, offset, identity)
    struct.pack_into(">BBH", buf, start, USER_INFO_ITEM, 0, offset - start - 4)
    return offset


def user_identity(username, passcode=""):
    """The User Identity proposal (PS3.7 D.3.3.7.1) for a username, with a passcode when one is
    given; a positive response is always requested, so the log can say whether the archive
    confirmed it. Fields are UTF-8; None without a username."""
    if not username:
        return None
    kind = IDENTITY_USERNAME_PASSCODE if passcode else IDENTITY_USERNAME
    return kind, username.encode(), passcode.encode() if passcode else b""


def _identity_size(identity):
    return 0 if identity is None else 10 + len(identity[1]) + len(identity[2])


def _user_identity(buf, offset, identity):
    # Item type 58H, reserved, item length; User-Identity-Type, Positive-response-requested,
    # primary field length and value, secondary field length and value (PS3.7 Table D.3-14).
    kind, primary, secondary = identity
    n = len(primary)
    struct.pack_into(">BBHBBH", buf, offset, USER_IDENTITY_RQ_ITEM, 0, 6 + n + len(secondary), kind, 1, n)
    buf[offset + 8:offset + 8 + n] = primary
    offset += 8 + n
    struct.pack_into(">H", buf, offset, len(secondary))
    buf[offset + 2:offset + 2 + len(secondary)] = secondary
    return offset + 2 + len(secondary)


def rq_size(contexts, impl_uid, impl_version, identity=None):
    """Bytes an A-ASSOCIATE-RQ for `contexts` needs, to size the buffer before encoding it."""
    size = HEADER + ASSOCIATE_FIXED + 4 + len(APPLICATION_CONTEXT)
    for _, abstract, syntaxes in contexts:
        size += 12 + len(abstract)  # item header, ID and reserved, abstract syntax sub-item
        for ts in syntaxes:
            size += 4 + len(ts)
    return size + 4 + 8 + 4 + len(impl_uid) + 4 + len(impl_version) + _identity_size(identity)


def encode_rq_items(buf, offset, contexts, max_pdu, impl_uid, impl_version, identity=None):
    """Application context, one item per (context ID, abstract syntax, transfer syntaxes), user
    info (with the User Identity sub-item of `user_identity()` when given)."""
    offset = _put(buf, offset, APPLICATION_CONTEXT_ITEM, APPLICATION_CONTEXT.encode())
    for context_id, abstract, syntaxes in contexts:
        start = offset
        offset = _put(buf, offset + 8, ABSTRACT_SYNTAX_ITEM, abstract.encode())
        for ts in syntaxes:
            offset = _put(buf, offset, TRANSFER_SYNTAX_ITEM, ts.encode())
        struct.pack_into(">BBHBBBB", buf, start, CONTEXT_RQ_ITEM, 0, offset - start - 4, context_id, 0, 0, 0)
    return _user_info(buf, offset, max_pdu, impl_uid, impl_version, identity)


def ac_size(answers, impl_uid, impl_version, roles=()):
    """Bytes an A-ASSOCIATE-AC with `answers` and `roles` needs (encode_ac_items)."""
    size = HEADER + ASSOCIATE_FIXED + 4 + len(APPLICATION_CONTEXT)
    for _, _, syntax in answers:
        size += 8 + 4 + len(syntax)
    for uid, _, _ in roles:
        size += 8 + len(uid)
    return size + 4 + 8 + 4 + len(impl_uid) + 4 + len(impl_version)


def encode_ac_items(buf, offset, answers, max_pdu, impl_uid, impl_version, roles=()):
    """The items of an A-ASSOCIATE-AC (PS3.8 9.3.3): application context, one presentation
    context item per (context ID, result, transfer syntax) (Table 9-18: for a refused context
    the syntax sub-item is present and not significant), user information with the roles the
    acceptor grants (PS3.7 D.3.3.4)."""
    offset = _put(buf, offset, APPLICATION_CONTEXT_ITEM, APPLICATION_CONTEXT.encode())
    for context_id, result, syntax in answers:
        start = offset
        offset = _put(buf, offset + 8, TRANSFER_SYNTAX_ITEM, syntax.encode())
        length = offset - start - 4
        struct.pack_into(">BBHBBBB", buf, start, CONTEXT_AC_ITEM, 0, length, context_id, 0, result, 0)
    return _user_info(buf, offset, max_pdu, impl_uid, impl_version, None, roles)


def _text(buf, start, end):
    """ASCII text of buf[start:end] without trailing NUL/space padding; PDUError if not ASCII."""
    while end > start and buf[end - 1] in (0, 32):
        end -= 1
    try:
        return str(bytes(buf[start:end]), "ascii")
    except (UnicodeError, ValueError):
        raise PDUError("non-ASCII bytes where PS3.8 wants text")


def _uid(buf, start, end):
    if end - start > MAX_UID:
        raise PDUError("UID of %d bytes in an item (max 64)" % (end - start))
    return _text(buf, start, end)


def _walk(buf, offset, end, what):
    """(type, value start, value end) of each item in buf[offset:end], lengths checked."""
    while offset < end:
        if end - offset < 4:
            raise PDUError("%d stray bytes after the last %s item" % (end - offset, what))
        item_type, _, length = struct.unpack_from(">BBH", buf, offset)
        stop = offset + 4 + length
        if stop > end:
            raise PDUError("%s item 0x%02x length %d runs past its container" % (what, item_type, length))
        yield item_type, offset + 4, stop
        offset = stop


def _user(buf, start, end, out):
    for item_type, a, b in _walk(buf, start, end, "user information"):
        if item_type == MAX_LENGTH_ITEM:
            if b - a != 4:
                raise PDUError("maximum length sub-item of %d bytes (must be 4)" % (b - a))
            out["max_pdu"] = struct.unpack_from(">L", buf, a)[0]
        elif item_type == IMPLEMENTATION_UID_ITEM:
            out["implementation_uid"] = _uid(buf, a, b)
        elif item_type == IMPLEMENTATION_VERSION_ITEM:
            out["implementation_version"] = _text(buf, a, b) if b - a <= 16 else ""
        elif item_type == ROLE_SELECTION_ITEM:
            # PS3.7 D.3.3.4: read from an RQ (the roles a requestor proposes); in an AC it
            # answers a proposal we never make, so it is not looked at.
            if b - a < 4:
                raise PDUError("role selection sub-item of %d bytes" % (b - a))
            n = struct.unpack_from(">H", buf, a)[0]
            if n + 4 != b - a:
                raise PDUError("role selection sub-item: UID length %d does not fit" % n)
            out["roles"][_uid(buf, a + 2, a + 2 + n)] = (buf[b - 2], buf[b - 1])
        elif item_type == USER_IDENTITY_AC_ITEM:
            # Server-response length and value (PS3.7 Table D.3-15): empty for a username or a
            # username and passcode; its presence is the positive response.
            if b - a < 2 or 2 + struct.unpack_from(">H", buf, a)[0] > b - a:
                raise PDUError("user identity sub-item of %d bytes overruns its length" % (b - a))
            out["identity_response"] = bytes(buf[a + 2:a + 2 + struct.unpack_from(">H", buf, a)[0]])
        # Other sub-items (async window, extended negotiation) answer proposals we never make,
        # or ask for what we do not offer; PS3.7 D.3.3 lets us ignore them.


def decode_associate(buf, length, requestor_side):
    """Decode the A-ASSOCIATE-RQ or -AC body in buf[6:6+length] into a dict.

    AC (`requestor_side` True): contexts = {context ID: (result, transfer syntax or None)}; the
    syntax is None for a refused context. RQ: contexts = {context ID: (abstract syntax,
    [transfer syntaxes])}, called and calling AE titles. Items of unknown types are skipped.
    """
    end = HEADER + length
    version = struct.unpack_from(">H", buf, HEADER)[0]
    if not version & PROTOCOL_VERSION:  # the one bit a receiver tests (PS3.8 Table 9-11, 9-17)
        raise PDUError("protocol version 0x%04x without bit 0" % version, REASON_INVALID_PARAMETER)
    out = {
        # In an AC these fields are reserved, "not tested" (PS3.8 Table 9-17).
        "called": "" if requestor_side else _text(buf, 10, 26).strip(),
        "calling": "" if requestor_side else _text(buf, 26, 42).strip(),
        "contexts": {},
        "max_pdu": 0,
        "implementation_uid": "",
        "implementation_version": "",
        "roles": {},  # SOP class UID -> (SCU role, SCP role) proposed (RQ only)
        "identity_response": None,  # bytes when the acceptor confirmed our user identity
    }
    have_application = False
    have_user = False
    wanted = CONTEXT_AC_ITEM if requestor_side else CONTEXT_RQ_ITEM
    for item_type, a, b in _walk(buf, HEADER + ASSOCIATE_FIXED, end, "A-ASSOCIATE"):
        if item_type == APPLICATION_CONTEXT_ITEM:
            if _uid(buf, a, b) != APPLICATION_CONTEXT:
                raise PDUError("application context is not the DICOM one", REASON_INVALID_PARAMETER)
            have_application = True
        elif item_type == wanted:
            if b - a < 4:
                raise PDUError("presentation context item of %d bytes" % (b - a))
            context_id = buf[a]
            if not context_id & 1:
                raise PDUError("presentation context ID %d is even" % context_id)
            if context_id in out["contexts"]:
                raise PDUError("presentation context ID %d appears twice" % context_id)
            out["contexts"][context_id] = _context(buf, a, b, requestor_side)
        elif item_type == USER_INFO_ITEM:
            _user(buf, a, b, out)
            have_user = True
        # Any other item type (PS3.8 9.3.1: unknown items are ignored) is skipped.
    if not have_application or not have_user:
        raise PDUError("A-ASSOCIATE without application context or user information",
                       REASON_UNEXPECTED_PARAMETER)
    return out


def _context(buf, a, b, requestor_side):
    if requestor_side:
        result = buf[a + 2]
        if result > 4:
            raise PDUError("presentation context result %d is not defined" % result)
        if result != ACCEPTANCE:
            return result, None  # its transfer syntax sub-item is not significant (Table 9-18)
        syntax = None
        for item_type, c, d in _walk(buf, a + 4, b, "presentation context"):
            if item_type != TRANSFER_SYNTAX_ITEM:
                continue  # an unknown sub-item (9.3.1)
            if syntax is not None:
                raise PDUError("accepted presentation context %d names two transfer syntaxes" % buf[a],
                               REASON_UNEXPECTED_PARAMETER)
            syntax = _uid(buf, c, d)
        if not syntax:
            raise PDUError("accepted presentation context %d names no transfer syntax" % buf[a])
        return result, syntax
    abstract = None
    syntaxes = []
    for item_type, c, d in _walk(buf, a + 4, b, "presentation context"):
        if item_type == ABSTRACT_SYNTAX_ITEM and abstract is None:
            abstract = _uid(buf, c, d)
        elif item_type == TRANSFER_SYNTAX_ITEM:
            syntaxes.append(_uid(buf, c, d))
    if abstract is None or not syntaxes:
        raise PDUError("presentation context %d lacks abstract or transfer syntax" % buf[a])
    return abstract, syntaxes
