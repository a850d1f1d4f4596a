"""DIMSE command sets (PS3.7 9.3 and 10.3, Annex E): always Implicit VR Little Endian, group 0000.

Requests are written straight into the caller's PDU buffer behind the P-DATA header; responses
are parsed from the bytes of their command PDVs. What a storage SCU and a worklist query
(C-FIND with C-CANCEL, PS3.7 9.1.2 / 9.3.2) need is here, and the normalized services of
Storage Commitment and MPPS (N-ACTION, N-CREATE, N-SET as requestor; N-EVENT-REPORT and C-ECHO
answered as the performer of a request, PS3.7 10.3).
"""

import struct

from modgate.compat import const
from modgate.errors import ModgateError

VERIFICATION = "1.2.840.10008.1.1"

C_STORE_RQ = const(0x0001)
C_STORE_RSP = const(0x8001)
C_ECHO_RQ = const(0x0030)
C_ECHO_RSP = const(0x8030)
C_FIND_RQ = const(0x0020)
C_FIND_RSP = const(0x8020)
C_CANCEL_RQ = const(0x0FFF)
NO_DATASET = const(0x0101)  # Command Data Set Type: no data set follows (PS3.7 E.1-1)
DATASET_PRESENT = const(0x0000)
PRIORITY_MEDIUM = const(0x0000)
# Normalized services (PS3.7 Table E.1-1).
N_EVENT_REPORT_RQ = const(0x0100)
N_EVENT_REPORT_RSP = const(0x8100)
N_SET_RQ = const(0x0120)
N_SET_RSP = const(0x8120)
N_ACTION_RQ = const(0x0130)
N_ACTION_RSP = const(0x8130)
N_CREATE_RQ = const(0x0140)
N_CREATE_RSP = const(0x8140)
PENDING = const(0xFF00)  # C-FIND pending: a match follows (PS3.4 C.4.1.1.4)
PENDING_WARNING = const(0xFF01)  # pending, one or more optional keys not supported

TAG_GROUP_LENGTH = const(0x0000)
TAG_AFFECTED_SOP_CLASS = const(0x0002)
TAG_REQUESTED_SOP_CLASS = const(0x0003)
TAG_COMMAND_FIELD = const(0x0100)
TAG_MESSAGE_ID = const(0x0110)
TAG_RESPONDED_TO = const(0x0120)
TAG_PRIORITY = const(0x0700)
TAG_DATASET_TYPE = const(0x0800)
TAG_STATUS = const(0x0900)
TAG_ERROR_COMMENT = const(0x0902)
TAG_AFFECTED_SOP_INSTANCE = const(0x1000)
TAG_REQUESTED_SOP_INSTANCE = const(0x1001)
TAG_EVENT_TYPE = const(0x1002)
TAG_ACTION_TYPE = const(0x1008)

# Elements of a command set we read, by element number; everything else is skipped.
_US = (TAG_COMMAND_FIELD, TAG_MESSAGE_ID, TAG_RESPONDED_TO, TAG_DATASET_TYPE, TAG_STATUS, TAG_EVENT_TYPE,
       TAG_ACTION_TYPE)
_UI = (TAG_AFFECTED_SOP_CLASS, TAG_REQUESTED_SOP_CLASS, TAG_AFFECTED_SOP_INSTANCE, TAG_REQUESTED_SOP_INSTANCE)


class DimseError(ModgateError):
    """A DIMSE message is malformed or does not answer the request (a protocol violation)."""


def _ui(buf, offset, element, uid):
    data = uid.encode()
    n = len(data) + (len(data) & 1)
    struct.pack_into("<HHL", buf, offset, 0, element, n)
    buf[offset + 8:offset + 8 + len(data)] = data
    if n != len(data):
        buf[offset + 8 + len(data)] = 0  # UI pads with NUL (PS3.5 6.2)
    return offset + 8 + n


def _us(buf, offset, element, value):
    struct.pack_into("<HHLH", buf, offset, 0, element, 2, value)
    return offset + 10


def _finish(buf, start, end):
    # Command Group Length (0000,0000) UL counts the bytes after itself (PS3.7 E.1).
    struct.pack_into("<HHLL", buf, start, 0, TAG_GROUP_LENGTH, 4, end - start - 12)
    return end - start


