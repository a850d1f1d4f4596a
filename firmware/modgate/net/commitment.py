"""Storage Commitment Push Model, the SCU's side of the protocol (PS3.4 J.3): the request, an
N-ACTION-RQ with Action Type ID 1 (J.3.2), sent on the destination's storage session; the
result, an N-EVENT-REPORT-RQ with Event Type ID 1 (all committed) or 2 (failures exist) (J.3.3),
taken on that same association or on a new one the archive opens to the listener (net/scp.py).

- `request(session, path)`: the N-ACTION-RQ whose data set (Transaction UID, Referenced SOP
  Sequence: modgate.dicom.workflow) is the Part 10 file at `path`; returns the response status
  (DeliveryError when the association failed).
- `await_report(session, wait_ms, accept, beat, stop)`: answer what the archive sends on the
  same association within `wait_ms` of the last message, until `stop()`; returns how many
  requests were answered.
- `refusal(rq)`: the status an N-EVENT-REPORT-RQ is refused with (PS3.7 10.1.1.1.8, PS3.4
  J.3.3), or None when it is a Storage Commitment result the device takes.
"""

from modgate.dicom.workflow import STORAGE_COMMITMENT_INSTANCE as WELL_KNOWN_INSTANCE  # PS3.4 J.3.5
from modgate.net import STORAGE_COMMITMENT, dimse

ACTION_REQUEST = 1  # Request Storage Commitment (PS3.4 Table J.3-1)
EVENT_ALL_COMMITTED = 1  # Storage Commitment Request Successful (Table J.3-2)
EVENT_FAILURES_EXIST = 2  # Storage Commitment Request Complete - Failures Exist
# N-EVENT-REPORT-RSP statuses (PS3.7 10.1.1.1.8, PS3.4 J.3.3).
NO_SUCH_SOP_CLASS = 0x0118
NO_SUCH_INSTANCE = 0x0112
NO_SUCH_EVENT_TYPE = 0x0113
UNRECOGNISED_OPERATION = 0x0211
MISSING_ATTRIBUTE = 0x0120


async def request(session, path):
    def encode(buf, offset, message_id):
        return dimse.encode_action_rq(buf, offset, message_id, STORAGE_COMMITMENT, WELL_KNOWN_INSTANCE,
                                      ACTION_REQUEST)

    rsp = await session._file_request(path, STORAGE_COMMITMENT, encode, dimse.N_ACTION_RSP, "N-ACTION-RSP")
    return rsp["status"], rsp["comment"]


async def await_report(session, wait_ms, accept, beat, stop=None):
    from modgate.net.scp import serve_requests

    assoc = session.assoc
    if assoc is None:
        return 0
    answered = await serve_requests(assoc, session.cmd, wait_ms, accept, beat, False, stop)
    if assoc.fsm.state != 6:
        session.assoc = None
    return answered


def refusal(rq):
    if rq["command"] != dimse.N_EVENT_REPORT_RQ:
        return UNRECOGNISED_OPERATION  # the device performs nothing else on this context
    if rq["sop_class"] != STORAGE_COMMITMENT:
        return NO_SUCH_SOP_CLASS
    if rq["sop_instance"] != WELL_KNOWN_INSTANCE:
        return NO_SUCH_INSTANCE
    if rq["event_type"] not in (EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST):
        return NO_SUCH_EVENT_TYPE
    if rq["dataset_type"] == dimse.NO_DATASET:
        return MISSING_ATTRIBUTE  # the event information is the data set (PS3.7 C.4.11)
    return None
