"""Requests a peer sends us on an association, and our responses (PS3.7 9.2, 9.3.5, 10.3.1): the
performer's side of DIMSE, shared by the listener (net/scp.py) and by a Storage Commitment SCU
that hears the result on its own association (net/commitment.py).

`Inbound(cmd)` assembles one request from the P-DATA-TF PDUs that arrive (`cmd`, a bytearray,
holds its command set): `feed(assoc, accept)` takes the PDU in the association's buffer and
returns the request (the dict of dimse.parse_command, plus "context_id") once it is complete,
else None. When its command set is complete, `accept(request)` says what becomes of it: a status
(performed or refused at once; a data set that follows is read and dropped) or a sink whose
`write(memoryview)` takes each data set fragment as it comes and whose coroutine `end()`
returns the status once the last one is in (`await performed(request)`). A C-ECHO is answered
here (success). A fragment on a context
that was not accepted, a data fragment before its command, a command set that does not parse,
or PDVs after a message's last fragment are DimseErrors (the caller aborts, PS3.8 7.3).

`answer(assoc, request)` sends the response: the status, Affected SOP Class and Instance and
Event Type ID echoed (PS3.7 10.3.1.2), no data set.
"""

from modgate.net import dimse, items, pdu

UNRECOGNISED_OPERATION = 0x0211  # PS3.7 C.5.2
_NO_RESPONSE = (dimse.C_CANCEL_RQ,)  # requests that have no response (PS3.7 9.3.2.3)


class Inbound:
    def __init__(self, cmd):
        self.cmd = cmd
        self.got = 0
        self.request = None
        self.target = None

    def feed(self, assoc, accept):
        buf = assoc.buf
        end = pdu.HEADER + assoc.pdu_len
        offset = pdu.HEADER
        while offset < end:
            pcid, control, a, b = pdu.next_pdv(buf, offset, end)
            offset = b
            if assoc.results[pcid] != items.ACCEPTANCE:
                raise dimse.DimseError("request fragment on presentation context %d, not accepted" % pcid)
            rq = self.request
            if rq is None:
                if not control & pdu.CONTROL_COMMAND:
                    raise dimse.DimseError("data set fragment before its command set")
                if self.got + b - a > len(self.cmd):
                    raise dimse.DimseError("request command set is larger than %d bytes" % len(self.cmd))
                self.cmd[self.got:self.got + b - a] = assoc.mv[a:b]
                self.got += b - a
                if not control & pdu.CONTROL_LAST:
                    continue
                rq = dimse.parse_command(self.cmd, self.got)
                if rq["command"] & 0x8000:
                    raise dimse.DimseError("a response (command 0x%04x) where a request was expected"
                                           % rq["command"])
                rq["context_id"] = pcid
                self.request = rq
                self.target = 0 if rq["command"] == dimse.C_ECHO_RQ else accept(rq)
                if rq["dataset_type"] != dimse.NO_DATASET:
                    continue
            else:
                if control & pdu.CONTROL_COMMAND or pcid != rq["context_id"]:
                    raise dimse.DimseError("request data set interrupted by a command or another context")
                if not isinstance(self.target, int):
                    self.target.write(assoc.mv[a:b])
                if not control & pdu.CONTROL_LAST:
                    continue
            if offset != end:
                raise dimse.DimseError("PDVs follow the last fragment of a request")
            rq["target"] = self.target
            self.request = None
            self.target = None
            self.got = 0
            return rq
        return None

    def discard(self):
        """The association ended in the middle of a request: let its sink drop what it had."""
        target = self.target
        self.request = None
        self.target = None
        self.got = 0
        if target is not None and not isinstance(target, int):
            target.discard()


async def performed(rq):
    """The status of a complete request: its sink's (which may take a while: other tasks run)."""
    target = rq.pop("target")
    rq["status"] = target if isinstance(target, int) else await target.end()
    return rq["status"]


async def answer(assoc, rq):
    """Send the response to request `rq` (its "status" set); False when the association ended."""
    if rq["command"] in _NO_RESPONSE:
        return True
    buf = assoc.buf
    n = dimse.encode_response(buf, pdu.PDATA_OVERHEAD, rq["command"] | 0x8000, rq["message_id"], rq["status"],
                              rq["sop_class"], rq["sop_instance"], rq["event_type"])
    size = pdu.pack_pdata(buf, rq["context_id"], pdu.CONTROL_COMMAND | pdu.CONTROL_LAST, n)
    return await assoc.send_pdu(size)