def encode_store_rq(buf, offset, message_id, sop_class, sop_instance, priority=PRIORITY_MEDIUM):
    """C-STORE-RQ (PS3.7 9.3.1.1) at buf[offset:]; returns its length."""
    end = _ui(buf, offset + 12, TAG_AFFECTED_SOP_CLASS, sop_class)
    end = _us(buf, end, TAG_COMMAND_FIELD, C_STORE_RQ)
    end = _us(buf, end, TAG_MESSAGE_ID, message_id)
    end = _us(buf, end, TAG_PRIORITY, priority)
    end = _us(buf, end, TAG_DATASET_TYPE, DATASET_PRESENT)
    end = _ui(buf, end, TAG_AFFECTED_SOP_INSTANCE, sop_instance)
    return _finish(buf, offset, end)


def encode_echo_rq(buf, offset, message_id):
    """C-ECHO-RQ (PS3.7 9.3.5.1) at buf[offset:]; returns its length."""
    end = _ui(buf, offset + 12, TAG_AFFECTED_SOP_CLASS, VERIFICATION)
    end = _us(buf, end, TAG_COMMAND_FIELD, C_ECHO_RQ)
    end = _us(buf, end, TAG_MESSAGE_ID, message_id)
    end = _us(buf, end, TAG_DATASET_TYPE, NO_DATASET)
    return _finish(buf, offset, end)


def encode_find_rq(buf, offset, message_id, sop_class, priority=PRIORITY_MEDIUM):
    """C-FIND-RQ (PS3.7 9.3.2.1) at buf[offset:]; the identifier follows as a data set."""
    end = _ui(buf, offset + 12, TAG_AFFECTED_SOP_CLASS, sop_class)
    end = _us(buf, end, TAG_COMMAND_FIELD, C_FIND_RQ)
    end = _us(buf, end, TAG_MESSAGE_ID, message_id)
    end = _us(buf, end, TAG_PRIORITY, priority)
    end = _us(buf, end, TAG_DATASET_TYPE, DATASET_PRESENT)
    return _finish(buf, offset, end)


def encode_cancel_rq(buf, offset, message_id):
    """C-CANCEL-RQ (PS3.7 9.3.2.3) at buf[offset:] for the C-FIND of `message_id`."""
    end = _us(buf, offset + 12, TAG_COMMAND_FIELD, C_CANCEL_RQ)
    end = _us(buf, end, TAG_RESPONDED_TO, message_id)
    end = _us(buf, end, TAG_DATASET_TYPE, NO_DATASET)
    return _finish(buf, offset, end)


def encode_action_rq(buf, offset, message_id, sop_class, sop_instance, action_type):
    """N-ACTION-RQ (PS3.7 10.3.4.1) at buf[offset:]; the action information follows as a data set."""
    end = _ui(buf, offset + 12, TAG_REQUESTED_SOP_CLASS, sop_class)
    end = _us(buf, end, TAG_COMMAND_FIELD, N_ACTION_RQ)
    end = _us(buf, end, TAG_MESSAGE_ID, message_id)
    end = _us(buf, end, TAG_DATASET_TYPE, DATASET_PRESENT)
    end = _ui(buf, end, TAG_REQUESTED_SOP_INSTANCE, sop_instance)
    end = _us(buf, end, TAG_ACTION_TYPE, action_type)
    return _finish(buf, offset, end)


def encode_create_rq(buf, offset, message_id, sop_class, sop_instance):
    """N-CREATE-RQ (PS3.7 10.3.5.1) at buf[offset:], naming the instance the SCU created."""
    end = _ui(buf, offset + 12, TAG_AFFECTED_SOP_CLASS, sop_class)
    end = _us(buf, end, TAG_COMMAND_FIELD, N_CREATE_RQ)
    end = _us(buf, end, TAG_MESSAGE_ID, message_id)
    end = _us(buf, end, TAG_DATASET_TYPE, DATASET_PRESENT)
    end = _ui(buf, end, TAG_AFFECTED_SOP_INSTANCE, sop_instance)
    return _finish(buf, offset, end)


