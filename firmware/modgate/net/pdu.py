"""Upper-layer PDUs (PS3.8 9.3): the common header, the fixed-size PDUs, and P-DATA-TF framing.

Every PDU is a 6-byte header (type, reserved, 4-byte big-endian length of what follows) and a
body. Encoders write into a caller's buffer and return the total size, so the association sends
each PDU with one write; decoders read from a memoryview and check every length before use.
The variable items of A-ASSOCIATE-RQ/AC live in `items`.
"""

import struct

from modgate.compat import const
from modgate.errors import ModgateError

A_ASSOCIATE_RQ = const(0x01)
A_ASSOCIATE_AC = const(0x02)
A_ASSOCIATE_RJ = const(0x03)
P_DATA_TF = const(0x04)
A_RELEASE_RQ = const(0x05)
A_RELEASE_RP = const(0x06)
A_ABORT = const(0x07)

HEADER = const(6)
PDV_HEADER = const(6)  # PDV item length (4), presentation context ID (1), control header (1)
PDATA_OVERHEAD = const(12)  # PDU header + one PDV header: payload starts here in a send buffer
ASSOCIATE_FIXED = const(68)  # protocol version .. reserved, before the variable items (9.3.2)
PROTOCOL_VERSION = const(1)

# Message control header bits (PS3.8 E.2).
CONTROL_COMMAND = const(0x01)
CONTROL_LAST = const(0x02)

# A-ABORT source and reason (PS3.8 9.3.8, Table 9-26).
ABORT_SOURCE_USER = const(0)
ABORT_SOURCE_PROVIDER = const(2)
REASON_NOT_SPECIFIED = const(0)
REASON_UNRECOGNISED_PDU = const(1)
REASON_UNEXPECTED_PDU = const(2)
REASON_UNRECOGNISED_PARAMETER = const(4)
REASON_UNEXPECTED_PARAMETER = const(5)
REASON_INVALID_PARAMETER = const(6)

# A-ASSOCIATE-RJ result, source and reason (PS3.8 9.3.4, Table 9-21).
REJECT_PERMANENT = const(1)
REJECT_TRANSIENT = const(2)
# Body lengths that are fixed by the standard; anything else is an invalid PDU.
_FIXED_BODY = {A_ASSOCIATE_RJ: 4, A_RELEASE_RQ: 4, A_RELEASE_RP: 4, A_ABORT: 4}


class PDUError(ModgateError):
    """A received PDU breaks PS3.8 9.3; `reason` is the A-ABORT reason to send (Table 9-26)."""

    def __init__(self, message, reason=REASON_INVALID_PARAMETER):
        super().__init__(message)
        self.reason = reason


def parse_header(buf, limit):
    """(type, body length) of the PDU header at `buf[0:6]`, checked against PS3.8 and `limit`.

    `limit` is the largest body we accept (our advertised maximum for P-DATA-TF, the buffer size
    for the rest): a bigger claim is refused before a byte of it is read.
    """
    pdu_type, reserved, length = struct.unpack_from(">BBL", buf, 0)
    if not A_ASSOCIATE_RQ <= pdu_type <= A_ABORT:
        raise PDUError("unknown PDU type 0x%02x" % pdu_type, REASON_UNRECOGNISED_PDU)
    fixed = _FIXED_BODY.get(pdu_type)
    if fixed is not None:
        if length != fixed:
            raise PDUError("%s with length %d (must be %d)" % (_name(pdu_type), length, fixed))
    elif pdu_type == P_DATA_TF:
        if length < PDV_HEADER:
            raise PDUError("P-DATA-TF with length %d holds no PDV" % length)
    elif length < ASSOCIATE_FIXED:
        raise PDUError("%s with length %d is shorter than its fixed fields" % (_name(pdu_type), length))
    if length > limit:
        raise PDUError("%s length %d exceeds our limit of %d" % (_name(pdu_type), length, limit))
    return pdu_type, length


def pack_header(buf, pdu_type, length):
    struct.pack_into(">BBL", buf, 0, pdu_type, 0, length)


