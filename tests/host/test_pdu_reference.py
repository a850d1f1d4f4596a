"""The A-ASSOCIATE-AC bytes the firmware unit tests hold (tests/unit/test_net_pdu.py) are what
pynetdicom encodes, so the leniency tests start from a real peer's PDU, not from our own encoder."""

from __future__ import annotations

from pynetdicom.pdu import A_ASSOCIATE_AC
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext
from test_net_pdu import PYNETDICOM_AC, hostile_ac

SC = "1.2.840.10008.5.1.4.1.1.7"


def _context(context_id: int, syntax: str, result: int) -> PresentationContext:
    cx = PresentationContext()
    cx.context_id = context_id
    cx.abstract_syntax = SC
    cx.add_transfer_syntax(syntax)
    cx.result = result
    return cx


def test_literal_is_pynetdicoms_encoding() -> None:
    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title = "MODGATE"
    prim.called_ae_title = "ANY-SCP"
    prim.result = 0
    prim.presentation_context_definition_results_list = [
        _context(1, "1.2.840.10008.1.2.1", 0), _context(3, "1.2.840.10008.1.2", 4)]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16383
    uid = ImplementationClassUIDNotification()
    uid.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.2.0.2"
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNETDICOM_202"
    prim.user_information = [length, uid, version]
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(prim)
    assert ac.encode() == PYNETDICOM_AC


def test_hostile_variant_still_frames_as_one_pdu() -> None:
    """The hostile AC keeps every PDU and item length right: only what PS3.8 says to ignore
    changed, so a decoder that walks the lengths finds the same items, plus the unknown one."""
    hostile = bytes(hostile_ac())
    assert int.from_bytes(hostile[2:6], "big") == len(hostile) - 6

    def items(pdu: bytes) -> list[int]:
        out, offset = [], 74
        while offset < len(pdu):
            out.append(pdu[offset])
            offset += 4 + int.from_bytes(pdu[offset + 2:offset + 4], "big")
        assert offset == len(pdu)
        return out

    assert items(PYNETDICOM_AC) == [0x10, 0x21, 0x21, 0x50]
    assert items(hostile) == [0x10, 0x21, 0x21, 0x60, 0x50]