def encode_set_rq(buf, offset, message_id, sop_class, sop_instance):
    """N-SET-RQ (PS3.7 10.3.3.1) at buf[offset:]; the modification list follows as a data set."""
    end = _ui(buf, offset + 12, TAG_REQUESTED_SOP_CLASS, sop_class)
    end = _us(buf, end, TAG_COMMAND_FIELD, N_SET_RQ)
    end = _us(buf, end, TAG_MESSAGE_ID, message_id)
    end = _us(buf, end, TAG_DATASET_TYPE, DATASET_PRESENT)
    end = _ui(buf, end, TAG_REQUESTED_SOP_INSTANCE, sop_instance)
    return _finish(buf, offset, end)


def encode_response(buf, offset, command, responded_to, status, sop_class, sop_instance=None,
                    event_type=None):
    """The response to a request we performed (C-ECHO-RSP PS3.7 9.3.5.2, N-EVENT-REPORT-RSP
    10.3.1.2, or any other RSP refusing an operation we do not perform), without a data set."""
    end = _ui(buf, offset + 12, TAG_AFFECTED_SOP_CLASS, sop_class) if sop_class else offset + 12
    end = _us(buf, end, TAG_COMMAND_FIELD, command)
    end = _us(buf, end, TAG_RESPONDED_TO, responded_to)
    end = _us(buf, end, TAG_DATASET_TYPE, NO_DATASET)
    end = _us(buf, end, TAG_STATUS, status)
    if sop_instance:
        end = _ui(buf, end, TAG_AFFECTED_SOP_INSTANCE, sop_instance)
    if event_type is not None:
        end = _us(buf, end, TAG_EVENT_TYPE, event_type)
    return _finish(buf, offset, end)


def parse_response(buf, end):
    """The fields of the response command set in buf[0:end] an SCU acts on (parse_command);
    a missing Status is a DimseError."""
    out = parse_command(buf, end)
    if out["status"] is None:
        raise DimseError("response command set lacks Status")
    return out


def parse_command(buf, end):
    """The fields of the command set in buf[0:end], as a dict.

    Keys: command (Command Field), message_id, responded_to, dataset_type, status (None in a
    request), comment, sop_class and sop_instance (Affected or Requested, "" when absent),
    event_type and action_type (None when absent). Lengths are checked element by element; a
    missing Command Field is a DimseError.
    """
    out = {"comment": ""}
    offset = 0
    while offset < end:
        if end - offset < 8:
            raise DimseError("command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHL", buf, offset)
        offset += 8
        if group != 0 or length > end - offset:
            raise DimseError("command element (%04x,%04x) of length %d is not valid"
                             % (group, element, length))
        if element in _US:
            if length != 2:
                raise DimseError("command element (0000,%04x) has length %d, not 2" % (element, length))
            out[element] = struct.unpack_from("<H", buf, offset)[0]
        elif element in _UI:
            if length > 64:
                raise DimseError("command element (0000,%04x) holds a UID of %d bytes" % (element, length))
            try:
                out[element] = str(bytes(buf[offset:offset + length]), "ascii").rstrip(" \x00")
            except (UnicodeError, ValueError):
                raise DimseError("command element (0000,%04x) is not a UID" % element)
        elif element == TAG_ERROR_COMMENT:
            try:
                out["comment"] = str(bytes(buf[offset:offset + min(length, 64)]), "ascii").strip(" \x00")
            except (UnicodeError, ValueError):
                out["comment"] = "(not ASCII)"
        offset += length
    if TAG_COMMAND_FIELD not in out:
        raise DimseError("command set lacks Command Field")
    return {
        "command": out[TAG_COMMAND_FIELD],
        "message_id": out.get(TAG_MESSAGE_ID, -1),
        "responded_to": out.get(TAG_RESPONDED_TO, -1),
        "dataset_type": out.get(TAG_DATASET_TYPE, NO_DATASET),
        "status": out.get(TAG_STATUS),
        "comment": out["comment"],
        "sop_class": out.get(TAG_AFFECTED_SOP_CLASS) or out.get(TAG_REQUESTED_SOP_CLASS) or "",
        "sop_instance": out.get(TAG_AFFECTED_SOP_INSTANCE) or out.get(TAG_REQUESTED_SOP_INSTANCE) or "",
        "event_type": out.get(TAG_EVENT_TYPE),
        "action_type": out.get(TAG_ACTION_TYPE),
    }
