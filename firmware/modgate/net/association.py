"""One DICOM association as requestor (PS3.8 7.1-7.3), driven by the Table 9-10 state machine;
net/acceptor.py adds the acceptor's actions (AE-5 to AE-8) on the same machinery.

The association owns one connection and one buffer (the caller's): A-ASSOCIATE-RQ, P-DATA-TF
and every received PDU pass through it, so memory stays flat however large the objects are.
Transport faults and bad PDUs become events (Evt17 closed, Evt19 invalid, Evt18 ARTIM), the
table picks the action, and the first fault is kept in `failure` as (message, transient) for the
service user to raise. Nothing below raises past this module except ModgateError subclasses.
"""

import struct

from modgate import log
from modgate.compat import deadline, remaining_ms
from modgate.errors import LinkClosed, LinkTimeout, TlsError
from modgate.net import PDU_HEADER, aetitle, items, pdu
from modgate.net.fsm import StateMachine
from modgate.net.pdu import PDUError
from modgate.port import sockets

_EVENT_OF = {
    pdu.A_ASSOCIATE_RQ: "Evt6",
    pdu.A_ASSOCIATE_AC: "Evt3",
    pdu.A_ASSOCIATE_RJ: "Evt4",
    pdu.P_DATA_TF: "Evt10",
    pdu.A_RELEASE_RQ: "Evt12",
    pdu.A_RELEASE_RP: "Evt13",
    pdu.A_ABORT: "Evt16",
}
NOT_ANSWERED = 0xFF  # a context the AC did not mention
MIN_PEER_PDU = 256  # smaller cannot carry one C-STORE-RQ command set; PS3.8 D.1 sets no floor
_ABORT_SEND_MS = 500  # an A-ABORT is best effort: a peer that will not read it is being dropped


