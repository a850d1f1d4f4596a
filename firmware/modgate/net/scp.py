"""The device's one listening AE: where an archive opens an association to deliver a Storage
Commitment result (PS3.4 J.3.3: the SCP may report on a new association, proposing the SCP role
for itself, PS3.7 D.3.3.4), and where a field engineer can C-ECHO the device.

`ReportListener(settings, handler)` serves one association at a time, so its RAM is one PDU
buffer and one association whatever arrives; later connections wait in the backlog. The buffer
is taken at boot with the destinations' (settings["buffer"]): measured on qemu-armhf, a 4 KB
block taken when an association arrives was not to be found after a few deliveries, and every
report association was refused. A connection that still finds no room is closed; the archive
tries again, or the device asks again. Settings: ae_title, host, port, max_pdu, buffer,
acse/dimse/artim timeouts (ms). The handler says who may call (`allowed(calling_aet)`: the
configured destinations) and takes the requests (`accept(calling_aet, request, explicit)`, as
net/service.Inbound's accept). While an association from an archive is served,
`handler.arriving` is True: a destination waiting for a result on its own association stops
waiting (the archive evidently reports on a new association) and frees that association.

Acceptance policy (docs/conformance-statement.md 3.2.7): the called AE title must be ours and
the calling one a destination's, else A-ASSOCIATE-RJ (permanent, service user: called or calling
AE title not recognised). Only Verification and Storage Commitment Push Model are accepted, each
in Explicit or Implicit VR Little Endian (Explicit preferred); Storage Commitment only where the
requestor does not ask for the SCU role (it would send us N-ACTIONs we cannot perform). Without
any acceptable context the association is rejected (permanent, no reason given). An association
with no request for the DIMSE timeout is aborted; every wait is bounded.
"""

import gc

from modgate import log
from modgate.compat import ticks_ms
from modgate.dicom.part10 import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from modgate.errors import LinkClosed, LinkTimeout, ModgateError
from modgate.net import STORAGE_COMMITMENT, VERIFICATION, dimse, items, pdu
from modgate.net.acceptor import Acceptance
from modgate.port import aio, sockets

ACCEPTED_CLASSES = (VERIFICATION, STORAGE_COMMITMENT)
ACCEPTED_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)  # in order of preference
ACCEPT_POLL_MS = 500
_STOP_POLL_MS = 200
_ABSTRACT_NOT_SUPPORTED = 3  # PS3.8 Table 9-18
_SYNTAXES_NOT_SUPPORTED = 4
_USER_REJECTION = 1
_COMMAND_CAP = 512


class ReportListener:
    def __init__(self, settings, handler):
        self.ae_title = settings["ae_title"]
        self.max_pdu = settings["max_pdu"]
        self.timeouts = {"acse": settings["acse_timeout_ms"], "dimse": settings["dimse_timeout_ms"],
                         "artim": settings["artim_timeout_ms"], "connect": 0}
        self.handler = handler
        self.on_done = settings.get("settle")  # after each association (collect, note the heap)
        self.listener = sockets.Listener(settings.get("host") or "0.0.0.0", settings["port"])
        self.port = settings["port"]
        buf = settings.get("buffer")
        self.buf = buf if buf is not None and len(buf) >= self.max_pdu + pdu.HEADER else None
        self.cmd = None
        self.associations = 0
        self.refused = 0
        self.last_peer = None
        self.last_at = None
        log.info("net", "listening as %s on port %d (Storage Commitment results, C-ECHO)" % (
            self.ae_title, self.port))

    async def serve(self, beat):
        try:
            while True:
                beat()
                conn = await self.listener.accept(ACCEPT_POLL_MS)
                if conn is not None:
                    await self.session(conn, beat)
        finally:
            self.listener.close()

    def status(self):
        return {"ae_title": self.ae_title, "port": self.port, "associations": self.associations,
                "refused": self.refused, "last_peer": self.last_peer}

    async def session(self, conn, beat):
        """One association, from the transport connection to its end."""
        try:
            if self.buf is None:
                gc.collect()  # the one large block this needs is easier to find after a collection
                self.buf = bytearray(self.max_pdu + pdu.HEADER)
            if self.cmd is None:
                self.cmd = bytearray(_COMMAND_CAP)
            assoc = Acceptance(conn, self.ae_title, self.max_pdu, self.timeouts, self.buf)
        except MemoryError:
            # The peer sees the connection close and tries again later; nothing of ours is lost.
            conn.close()
            self.refused += 1
            log.error("net", "refused a connection from %s: no memory for its association" % conn.peer)
            return
        handler = self.handler
        handler.arriving = True
        try:
            await self._serve(assoc, beat)
        finally:
            handler.arriving = False

    async def _serve(self, assoc, beat):
        from modgate.dicom import part10

        try:
            if not await assoc.negotiate(self._decide, part10.IMPLEMENTATION_CLASS_UID,
                                         part10.IMPLEMENTATION_VERSION_NAME):
                self.refused += 1
                return
            self.associations += 1
            self.last_peer = assoc.peer
            self.last_at = ticks_ms()
            log.info("net", "association from %s: %d of %d contexts accepted" % (
                assoc.peer, len(assoc.accepted), assoc.proposed))
            await serve_requests(assoc, self.cmd, self.timeouts["dimse"], self._accept_for(assoc), beat, True)
        except (ModgateError, OSError) as exc:
            log.warn("net", "association from %s ended: %s" % (assoc.peer, exc))
        except MemoryError:
            log.error("net", "association from %s dropped: out of memory" % assoc.peer)
        finally:
            assoc.close()
            if self.on_done is not None:
                self.on_done()

    def _accept_for(self, assoc):
        handler = self.handler
        calling = assoc.calling_aet
        syntaxes = assoc.accepted

        def accept(rq):
            return handler.accept(calling, rq, syntaxes[rq["context_id"]][1] == EXPLICIT_VR_LE)

        return accept

    def _decide(self, rq):
        """The answer to an A-ASSOCIATE-RQ (the module docstring's policy)."""
        if rq["called"] != self.ae_title:
            return "reject", pdu.REJECT_PERMANENT, 1, 7
        if not self.handler.allowed(rq["calling"]):
            log.warn("net", "refused an association from %s: calling AE title %s is no destination's" % (
                rq["calling"], rq["calling"]))
            return "reject", pdu.REJECT_PERMANENT, 1, 3
        answers = []
        roles = []
        accepted = 0
        for context_id in sorted(rq["contexts"]):
            abstract, offered = rq["contexts"][context_id]
            result, syntax = _answer(abstract, offered, rq["roles"].get(abstract))
            answers.append((context_id, result, syntax))
            if result == items.ACCEPTANCE:
                accepted += 1
                role = rq["roles"].get(abstract)
                if role is not None and abstract == STORAGE_COMMITMENT:
                    roles.append((abstract, 0, 1))  # the requestor is the SCP; we are the SCU
        if not accepted:
            return "reject", pdu.REJECT_PERMANENT, 1, 1
        from modgate.dicom import part10

        if items.ac_size(answers, part10.IMPLEMENTATION_CLASS_UID, part10.IMPLEMENTATION_VERSION_NAME,
                         roles) > len(self.buf):
            return "reject", pdu.REJECT_TRANSIENT, 3, 2  # local limit exceeded
        return "accept", answers, roles


