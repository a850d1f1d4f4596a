"""What a C-STORE or C-ECHO response status means for the device (PS3.4 B.2.3, PS3.7 Annex C).

STATUS_CLASSES is the one table: (mask, value, class, reason), first match wins. Classes:
- "success": delivered.
- "warning": delivered; the archive changed or doubted something, so the line is logged.
- "transient": not delivered, and the same object may succeed later (resources, busy peer).
- "permanent": not delivered, and resending the same bytes cannot help (the object or our
  configuration must change); the queue parks the object for an operator.
- "duplicate": the archive already holds an instance with this SOP Instance UID (0111). That is
  our own object only if an earlier attempt may have delivered it (its answer lost); otherwise
  two different objects carry one UID, and counting it as delivered would lose this one. The
  caller (the forwarder) decides which, so this class is never plain success.
The conformance statement (docs/) lists this table; a docs test compares the two. Only codes
PS3.4 B.2.3 and PS3.7 9.1.1.1.9 define for C-STORE have rows; the N-service statuses (0001,
0107, 0116: N-SET/N-CREATE answers) are not C-STORE answers, so they fall to the last row.
"""

SUCCESS = "success"
WARNING = "warning"
TRANSIENT = "transient"
PERMANENT = "permanent"
DUPLICATE = "duplicate"
CLASSES = (SUCCESS, WARNING, TRANSIENT, PERMANENT, DUPLICATE)

STATUS_CLASSES = (
    (0xFFFF, 0x0000, SUCCESS, "PS3.7 C.1.1 success"),
    (0xFFFF, 0xB000, WARNING, "PS3.4 B.2.3 coercion of data elements: stored, some values changed"),
    (0xFFFF, 0xB006, WARNING, "PS3.4 B.2.3 elements discarded: stored without some elements"),
    (0xFFFF, 0xB007, WARNING, "PS3.4 B.2.3 data set does not match SOP class: stored anyway"),
    (0xF000, 0xB000, WARNING, "PS3.7 C.1.3 other Bxxx warning: stored"),
    (0xFF00, 0xA700, TRANSIENT, "PS3.4 B.2.3 refused, out of resources: the archive may have room later"),
    (0xFF00, 0xA900, PERMANENT, "PS3.4 B.2.3 data set does not match SOP class: the object must change"),
    (0xF000, 0xC000, PERMANENT, "PS3.4 B.2.3 cannot understand: the same bytes will fail again"),
    (0xFFFF, 0x0110, TRANSIENT, "PS3.7 C.4.2 processing failure: a fault on the archive's side"),
    (0xFFFF, 0x0111, DUPLICATE, "PS3.7 C.4.5 duplicate SOP instance: the archive already holds this UID"),
    (0xFFFF, 0x0117, PERMANENT, "PS3.7 C.4.8 invalid object instance: the object must change"),
    (0xFFFF, 0x0122, PERMANENT, "PS3.7 C.4.17 SOP class not supported: configuration must change"),
    (0xFFFF, 0x0124, PERMANENT, "PS3.7 C.4.18 not authorised: configuration must change"),
    (0xFFFF, 0x0210, TRANSIENT, "PS3.7 C.5.1 duplicate invocation: a new message ID will do"),
    (0xFFFF, 0x0211, PERMANENT, "PS3.7 C.5.2 unrecognised operation: the peer cannot store"),
    (0xFFFF, 0x0212, PERMANENT, "PS3.7 C.5.3 mistyped argument: the request is wrong"),
    (0xFFFF, 0x0213, TRANSIENT, "PS3.7 C.5.4 resource limitation: may succeed later"),
    (0xFFFF, 0xFE00, TRANSIENT, "PS3.7 C.3 cancel: C-STORE was not cancelled by us, so resend"),
    (0xFF00, 0xFF00, TRANSIENT, "PS3.7 C.2 pending is not a C-STORE answer: a confused peer, retry"),
    (0xF000, 0xA000, PERMANENT, "PS3.7 C.1.4 other Axxx refusal: treated like A900"),
    (0x0000, 0x0000, TRANSIENT, "status not defined for C-STORE: retried, so an unknown code loses nothing"),
)


