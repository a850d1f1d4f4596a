"""Words for PS3.8 codes, for log lines; imported only when something went wrong."""

NAMES = ("A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "A-ASSOCIATE-RJ", "P-DATA-TF", "A-RELEASE-RQ", "A-RELEASE-RP",
         "A-ABORT")

# A-ABORT source and reason (PS3.8 9.3.8, Table 9-26).
ABORT_SOURCES = {0: "service user", 1: "reserved source", 2: "service provider"}
ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognised PDU",
    2: "unexpected PDU",
    4: "unrecognised PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}

# A-ASSOCIATE-RJ result, source and reason (PS3.8 9.3.4, Table 9-21).
REJECT_RESULTS = {1: "permanent", 2: "transient"}
REJECT_SOURCES = {1: "service user", 2: "service provider (ACSE)", 3: "service provider (presentation)"}
REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def pdu_name(pdu_type):
    return NAMES[pdu_type - 1] if 1 <= pdu_type <= len(NAMES) else "PDU type 0x%02x" % pdu_type


def reject_text(result, source, reason):
    """e.g. "rejected permanent by service user: called AE title not recognised"."""
    return "rejected %s by %s: %s" % (
        REJECT_RESULTS.get(result, "with result %d" % result),
        REJECT_SOURCES.get(source, "source %d" % source),
        REJECT_REASONS.get((source, reason), "reason %d" % reason),
    )


def abort_text(source, reason):
    text = "aborted by " + ABORT_SOURCES.get(source, "source %d" % source)
    if source == 2:
        text += ": " + ABORT_REASONS.get(reason, "reason %d" % reason)
    return text