def _answer(abstract, offered, role):
    """(result, transfer syntax) for one proposed context (PS3.8 Table 9-18)."""
    if abstract not in ACCEPTED_CLASSES:
        return _ABSTRACT_NOT_SUPPORTED, offered[0]
    if abstract == STORAGE_COMMITMENT and role is not None and not role[1]:
        return _USER_REJECTION, offered[0]  # the requestor wants to be the SCU only
    for syntax in ACCEPTED_SYNTAXES:
        if syntax in offered:
            return items.ACCEPTANCE, syntax
    return _SYNTAXES_NOT_SUPPORTED, offered[0]


async def serve_requests(assoc, cmd, idle_ms, accept, beat, until_release, stop=None):
    """Answer the requests that come on `assoc` (net/service), each within `idle_ms` of the
    last. With `until_release` (the listener) the peer ends the association: silence for
    `idle_ms` aborts it. Without (an SCU waiting on its own association for a report), silence
    only ends the wait, and so does `stop()` becoming true between requests. Returns the number
    of requests answered."""
    from modgate.net.service import Inbound, performed

    inbound = Inbound(cmd)
    answered = 0
    try:
        while assoc.fsm.state == 6:
            beat()
            if not await _readable(assoc, idle_ms, stop):
                if until_release:
                    await assoc.abort("no request within %d ms" % idle_ms, True)
                return answered
            if not await assoc.next_pdata(idle_ms, "request", True):
                return answered
            try:
                rq = inbound.feed(assoc, accept)
            except dimse.DimseError as exc:
                # A DIMSE-level fault in a well-formed PDU: abort as the service user (AA-1).
                inbound.discard()
                await assoc.abort(str(exc), True)
                return answered
            if rq is not None:
                await performed(rq)
                if not await _answer_one(assoc, rq):
                    return answered
                answered += 1
    except (LinkClosed, LinkTimeout):
        pass
    finally:
        inbound.discard()
    return answered


async def _readable(assoc, idle_ms, stop):
    """Whether the peer spoke within `idle_ms` (False as soon as `stop()` is true)."""
    if stop is None:
        return await aio.readable(assoc.conn.pollable(), idle_ms)
    left = idle_ms
    while left > 0 and not stop():
        step = left if left < _STOP_POLL_MS else _STOP_POLL_MS
        if await aio.readable(assoc.conn.pollable(), step):
            return True
        left -= step
    return False


async def _answer_one(assoc, rq):
    from modgate.net.service import answer

    log.info("net", "%s: answered %s with status 0x%04X" % (assoc.peer, _name(rq["command"]), rq["status"]))
    return await answer(assoc, rq)


def _name(command):
    if command == dimse.C_ECHO_RQ:
        return "C-ECHO"
    if command == dimse.N_EVENT_REPORT_RQ:
        return "N-EVENT-REPORT"
    return "command 0x%04X" % command