# The N-ACTION-RSP of a Storage Commitment request (PS3.4 J.3.2.1.2, PS3.7 10.1.4.1.10): success
# means the archive took the request and will report; a failure leaves the objects awaiting a
# new request (transient: after a backoff; permanent: the same request cannot pass).
N_ACTION_CLASSES = (
    (0xFFFF, 0x0000, SUCCESS, "PS3.7 C.1.1 success: a result follows by N-EVENT-REPORT"),
    (0xFFFF, 0x0110, TRANSIENT, "PS3.7 C.4.2 processing failure"),
    (0xFFFF, 0x0213, TRANSIENT, "PS3.7 C.5.4 resource limitation"),
    (0xFFFF, 0x0210, TRANSIENT, "PS3.7 C.5.1 duplicate invocation"),
    (0xFFFF, 0x0112, PERMANENT, "PS3.7 C.4 no such SOP instance (the well-known instance)"),
    (0xFFFF, 0x0114, PERMANENT, "PS3.7 C.4 no such argument"),
    (0xFFFF, 0x0115, PERMANENT, "PS3.7 C.4 invalid argument value"),
    (0xFFFF, 0x0117, PERMANENT, "PS3.7 C.4.8 invalid object instance"),
    (0xFFFF, 0x0118, PERMANENT, "PS3.7 C.4 no such SOP class"),
    (0xFFFF, 0x0119, PERMANENT, "PS3.7 C.4 class-instance conflict"),
    (0xFFFF, 0x0123, PERMANENT, "PS3.7 C.4 no such action"),
    (0xFFFF, 0x0124, PERMANENT, "PS3.7 C.4.18 not authorised"),
    (0xFFFF, 0x0211, PERMANENT, "PS3.7 C.5.2 unrecognised operation"),
    (0xFFFF, 0x0212, PERMANENT, "PS3.7 C.5.3 mistyped argument"),
    (0x0000, 0x0000, TRANSIENT, "status not defined for N-ACTION: retried"),
)

# The N-CREATE-RSP and N-SET-RSP of an MPPS (PS3.4 F.7.2.1.2, F.7.2.2.2, PS3.7 C): a warning
# means done; a failure is retried (transient) or keeps the step for an operator (permanent).
# 0111 on an N-CREATE: the SCP holds the instance already, under the UID the device made for it,
# so an earlier N-CREATE whose answer was lost made it.
MPPS_CLASSES = (
    (0xFFFF, 0x0000, SUCCESS, "PS3.7 C.1.1 success"),
    (0xF000, 0xB000, WARNING, "PS3.7 C.1.3 warning: some attributes not taken"),
    (0xFFFF, 0x0107, WARNING, "PS3.7 C.4 warning: attribute list error"),
    (0xFFFF, 0x0116, WARNING, "PS3.7 C.4 warning: attribute value out of range"),
    (0xFFFF, 0x0111, WARNING, "PS3.7 C.4.5 duplicate SOP instance: an earlier request created it"),
    (0xFFFF, 0x0110, TRANSIENT, "PS3.7 C.4.2 processing failure"),
    (0xFFFF, 0x0213, TRANSIENT, "PS3.7 C.5.4 resource limitation"),
    (0xFFFF, 0x0210, TRANSIENT, "PS3.7 C.5.1 duplicate invocation"),
    (0xFFFF, 0xA710, PERMANENT, "PS3.4 F.7.2.2.2 performed procedure step may no longer be updated"),
    (0xFFFF, 0x0106, PERMANENT, "PS3.7 C.4 invalid attribute value"),
    (0xFFFF, 0x0120, PERMANENT, "PS3.7 C.4 missing attribute"),
    (0xFFFF, 0x0121, PERMANENT, "PS3.7 C.4 missing attribute value"),
    (0xFFFF, 0x0112, PERMANENT, "PS3.7 C.4 no such SOP instance"),
    (0xFFFF, 0x0117, PERMANENT, "PS3.7 C.4.8 invalid SOP instance"),
    (0xFFFF, 0x0118, PERMANENT, "PS3.7 C.4 no such SOP class"),
    (0xFFFF, 0x0122, PERMANENT, "PS3.7 C.4.17 SOP class not supported"),
    (0xFFFF, 0x0124, PERMANENT, "PS3.7 C.4.18 not authorised"),
    (0x0000, 0x0000, TRANSIENT, "status not defined for MPPS: retried"),
)


def classify(status, table=STATUS_CLASSES):
    """(class, reason) of a DIMSE response status, from `table` (C-STORE's by default)."""
    for mask, value, klass, reason in table:
        if status & mask == value:
            return klass, reason
    return TRANSIENT, "unreachable"


def describe(status, table=STATUS_CLASSES):
    """One line for logs and the send command, e.g. "0xA700 transient (PS3.4 B.2.3 ...)"."""
    klass, reason = classify(status, table)
    return "0x%04X %s (%s)" % (status, klass, reason)
