"""Modality Performed Procedure Step SCU (1.2.840.10008.3.1.2.3.3, PS3.4 F.7): N-CREATE of the
step the device performs, IN PROGRESS, and N-SET to COMPLETED or DISCONTINUED, each with its
data set from a Part 10 file on flash (modgate.dicom.workflow), over one association to the
MPPS SCP (the RIS, or the archive acting as the Performed Procedure Step Manager).

`MppsSession(scp, settings)` (scp: aet, host, port; settings as StoreSession's); `create(path,
uid)` and `set(path, uid)` return (status, comment) or raise DeliveryError when the association
failed; what a status means for the device is net/status.py's MPPS_CLASSES.
"""

from modgate.dicom.part10 import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from modgate.dicom.workflow import MPPS
from modgate.net import dimse
from modgate.net.scu import ServiceUser

CONTEXTS = ((1, MPPS, (EXPLICIT_VR_LE,)), (3, MPPS, (IMPLICIT_VR_LE,)))


class MppsSession(ServiceUser):
    def __init__(self, scp, settings):
        ServiceUser.__init__(self, scp, settings, list(CONTEXTS))

    async def create(self, path, uid):
        def encode(buf, offset, message_id):
            return dimse.encode_create_rq(buf, offset, message_id, MPPS, uid)

        return await self._request(path, encode, dimse.N_CREATE_RSP, "N-CREATE-RSP")

    async def set(self, path, uid):
        def encode(buf, offset, message_id):
            return dimse.encode_set_rq(buf, offset, message_id, MPPS, uid)

        return await self._request(path, encode, dimse.N_SET_RSP, "N-SET-RSP")

    async def _request(self, path, encode, response, what):
        rsp = await self._file_request(path, MPPS, encode, response, what)
        return rsp["status"], rsp["comment"]
