"""Modality Worklist SCU: C-FIND of the Modality Worklist Information Model - FIND
(1.2.840.10008.5.1.4.31, PS3.4 K.6) over one association, with C-CANCEL (PS3.7 9.3.2.3).

`FindSession(scp, settings)` opens an association (the two contexts below), sends one C-FIND-RQ
with the caller's identifier, and streams each pending response's identifier to the caller's
sink as its fragments arrive (nothing of a match is held here). Past `max_matches` it sends
C-CANCEL-RQ and discards what still comes. Every wait is bounded by the DIMSE timeout; a peer
that keeps sending after the cancel, a malformed response or identifier, or an abort ends the
query with DeliveryError, and the caller keeps whatever it had before.

The sink: `begin(explicit)` once the transfer syntax is known; `write(memoryview)` for each
fragment of the current identifier; `end_match()` when one is complete; `discard()` to drop a
partial or unwanted one.
"""

from modgate import log
from modgate.dicom import dataset, part10
from modgate.errors import DecodeError, DeliveryError
from modgate.net import dimse, pdu
from modgate.net.scu import ServiceUser

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
EXPLICIT_VR_LE = part10.EXPLICIT_VR_LE
IMPLICIT_VR_LE = part10.IMPLICIT_VR_LE
# One transfer syntax per context (as the storage proposal): the answer says which the SCP takes.
CONTEXTS = ((1, MODALITY_WORKLIST_FIND, (EXPLICIT_VR_LE,)), (3, MODALITY_WORKLIST_FIND, (IMPLICIT_VR_LE,)))
MAX_IDENTIFIER = 65536  # one match's identifier; a worklist item is a few hundred bytes
# The largest PDU we receive on a worklist association (PS3.8 D.1): responses go to flash PDV by
# PDV, so a small buffer does, and it is taken for each query only (no block held for it).
FIND_MAX_PDU = 1024
CANCEL_GRACE = 32  # pending responses accepted after C-CANCEL before giving up on the peer

# Final statuses of a Modality Worklist C-FIND (PS3.4 K.4.1.1.4, PS3.7 C.1-C.4); the pending
# ones (FF00, FF01) carry matches. (mask, value, transient, meaning).
FAILURES = (
    (0xFFFF, 0xA700, True, "refused: out of resources"),
    (0xFFFF, 0xA900, False, "identifier does not match SOP class"),
    (0xF000, 0xC000, True, "unable to process"),
    (0xFFFF, 0x0122, False, "SOP class not supported"),
    (0xFFFF, 0x0124, False, "not authorised"),
    (0xFFFF, 0xFE00, True, "matching terminated due to cancel"),
    (0x0000, 0x0000, True, "status not defined for C-FIND"),
)


def failure(status):
    """(transient, meaning) of a final C-FIND status other than success."""
    for mask, value, transient, meaning in FAILURES:
        if status & mask == value:
            return transient, meaning
    return True, "unknown"


