"""The acceptor side of one association (PS3.8 7.1, Table 9-10 AE-5 to AE-8), on the requestor's
machinery (net/association.py): the same state machine, PDU reading and sending, release and
abort actions, one buffer. The listener (net/scp.py) decides what to accept.

`Acceptance(conn, ae_title, max_pdu, timeouts, buf)`; `await negotiate(decide, impl_uid,
impl_version)` reads the A-ASSOCIATE-RQ within the ARTIM timer and answers it with what
`decide(rq)` returns: ("accept", answers, roles) with answers [(context ID, result, transfer
syntax)] and roles [(SOP class UID, SCU role, SCP role)], or ("reject", result, source, reason)
(PS3.8 Table 9-21). True when established (Sta6); `accepted` maps each accepted context ID to its
(abstract syntax, transfer syntax), `proposed` counts the contexts proposed.
"""

from modgate.errors import LinkTimeout
from modgate.net import aetitle, items, pdu
from modgate.net.association import MIN_PEER_PDU, Association


class Acceptance(Association):
    def __init__(self, conn, ae_title, max_pdu, timeouts, buf):
        Association.__init__(self, "", 0, ae_title, ae_title, [], max_pdu, timeouts, buf)
        self.conn = conn
        self.peer = conn.peer
        self.rq = None
        self.proposed = 0
        self.calling_aet = ""
        self.accepted = {}
        self._verdict = None

    async def negotiate(self, decide, impl_uid, impl_version):
        self._impl = (impl_uid, impl_version)
        await self._fire("Evt5")  # AE-5: the transport connection is ours; ARTIM runs (Sta2)
        try:
            event = await self._read_pdu(self._artim)
        except LinkTimeout:
            event = "Evt18"  # nothing within ARTIM: AA-2 closes (PS3.8 9.1.5)
        await self._fire(event)
        if self.fsm.state == 3:
            self._verdict = decide(self.rq)
            await self._fire("Evt7" if self._verdict[0] == "accept" else "Evt8")
            if await self._check_broken():
                return False
        if self.fsm.state == 13:
            await self._linger()
        return self.fsm.state == 6

    # -- PS3.8 Table 9-7 actions of an acceptor ---------------------------------------------------

    def AE_5(self, _):
        self._start_artim()
        return 2

    def AE_6(self, _):
        rq = self._rq
        self._rq = None
        self.rq = rq
        self.calling_aet = rq["calling"]
        self.peer = rq["calling"] + "@" + self.conn.peer
        self.called = aetitle.field(rq["called"] or " ")
        self.calling = aetitle.field(rq["calling"] or " ")
        self.peer_max = rq["max_pdu"]
        self.pdu_size = (self.peer_max or self.max_pdu) + pdu.HEADER
        self.peer_implementation = rq["implementation_uid"]
        if 0 < self.peer_max < MIN_PEER_PDU:
            # Not acceptable to the service provider (AE-6, otherwise): no response would fit.
            self._fail("peer maximum PDU length %d is too small to carry a response" % self.peer_max, False)
            self._queue(pdu.encode_reject(self.buf, pdu.REJECT_PERMANENT, 3, 2))
            self._start_artim()
            return 13
        return 3

    def AE_7(self, _):
        _, answers, roles = self._verdict
        for context_id, result, syntax in answers:
            self.results[context_id] = result
            if result == items.ACCEPTANCE:
                self.accepted[context_id] = (self.rq["contexts"][context_id][0], syntax)
        self.proposed = len(self.rq["contexts"])
        self.rq = None  # what the association needs of it is kept above; the rest is RAM
        buf = self.buf
        end = pdu.encode_associate(buf, pdu.A_ASSOCIATE_AC, self.called, self.calling)
        end = items.encode_ac_items(buf, end, answers, self.max_pdu, self._impl[0], self._impl[1], roles)
        self._queue(pdu.finish_associate(buf, end))
        return 6

    def AE_8(self, _):
        _, result, source, reason = self._verdict
        self._fail("association from " + self.peer + " " + pdu.reject_text(result, source, reason),
                   result != pdu.REJECT_PERMANENT)
        self._queue(pdu.encode_reject(self.buf, result, source, reason))
        self._start_artim()
        return 13

    def AR_8(self, _):
        return 10  # a release collision, and we are the acceptor (PS3.8 Table 9-9 AR-8)

    def AR_10(self, _):
        return 12  # A-RELEASE confirmation in a collision as acceptor; AR-4 follows (Evt14)

