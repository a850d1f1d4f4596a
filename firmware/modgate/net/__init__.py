"""DICOM upper layer (PS3.8) and DIMSE service users (PS3.7). Knows nothing of frames."""

VERIFICATION = "1.2.840.10008.1.1"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model SOP Class (PS3.4 J.3)
PDU_HEADER = 6  # PDU type, reserved, length (PS3.8 9.3.1)
# The max_pdu setting's default (config.py): an SCU receives only responses in it, and sends
# at the peer's maximum whatever its own, so 4 KB per destination is enough on a board.
DEFAULT_MAX_PDU = 4096
_storage = []  # STORAGE_SOP_CLASSES, copied once


def storage_classes(extra=()):
    """SOP classes a session proposes: the device's storage list, any extra, then Verification.

    Only the UID list of modgate.dicom.iods is needed here, so when nothing else has loaded the
    IOD tables they are unloaded again (about 7-11 KB of a 64 KB heap). A job calls this before
    importing the network stack, so that passing peak finds the heap still empty.
    """
    if not _storage:
        import sys

        loaded = "modgate.dicom.iods" in sys.modules
        from modgate.dicom import iods

        _storage.extend(iods.STORAGE_SOP_CLASSES)
        if not loaded:
            from modgate import unload

            unload("modgate.dicom.iods")
    classes = []
    for uid in _storage + list(extra):
        if uid not in classes and uid != VERIFICATION:
            classes.append(uid)
    classes.append(VERIFICATION)
    return classes


def receive_buffer(max_pdu):
    """The one PDU buffer of an association: the largest PDU we receive (our max PDU and its
    header). What we send is streamed through it; association.buffer_size grows it when an
    A-ASSOCIATE-RQ with many contexts is larger. Jobs take it first, while the heap is whole."""
    return bytearray(max_pdu + PDU_HEADER)