class Association:
    """Requestor side of one association. `buf` is a bytearray the caller sized (see `buffer_size`).
    `tls`: a port.tls.Client, for a transport connection over TLS (PS3.15 B.9); `identity`: the
    User Identity proposal of items.user_identity (PS3.7 D.3.3.7)."""

    def __init__(self, host, port, called, calling, contexts, max_pdu, timeouts, buf, tls=None,
                 identity=None):
        self.host = host
        self.port = port
        self.peer = called + "@" + host + ":" + str(port)
        self.called = aetitle.field(called)
        self.calling = aetitle.field(calling)
        self.contexts = contexts  # [(context ID, abstract syntax, (transfer syntax,))]
        self.max_pdu = max_pdu  # advertised: the largest P-DATA-TF body we accept
        self.timeouts = timeouts  # connect, acse, dimse, artim (ms)
        self.buf = buf
        self.mv = memoryview(buf)
        self.fsm = StateMachine(self)
        self.conn = None
        self.tls = tls
        self.identity = identity
        self.identity_confirmed = False  # the AC carried a User Identity response
        # Result per context ID (PS3.8 Table 9-18), NOT_ANSWERED until the AC says: one small
        # table instead of dicts keyed by syntax pairs (~1.5 KB per live association).
        self.results = bytearray(b"\xff" * 256)
        self.accepted = 0  # how many contexts the peer accepted
        self.peer_max = 0
        self.pdu_size = 0  # the largest PDU (header included) we send
        self.peer_implementation = ""
        self.failure = None  # (message, transient) of the first fault
        self.pdu_type = 0
        self.pdu_len = 0
        self._out = 0  # bytes of buf an action asked to send (_queue)
        self._out_ms = 0
        self._connect = False  # AE-1 asked for a transport connection
        self._broken = None
        self._abort_reason = pdu.REASON_NOT_SPECIFIED
        self._abort_sent = False
        self._ac = None
        self._rq = None
        self._artim = 0
        self._sent = 0

    # -- the service user's side (coroutines: the association waits, other tasks run) ------

    async def open(self, impl_uid, impl_version):
        """Connect and negotiate (AE-1, AE-2, then AE-3 or AE-4). True when established (Sta6)."""
        self._impl = (impl_uid, impl_version)
        await self._fire("Evt1")
        if self.conn is None:
            await self._fire("Evt17")  # the connect failed: Sta4 + Evt17 -> AA-4
            return False
        await self._fire("Evt2")
        if await self._check_broken():
            return False
        await self._await(5, "A-ASSOCIATE-AC", self.timeouts["acse"])
        return self.fsm.state == 6

    async def send_pdu(self, nbytes):
        """Send the P-DATA-TF in buf[0:nbytes] (DT-1). False when the association has ended."""
        self._sent += 1
        if not self._sent & 7 and self.conn.readable(0):
            # The peer spoke while we were sending a request: an A-ABORT, a close, or a violation.
            # Looked for every 8th PDU: a poll per PDU cost ~10% of the large-object throughput.
            await self._unsolicited()
            return False
        await self._fire("Evt9", nbytes)
        return not await self._check_broken()

    def send_now(self, nbytes, new_pdu):
        """The fast path of DT-1 (Evt9 in Sta6 sends the P-DATA-TF and stays in Sta6, PS3.8
        Table 9-10): write buf[0:nbytes] as far as the socket takes it at once, without waiting.
        `new_pdu`: this write starts a PDU (send_pdu's check for a peer that spoke applies).
        Returns the bytes written (fewer than nbytes: await send_tail for the rest), or -1 when
        the association has ended or the peer spoke (await settle() to take that through the
        table). A transport that fails raises OSError or LinkClosed: the caller, a coroutine
        whose frame is on the heap once, hands it to send_failed (a handler here would cost a
        heap frame per PDU on MicroPython)."""
        if self.fsm.state != 6 or self._broken is not None:
            return -1
        if new_pdu:
            self._sent += 1
            if not self._sent & 7 and self.conn.readable(0):
                return -1
        return self.conn.write_now(self.mv[:nbytes])

    def send_failed(self, exc):
        """What send_now raised: the transport is gone; -1, as send_now says (await settle())."""
        self._broken = exc if isinstance(exc, LinkClosed) else LinkClosed(
            "send to " + self.peer + " failed: " + str(exc))
        return -1

    async def send_tail(self, start, end):
        """Send buf[start:end], the rest of a write send_now began. False when the association ended."""
        if self._broken is None:
            try:
                await self.conn.send_all(self.mv[start:end], self.timeouts["dimse"], True)
            except (LinkClosed, LinkTimeout) as exc:
                self._broken = exc
        return not await self._check_broken()

    async def settle(self):
        """After send_now returned -1: take what happened through the table (the peer's PDU, or
        the transport closing under us)."""
        if self._broken is not None:
            await self._check_broken()
        elif self.fsm.state == 6 and self.conn.readable(0):
            await self._unsolicited()

    async def next_pdata(self, timeout_ms, what, peer_may_release=False):
        """Wait for the next P-DATA-TF (left in buf[6:6+pdu_len]); False when the association ended.
        With `peer_may_release` (we wait for requests, not for an answer) a release by the peer
        is the normal end and is answered without a fault."""
        until = deadline(timeout_ms)
        while True:
            event = await self._read_or_timeout(until, what)
            if event is None:
                return False
            await self._fire(event)
            state = self.fsm.state
            if event == "Evt10" and state == 6:
                return True
            if state == 8:
                # AR-2: the peer asked to release before answering us; answer it (Evt14, AR-4).
                if not peer_may_release:
                    self._fail("peer released the association while we waited for " + what, True)
                await self._fire("Evt14")
            if self.fsm.state == 13:
                await self._linger()
            if self.fsm.state == 1:
                return False

    async def _await(self, state, what, timeout_ms):
        until = deadline(timeout_ms)
        while self.fsm.state == state:
            event = await self._read_or_timeout(until, what)
            if event is None:
                return
            await self._fire(event)
            if self.fsm.state == 13:
                await self._linger()

    async def alive(self):
        """True when established and the peer has not closed, released or aborted meanwhile."""
        if self.fsm.state != 6:
            return False
        if self.conn.readable(0):
            await self._unsolicited()
        return self.fsm.state == 6

    async def release(self):
        """Orderly release (AR-1, then AR-3 on A-RELEASE-RP). True when the peer confirmed it."""
        if self.fsm.state != 6:
            return False
        await self._fire("Evt11")
        if await self._check_broken():
            return False
        until = deadline(self.timeouts["acse"])
        while self.fsm.state in (7, 9, 11):
            if self.fsm.state == 9:
                await self._fire("Evt14")  # release collision, requestor side: AR-9 sends A-RELEASE-RP
                if await self._check_broken():
                    return False
                continue
            event = await self._read_or_timeout(until, "A-RELEASE-RP")
            if event is None:
                return False
            await self._fire(event)
        if self.fsm.state == 13:
            await self._linger()
        return self.failure is None

    async def abort(self, message, transient=True):
        """Local A-ABORT (Evt15 -> AA-1, source: service user): record why, send it, wait for
        the close (ARTIM). Also how we end an association whose DIMSE exchange went wrong."""
        self._fail(message, transient)
        if self.fsm.state in (1, 2, 13):
            self.close()
            return
        await self._fire("Evt15")
        if self.fsm.state == 13:
            await self._linger()

    async def violation(self, message):
        """The peer broke PS3.8 inside a PDU we already took: abort as the service provider."""
        self._fail(message, True)
        self._abort_reason = pdu.REASON_UNEXPECTED_PARAMETER
        await self._fire("Evt19")
        if self.fsm.state == 13:
            await self._linger()

    async def _fire(self, event, arg=None):
        """Run Table 9-10's action for `event`, then the I/O it requested (the actions only
        ask for a connect or a send, as PS3.8 describes them: a request, then an event)."""
        self.fsm.fire(event, arg)
        if self._connect:
            self._connect = False
            connector = sockets if self.tls is None else self.tls
            try:
                self.conn = await connector.connect(self.host, self.port, self.timeouts["connect"])
            except (LinkTimeout, LinkClosed) as exc:
                self._fail(str(exc), getattr(exc, "transient", True))
        nbytes = self._out
        if nbytes:
            self._out = 0
            await self._send(nbytes, self._out_ms)

    # -- PS3.8 Table 9-6..9-9 actions used by a requestor ---------------------------------

    def AE_1(self, _):
        self._connect = True  # TRANSPORT CONNECT request; _fire connects (Evt2 or Evt17 follow)
        return 4

    def AE_2(self, _):
        buf = self.buf
        end = pdu.encode_associate(buf, pdu.A_ASSOCIATE_RQ, self.called, self.calling)
        end = items.encode_rq_items(buf, end, self.contexts, self.max_pdu, self._impl[0], self._impl[1],
                                    self.identity)
        self._queue(pdu.finish_associate(buf, end))
        return 5

    def AE_3(self, _):
        ac = self._ac
        self._ac = None
        for context_id, (result, _syntax) in ac["contexts"].items():
            # One syntax proposed per context, so an accepted one is that syntax (_check_ac).
            self.results[context_id] = result
            if result == items.ACCEPTANCE:
                self.accepted += 1
        peer_max = ac["max_pdu"]
        self.peer_max = peer_max
        # We send PDUs as large as the peer receives (PS3.8 D.1): fewer PDUs, fewer headers for it
        # to parse. Our buffer need not hold one (scu streams it). No limit (0): our own maximum.
        self.pdu_size = (peer_max or self.max_pdu) + pdu.HEADER
        self.peer_implementation = ac["implementation_uid"]
        if self.identity is not None:
            self._identity_answer(ac["identity_response"])
        log.info("net", "associated with %s: %d of %d contexts accepted, peer max PDU %d, sending %d"
                 % (self.peer, self.accepted, len(self.contexts), peer_max, self.pdu_size - pdu.HEADER))
        return 6

    def AE_4(self, _):
        result, source, reason = pdu.decode_reject(self.buf)
        hint = "" if self.identity is None else " (user identity '%s' was sent)" % self.identity[1].decode()
        self._fail("association " + pdu.reject_text(result, source, reason) + hint,
                   result != pdu.REJECT_PERMANENT)
        self.close()
        return 1

    def _identity_answer(self, response):
        """PS3.7 D.3.3.7: we asked for a positive response; an acceptor that does not check user
        identities accepts without one, and that is worth a line in the log."""
        user = self.identity[1].decode()
        self.identity_confirmed = response is not None
        if self.identity_confirmed:
            log.info("net", "%s confirmed user identity '%s'" % (self.peer, user))
        else:
            log.warn("net", "%s accepted without confirming user identity '%s' (it may not check it)"
                     % (self.peer, user))

    def DT_1(self, nbytes):
        self._queue(nbytes)
        return 6

    def DT_2(self, _):
        # the P-DATA stays in buf for the service user
        return 6

    def AR_1(self, _):
        self._queue(pdu.encode_release_rq(self.buf))
        return 7

    def AR_2(self, _):
        # next_pdata answers with Evt14
        return 8

    def AR_3(self, _):
        self.close()
        return 1

    def AR_4(self, _):
        self._queue(pdu.encode_release_rp(self.buf))
        self._start_artim()
        return 13

    def AR_5(self, _):
        self.close()
        return 1

    def AR_6(self, _):
        # a late P-DATA while releasing: nothing is waiting for it
        return 7

    def AR_8(self, _):
        return 9  # we are the requestor (PS3.8 Table 9-9 AR-8)

    def AR_9(self, _):
        self._queue(pdu.encode_release_rp(self.buf))
        return 11

    def AA_1(self, _):
        self._send_abort(pdu.ABORT_SOURCE_USER, pdu.REASON_NOT_SPECIFIED)
        self._start_artim()
        return 13

    def AA_2(self, _):
        self.close()
        return 1

    def AA_3(self, _):
        source, reason = pdu.decode_abort(self.buf)
        self._fail("association " + pdu.abort_text(source, reason), True)
        self.close()
        return 1

    def AA_4(self, _):
        self._fail("connection to " + self.peer + " closed by the peer", True)
        self.close()
        return 1

    def AA_5(self, _):
        self.close()
        return 1

    def AA_6(self, _):
        return 13

    def AA_7(self, _):
        self._send_abort(pdu.ABORT_SOURCE_PROVIDER, self._abort_reason)
        return 13

    def AA_8(self, _):
        self._send_abort(pdu.ABORT_SOURCE_PROVIDER, self._abort_reason)
        self._start_artim()
        return 13

    # -- transport --------------------------------------------------------------------------

    def _fail(self, message, transient):
        if self.failure is None:
            self.failure = (message, transient)
            log.warn("net", self.peer + ": " + message)

    def _queue(self, nbytes, timeout_ms=None):
        """An action's send request: buf[0:nbytes] goes out when the action has returned."""
        self._out = nbytes
        self._out_ms = self.timeouts["dimse"] if timeout_ms is None else timeout_ms

    async def _send(self, nbytes, timeout_ms):
        if self._broken is not None or self.conn is None:
            return
        try:
            await self.conn.send_all(self.mv[:nbytes], timeout_ms)
        except (LinkClosed, LinkTimeout) as exc:
            self._broken = exc

    def _send_abort(self, source, reason):
        if self._abort_sent or self.conn is None or self._broken is not None:
            return  # one A-ABORT per association, however much garbage follows
        self._abort_sent = True
        self._queue(pdu.encode_abort(self.buf, source, reason), _ABORT_SEND_MS)

    async def _check_broken(self):
        """After a send: a failed write is the transport closing under us (Evt17)."""
        exc = self._broken
        if exc is None:
            return False
        self._broken = None
        if isinstance(exc, TlsError):
            self._fail(str(exc), exc.transient)  # the handshake runs in the first write
        if self.conn.readable(0) and self.fsm.state not in (1, 13):
            await self._unsolicited()  # often an A-ABORT with the peer's reason is waiting
        if self.fsm.state not in (1, 13):
            self._fail("sending to " + self.peer + " failed: " + str(exc), True)
            await self._fire("Evt17")
        if self.fsm.state == 13:
            await self._linger()
        return True

    async def _unsolicited(self):
        """The peer sent something while we expected nothing: take it through the table."""
        event = await self._read_or_timeout(deadline(self.timeouts["acse"]), "the rest of a PDU")
        if event is None:
            return
        await self._fire(event)
        state = self.fsm.state
        if state == 8:
            await self._fire("Evt14")  # peer released an idle association: confirm (AR-4)
        elif event == "Evt10" and state == 6:
            await self.violation("peer sent P-DATA nobody asked for")
        if self.fsm.state == 13:
            await self._linger()

    def _start_artim(self):
        self._artim = deadline(self.timeouts["artim"])

    async def _linger(self):
        """Sta13: wait for the peer to close; the ARTIM timer bounds the wait (Evt18)."""
        until = self._artim
        while self.fsm.state == 13:
            try:
                event = await self._read_pdu(until)
            except LinkTimeout:
                event = "Evt18"
            await self._fire(event)

    def close(self):
        """Drop the transport now, whatever the state; closing twice is harmless."""
        if self.conn is not None:
            self.conn.close()

    async def _read_or_timeout(self, until, what):
        """The next PDU's event; on timeout, abort locally (Evt15) and return None."""
        try:
            return await self._read_pdu(until)
        except LinkTimeout:
            await self.abort("no " + what + " from " + self.peer + " within the timeout", True)
            return None

    async def _recv(self, start, end, until):
        conn = self.conn
        mv = self.mv
        while start < end:
            left = remaining_ms(until)
            if left == 0:
                raise LinkTimeout("timed out")
            got = await conn.recv_into(mv[start:end], end - start, left)
            if not got:
                raise LinkClosed("closed")
            start += got

    async def _read_pdu(self, until):
        """Read one PDU into buf and name its event (PS3.8 9.2.1); LinkTimeout when none came."""
        try:
            await self._recv(0, pdu.HEADER, until)
            limit = self.max_pdu if self.buf[0] == pdu.P_DATA_TF else len(self.buf) - pdu.HEADER
            pdu_type, length = pdu.parse_header(self.buf, limit)
            await self._recv(pdu.HEADER, pdu.HEADER + length, until)
        except TlsError as exc:
            self._fail(str(exc), exc.transient)  # e.g. TLS 1.3: the server refuses our certificate late
            return "Evt17"
        except LinkClosed:
            return "Evt17"
        except PDUError as exc:
            return self._invalid(exc)
        self.pdu_type = pdu_type
        self.pdu_len = length
        try:
            if pdu_type == pdu.A_ASSOCIATE_AC and self.fsm.state == 5:
                self._ac = self._check_ac(items.decode_associate(self.buf, length, True))
            elif pdu_type == pdu.A_ASSOCIATE_RQ and self.fsm.state == 2:
                self._rq = items.decode_associate(self.buf, length, False)  # the acceptor's
            elif pdu_type == pdu.P_DATA_TF:
                end = pdu.HEADER + length
                offset = pdu.HEADER
                while offset < end:
                    offset = pdu.next_pdv(self.buf, offset, end)[3]
        except PDUError as exc:
            return self._invalid(exc)
        return _EVENT_OF[pdu_type]

    def _invalid(self, exc):
        self._abort_reason = exc.reason
        self._fail("invalid PDU from " + self.peer + ": " + str(exc), True)
        return "Evt19"

    def _check_ac(self, ac):
        """An AC must answer our RQ: only context IDs we proposed, and a usable maximum length."""
        proposed = {}
        for context_id, abstract, syntaxes in self.contexts:
            proposed[context_id] = syntaxes
        for context_id, (result, syntax) in ac["contexts"].items():
            if context_id not in proposed:
                raise PDUError("A-ASSOCIATE-AC answers context %d we never proposed" % context_id,
                               pdu.REASON_UNEXPECTED_PARAMETER)
            if result == items.ACCEPTANCE and syntax not in proposed[context_id]:
                raise PDUError("A-ASSOCIATE-AC accepts context %d with transfer syntax %s we never proposed"
                               % (context_id, syntax), pdu.REASON_UNEXPECTED_PARAMETER)
        if 0 < ac["max_pdu"] < MIN_PEER_PDU:
            raise PDUError("peer maximum PDU length %d is too small to carry a command" % ac["max_pdu"])
        return ac


def buffer_size(max_pdu, contexts, impl_uid, impl_version, identity=None):
    """Bytes of the one buffer an association needs: the largest PDU we receive (our max PDU),
    or the A-ASSOCIATE-RQ if that is larger. What we send is streamed through it."""
    size = items.rq_size(contexts, impl_uid, impl_version, identity)
    need = max_pdu + PDU_HEADER
    return need if need > size else size


def pack_pdv_header(buf, offset, nbytes, context_id, control):
    """A PDV item header at buf[offset:offset+6] for a fragment of `nbytes` (PS3.8 9.3.5.1)."""
    struct.pack_into(">LBB", buf, offset, nbytes + 2, context_id, control)