def encode_associate(buf, pdu_type, called, calling):
    """Header and fixed fields of an A-ASSOCIATE-RQ/AC (PS3.8 9.3.2/9.3.3); items follow at 74.

    `called`/`calling` are the 16-byte AE fields. The PDU length is written by `finish_associate`.
    """
    struct.pack_into(">BBLHH", buf, 0, pdu_type, 0, 0, PROTOCOL_VERSION, 0)
    buf[10:26] = called
    buf[26:42] = calling
    buf[42:74] = bytes(32)
    return HEADER + ASSOCIATE_FIXED


def finish_associate(buf, end):
    struct.pack_into(">L", buf, 2, end - HEADER)
    return end


def encode_reject(buf, result, source, reason):
    struct.pack_into(">BBLBBBB", buf, 0, A_ASSOCIATE_RJ, 0, 4, 0, result, source, reason)
    return 10


def encode_release_rq(buf):
    struct.pack_into(">BBLL", buf, 0, A_RELEASE_RQ, 0, 4, 0)
    return 10


def encode_release_rp(buf):
    struct.pack_into(">BBLL", buf, 0, A_RELEASE_RP, 0, 4, 0)
    return 10


def encode_abort(buf, source, reason):
    struct.pack_into(">BBLBBBB", buf, 0, A_ABORT, 0, 4, 0, 0, source, reason)
    return 10


def pack_pdata(buf, context_id, control, nbytes):
    """Write a P-DATA-TF header holding one PDV of `nbytes` in front of the payload at buf[12:].

    PS3.8 9.3.5: PDU length = PDV item length field (4) + item length; the item length counts
    the context ID and control header (2) plus the fragment. Returns the PDU's total size.
    """
    struct.pack_into(">BBLLBB", buf, 0, P_DATA_TF, 0, nbytes + PDV_HEADER, nbytes + 2, context_id, control)
    return nbytes + PDATA_OVERHEAD


def next_pdv(buf, offset, end):
    """(context ID, control header bits 0-1, value start, value end) of the PDV item at `offset`.

    PS3.8 9.3.5.1: item length >= 2 (ID and control header) and the item lies inside the PDU.
    """
    if end - offset < PDV_HEADER:
        raise PDUError("P-DATA-TF has %d stray bytes after its last PDV" % (end - offset))
    length, context_id, control = struct.unpack_from(">LBB", buf, offset)
    if length < 2 or length > end - offset - 4:
        raise PDUError("PDV item length %d does not fit its P-DATA-TF" % length)
    # Bits 2-7 of the message control header are reserved and not tested (PS3.8 E.2).
    return context_id, control & 3, offset + PDV_HEADER, offset + 4 + length


def pdv_room(pdu_size, start):
    """Data bytes one PDV may carry when its header goes at buf[start:] in a PDU of at most
    `pdu_size` bytes (header included): the space left, rounded down to even, since every
    fragment of a message has an even length (PS3.8 E.1) even when the peer's maximum is odd."""
    return (pdu_size - start - PDV_HEADER) & ~1


def decode_reject(buf):
    """(result, source, reason) of an A-ASSOCIATE-RJ body at buf[6:10]."""
    return buf[7], buf[8], buf[9]


def decode_abort(buf):
    """(source, reason) of an A-ABORT body at buf[6:10]."""
    return buf[8], buf[9]


# The words live in `reasons`, imported on the error path only. If even that import finds no
# memory, the numbers still make a usable log line: a failure report must never fail itself.


def _name(pdu_type):
    try:
        from modgate.net.reasons import pdu_name
    except MemoryError:
        return "PDU type 0x%02x" % pdu_type
    return pdu_name(pdu_type)


def reject_text(result, source, reason):
    try:
        from modgate.net.reasons import reject_text as text
    except MemoryError:
        return "rejected (result %d, source %d, reason %d)" % (result, source, reason)
    return text(result, source, reason)


def abort_text(source, reason):
    try:
        from modgate.net.reasons import abort_text as text
    except MemoryError:
        return "aborted (source %d, reason %d)" % (source, reason)
    return text(source, reason)