class FindSession(ServiceUser):
    """Worklist queries to one SCP (scp: aet, host, port; settings as StoreSession's, but for
    max_pdu: FIND_MAX_PDU)."""

    def __init__(self, scp, settings):
        settings = dict(settings)
        settings["max_pdu"] = FIND_MAX_PDU
        settings["buffer"] = None
        ServiceUser.__init__(self, scp, settings, list(CONTEXTS), FIND_MAX_PDU)
        self._size = 0

    async def query(self, keys, sink, max_matches):
        """Send the identifier `keys` ([(tag, vr, value)], modgate.dicom.dataset) and feed the
        matches to `sink`. Returns {"status", "matches", "cancelled", "comment"}; the
        association is released. DeliveryError when the query failed (the sink's partial
        match discarded)."""
        try:
            return await self._query(keys, sink, max_matches)
        except MemoryError as exc:
            sink.discard()
            await self._out_of_memory(exc)
        except BaseException:
            sink.discard()
            self.drop()
            raise

    async def _query(self, keys, sink, max_matches):
        assoc = await self._association()
        context_id, ts = self._context_for(MODALITY_WORKLIST_FIND, (EXPLICIT_VR_LE, IMPLICIT_VR_LE))
        explicit = ts == EXPLICIT_VR_LE
        sink.begin(explicit)
        identifier = bytearray()
        dataset.encode(identifier, keys, explicit)
        message_id = self._next_id()
        buf = self.buf
        n = dimse.encode_find_rq(buf, pdu.PDATA_OVERHEAD, message_id, MODALITY_WORKLIST_FIND)
        await self._send_command(assoc, context_id, n)
        await self._send_data(assoc, context_id, identifier)
        log.info("net", "worklist query sent to %s (%d-byte identifier, %s)"
                 % (self.peer, len(identifier), "explicit" if explicit else "implicit"))

        def take(fragment):
            self._size += len(fragment)
            if self._size > MAX_IDENTIFIER:
                raise dimse.DimseError("C-FIND-RSP identifier larger than %d bytes" % MAX_IDENTIFIER)
            sink.write(fragment)

        matches = 0
        cancelled = False
        late = 0
        while True:
            self._size = 0
            rsp = await self._response(dimse.C_FIND_RSP, message_id, context_id, "C-FIND-RSP", take)
            if self.on_progress is not None:
                self.on_progress()
            code = rsp["status"]
            if code != dimse.PENDING and code != dimse.PENDING_WARNING:
                sink.discard()  # a final response's data set, if any, is no match (PS3.4 C.4.1.2.2)
                break
            if cancelled:
                sink.discard()
                late += 1
                if late > CANCEL_GRACE:
                    await self.abort()
                    raise DeliveryError("worklist SCP %s sent %d matches after C-CANCEL" % (self.peer, late))
                continue
            if rsp["dataset_type"] == dimse.NO_DATASET:
                sink.discard()
                log.warn("net", self.peer + ": pending C-FIND-RSP without an identifier, ignored")
            else:
                try:
                    sink.end_match()
                    matches += 1
                except DecodeError as exc:
                    log.warn("net", "%s: worklist match %d skipped: %s" % (self.peer, matches + 1, exc))
            if matches >= max_matches:
                cancelled = True
                n = dimse.encode_cancel_rq(buf, pdu.PDATA_OVERHEAD, message_id)
                await self._send_command(assoc, context_id, n)
                log.info("net", "worklist: %d matches, the most kept; C-CANCEL to %s" % (matches, self.peer))
        self._done()
        await self.release()
        comment = rsp["comment"]
        if code == 0 or (code == 0xFE00 and cancelled):
            return {"status": code, "matches": matches, "cancelled": cancelled, "comment": comment}
        transient, meaning = failure(code)
        raise DeliveryError("C-FIND failed: 0x%04X %s%s" % (code, meaning, ": " + comment if comment else ""),
                            transient)

    async def _send(self, assoc, nbytes):
        if not await assoc.send_pdu(nbytes):
            self._lost()

    async def _send_command(self, assoc, context_id, n):
        """The command set at buf[12:12+n], in one P-DATA-TF (it is far below any peer's maximum)."""
        control = pdu.CONTROL_COMMAND | pdu.CONTROL_LAST
        await self._send(assoc, pdu.pack_pdata(self.buf, context_id, control, n))

    async def _send_data(self, assoc, context_id, data):
        """The identifier in P-DATA-TF PDUs no larger than the peer takes (PS3.8 9.3.5)."""
        buf = self.buf
        room = min(assoc.pdu_size, len(buf)) - pdu.PDATA_OVERHEAD
        room &= ~1
        at = 0
        while True:
            frag = len(data) - at
            if frag > room:
                frag = room
            buf[pdu.PDATA_OVERHEAD:pdu.PDATA_OVERHEAD + frag] = data[at:at + frag]
            at += frag
            last = at == len(data)
            await self._send(assoc, pdu.pack_pdata(buf, context_id, pdu.CONTROL_LAST if last else 0, frag))
            if last:
                return
