"""Storage and Verification SCU (PS3.4 Annex A and B, PS3.7 9.1.1 / 9.1.5) over one association.

`StoreSession(dest, settings)` keeps one association to one destination open across objects
(bounded by count and idle time), proposes every storage SOP class the device makes in two
presentation contexts (Explicit and Implicit VR Little Endian), and streams each stored Part 10
file from flash through one buffer: each P-DATA-TF is built in place (PDU and PDV headers packed
in front of the payload) and goes out in one write. Its callers see only DeliveryError (with
`transient`) or other ModgateError subclasses.
"""

import gc
import struct

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.dicom import part10
from modgate.errors import ConfigError, DeliveryError, EncodeError, LinkClosed, ModgateError, TlsError
from modgate.net import DEFAULT_MAX_PDU, STORAGE_COMMITMENT, aetitle, dimse, items, pdu, storage_classes
from modgate.net.association import NOT_ANSWERED, Association, buffer_size, pack_pdv_header
from modgate.port import aio, fs

EXPLICIT_VR_LE = part10.EXPLICIT_VR_LE
IMPLICIT_VR_LE = part10.IMPLICIT_VR_LE
# One context per transfer syntax (not one context listing both) so the archive's answer says
# exactly which encodings it takes for each SOP class (PS3.8 9.3.2.2: one syntax is accepted).
PROPOSED_TRANSFER_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
VERIFICATION = dimse.VERIFICATION  # also in modgate.net, which must not import dimse

DEFAULTS = {
    "max_pdu": DEFAULT_MAX_PDU,
    "connect_timeout_ms": 5000,
    "acse_timeout_ms": 10000,
    "dimse_timeout_ms": 30000,
    "idle_timeout_ms": 10000,
    "artim_timeout_ms": 2000,
    "max_objects_per_association": 500,
}
MIN_MAX_PDU = 4096
MAX_MAX_PDU = 131072  # the max_pdu setting's upper limit (config.py)
YIELD_MS = 2  # the longest a C-STORE holds the device between two turns of the other tasks
_COMMAND_CAP = 512  # a C-STORE-RSP/C-ECHO-RSP command set; larger is a violation for us
_MAX_CONTEXTS = 128  # odd context IDs 1..255 (PS3.8 9.3.2.2)


def _setting(settings, key):
    value = settings.get(key)
    return DEFAULTS[key] if value is None else value


_last_proposal = [None, None]  # (classes, contexts): every destination proposes the same list


def proposal(classes):
    """[(context ID, abstract syntax, (transfer syntax,))]: one context per class and syntax.
    The list is shared (nobody changes it): ~2 KB of tuples per destination on a 32-bit board
    otherwise, made again for every session."""
    if _last_proposal[0] == classes:
        return _last_proposal[1]
    contexts = []
    context_id = 1
    for uid in classes:
        for ts in PROPOSED_TRANSFER_SYNTAXES:
            contexts.append((context_id, uid, (ts,)))
            context_id += 2
    if len(contexts) > _MAX_CONTEXTS:
        raise ConfigError("%d presentation contexts needed, at most 128 fit one association" % len(contexts))
    _last_proposal[0] = list(classes)
    _last_proposal[1] = contexts
    return contexts


class ServiceUser:
    """One peer's associations, opened on demand and reused: what every service user of the
    device shares (StoreSession here, FindSession in net/find.py). `contexts` is the proposal.

    dest: aet, host, port, and tls (True: DICOM TLS, PS3.15 B.9). settings: calling_aet,
    max_pdu, connect/acse/dimse/idle/artim_timeout_ms, max_objects_per_association (missing ones
    take DEFAULTS); optional buffer (a bytearray allocated early, see jobs/send),
    extra_sop_classes, auto_propose (propose a file's SOP class when first met, renegotiating;
    for host tools sending arbitrary files; StoreSession), tls_ca_file, tls_cert_file,
    tls_key_file (paths on flash), user_identity and user_passcode (PS3.7 D.3.3.7; the passcode
    goes only over TLS).
    """

    def __init__(self, dest, settings, contexts, min_pdu=MIN_MAX_PDU):
        self.called = aetitle.validate(dest.get("aet"))
        self.calling = aetitle.validate(settings.get("calling_aet"))
        self.host = dest.get("host")
        self.port = dest.get("port")
        if not self.host or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError("destination needs host and a port 1-65535")
        try:
            self.max_pdu = int(_setting(settings, "max_pdu"))
            self.timeouts = {
                "connect": int(_setting(settings, "connect_timeout_ms")),
                "acse": int(_setting(settings, "acse_timeout_ms")),
                "dimse": int(_setting(settings, "dimse_timeout_ms")),
                "artim": int(_setting(settings, "artim_timeout_ms")),
            }
            self.idle_ms = int(_setting(settings, "idle_timeout_ms"))
            self.max_objects = int(_setting(settings, "max_objects_per_association"))
        except (TypeError, ValueError) as exc:
            raise ConfigError("network setting is not a whole number: " + str(exc))
        if not min_pdu <= self.max_pdu <= MAX_MAX_PDU:
            raise ConfigError("max_pdu must be %d to %d, not %d" % (min_pdu, MAX_MAX_PDU, self.max_pdu))
        self.contexts = contexts
        self.impl = (part10.IMPLEMENTATION_CLASS_UID, part10.IMPLEMENTATION_VERSION_NAME)
        self.peer = self.called + "@" + str(self.host) + ":" + str(self.port)
        self.tls = bool(dest.get("tls"))
        self.tls_files = (settings.get("tls_ca_file") or "", settings.get("tls_cert_file") or "",
                          settings.get("tls_key_file") or "")
        if self.tls and not self.tls_files[0]:
            raise ConfigError("destination " + self.peer + " wants TLS but no tls_ca_file is set")
        self.identity = self._identity(settings.get("user_identity"), settings.get("user_passcode"))
        # The one PDU buffer, reused by every association of this session. Allocated now, after
        # a collection, while the heap is still unfragmented: a 16 KB block is hard to find later.
        # A caller may pass settings["buffer"], allocated before its imports fragmented the heap.
        need = buffer_size(self.max_pdu, self.contexts, self.impl[0], self.impl[1], self.identity)
        buf = settings.get("buffer")
        if buf is None or len(buf) < need:
            buf = None
            gc.collect()
            buf = bytearray(need)
        self.buf = buf
        self.cmd = bytearray(_COMMAND_CAP)
        self.scratch = bytearray(16)  # the data set reader's, for files any service streams
        self.assoc = None
        self.on_progress = None  # called after every PDU sent (the device's task heartbeat)
        self.sent_whole = False  # the last store's data set went out whole (answered or not)
        self.message_id = 0
        self.objects = 0
        self.last_used = ticks_ms()

    def _identity(self, user, passcode):
        """The User Identity proposal: a passcode never travels in clear, so a destination
        without TLS is sent the username alone (the device says so when settings are applied)."""
        return items.user_identity(user or "", (passcode or "") if self.tls else "")

    async def _out_of_memory(self, exc=None):
        # The association is in an unknown state: drop it (best effort) and keep the object.
        try:
            await self.abort()
        except (MemoryError, ModgateError):
            self.assoc = None
        what = str(exc.args[0]) if exc is not None and exc.args else ""  # where (port/tls.py says)
        need = ""
        if self.tls:
            need = " (a TLS association needs ~32 KB of heap, 17 KB of it in one block: docs/benchmarks.md)"
        raise DeliveryError("out of memory while talking to " + self.peer + (": " + what if what else "")
                            + need, True)

    async def release(self):
        """Orderly A-RELEASE of the open association, if any (some archives file a study on it)."""
        assoc = self.assoc
        self.assoc = None
        if assoc is not None and assoc.fsm.state == 6:
            await assoc.release()
            log.info("net", "released association with %s after %d objects" % (self.peer, self.objects))

    async def abort(self):
        assoc = self.assoc
        self.assoc = None
        if assoc is not None:
            try:
                await assoc.abort("aborted by the device", True)
            finally:
                # Even when the abort itself runs out of memory the socket must go: a
                # single-threaded archive (storescp without --fork) serves nobody else meanwhile.
                assoc.close()

    def drop(self):
        """Close the transport now, without a word to the peer (a task being cancelled cannot
        wait for an A-ABORT to go out); the peer sees the connection close (PS3.8 Evt17)."""
        assoc = self.assoc
        self.assoc = None
        if assoc is not None:
            assoc.close()

    def idle_expired(self):
        """True when an open association has been idle longer than idle_timeout_ms."""
        return self.assoc is not None and ticks_diff(ticks_ms(), self.last_used) > self.idle_ms

    async def _association(self):
        assoc = self.assoc
        if assoc is not None:
            if self.idle_expired() or not await assoc.alive():
                await self.release()
            else:
                return assoc
        assoc = Association(self.host, self.port, self.called, self.calling, self.contexts,
                            self.max_pdu, self.timeouts, self.buf, self._tls_client(), self.identity)
        # Held before the handshake, so an out-of-memory inside it still aborts and closes it.
        self.assoc = assoc
        self.objects = 0
        if not await assoc.open(self.impl[0], self.impl[1]):
            self.assoc = None
            message, transient = assoc.failure or ("association with " + self.peer + " failed", True)
            raise DeliveryError(message, transient, "destination")
        return assoc

    def _tls_client(self):
        """A TLS client for the next association (PS3.15 B.9), made from the files on flash each
        time: its parsed certificates take heap only while an association is open. A missing
        or broken file holds the destination's queue, as a rejected association does."""
        if not self.tls:
            return None
        from modgate.port import tls  # plain destinations never load TLS

        try:
            return tls.Client(self.tls_files[0], self.tls_files[1], self.tls_files[2])
        except TlsError as exc:
            raise DeliveryError(str(exc), False, "destination")

    def _next_id(self):
        self.message_id = self.message_id % 0xFFFF + 1
        return self.message_id

    def _lost(self):
        """The association ended under us: raise its first fault."""
        assoc = self.assoc
        self.assoc = None
        message, transient = assoc.failure or ("association with " + self.peer + " ended", True)
        raise DeliveryError(message, transient)

    def _done(self):
        self.last_used = ticks_ms()

    def _context_for(self, sop_class, syntaxes):
        """(context ID, transfer syntax) accepted for `sop_class`, preferring `syntaxes` in order."""
        results = self.assoc.results
        for ts in syntaxes:
            for context_id, uid, offered in self.contexts:
                if uid == sop_class and offered[0] == ts and results[context_id] == items.ACCEPTANCE:
                    return context_id, ts
        lines = []
        for context_id, uid, offered in self.contexts:
            if uid == sop_class:
                code = results[context_id]
                lines.append(offered[0] + ": " + ("not answered" if code == NOT_ANSWERED else
                                                  "result %d" % code))
        raise DeliveryError("no accepted presentation context for SOP class " + sop_class + " ("
                            + "; ".join(lines) + ")", False)

    async def _response(self, command, message_id, context_id, what, on_data=None):
        """The response command set, checked to answer us; a DIMSE-level fault we detect ends
        the association as the service user (A-ABORT source 0, AA-1): the PDUs were valid, it
        is the exchange above them that went wrong (PS3.7 and PS3.8 7.3). With `on_data`, a
        data set may follow the command; its fragments go to on_data(memoryview) as they come."""
        try:
            return await self._collect(command, message_id, context_id, what, on_data)
        except dimse.DimseError as exc:
            assoc = self.assoc
            self.assoc = None
            await assoc.abort(str(exc), True)
            raise DeliveryError(str(exc), True)

    async def _collect(self, command, message_id, context_id, what, on_data):
        """Collect the response command set (fragments in order) and parse it; then, when it
        announces one, pass the data set's fragments to on_data (PS3.7 9.2: command first)."""
        assoc = self.assoc
        cmd = self.cmd
        got = 0
        rsp = None
        timeout = self.timeouts["dimse"]
        while True:
            if not await assoc.next_pdata(timeout, what):
                self._lost()
            buf = assoc.buf
            end = pdu.HEADER + assoc.pdu_len
            offset = pdu.HEADER
            while offset < end:
                pcid, control, a, b = pdu.next_pdv(buf, offset, end)
                offset = b
                command_pdv = control & pdu.CONTROL_COMMAND
                if pcid != context_id or (rsp is None) != bool(command_pdv):
                    raise dimse.DimseError("%s came as %s on context %d (expected %s on %d)"
                                           % (what, "command" if command_pdv else "data", pcid,
                                              "command" if rsp is None else "data", context_id))
                if rsp is not None:
                    on_data(assoc.mv[a:b])
                elif got + b - a > len(cmd):
                    raise dimse.DimseError(what + " command set is larger than %d bytes" % len(cmd))
                else:
                    cmd[got:got + b - a] = assoc.mv[a:b]
                    got += b - a
                if control & pdu.CONTROL_LAST:
                    if rsp is None:
                        rsp = _check(cmd, got, command, message_id, what, on_data is not None)
                        if rsp["dataset_type"] != dimse.NO_DATASET:
                            continue  # its data set follows, in this PDU or the next
                    if offset != end:
                        raise dimse.DimseError("PDVs follow the last fragment of " + what)
                    return rsp

    async def _file_request(self, path, abstract, encode, response, what):
        """A request whose data set is the Part 10 file at `path` (modgate.dicom.dsfile), on the
        context accepted for `abstract` (Explicit VR LE preferred; Implicit: re-encoded while it
        is streamed). `encode(buf, offset, message_id)` writes the command set and returns its
        length. Returns the response (a data set in it is read and dropped)."""
        try:
            return await self._file_exchange(path, abstract, encode, response, what)
        except MemoryError as exc:
            await self._out_of_memory(exc)
        except BaseException:
            self.drop()  # mid-message, or cancelled: the association cannot be used again
            raise

    async def _file_exchange(self, path, abstract, encode, response, what):
        try:
            f = fs.open_file(path, "rb")
        except OSError as exc:
            raise DeliveryError("cannot open " + path + ": " + str(exc), True)
        try:
            try:
                meta = part10.read_meta(f)
            except (EncodeError, OSError) as exc:
                raise DeliveryError("cannot read " + path + ": " + str(exc), True)
            assoc = await self._association()
            context_id, ts = ServiceUser._context_for(self, abstract, (EXPLICIT_VR_LE, IMPLICIT_VR_LE))
            reader = part10.DatasetReader(f, meta, ts, self.scratch)
            message_id = self._next_id()
            n = encode(self.buf, pdu.PDATA_OVERHEAD, message_id)
            pack_pdv_header(self.buf, pdu.HEADER, n, context_id, pdu.CONTROL_COMMAND | pdu.CONTROL_LAST)
            await self._stream(assoc, reader, context_id, pdu.PDATA_OVERHEAD + n)
        finally:
            f.close()
        rsp = await self._response(response, message_id, context_id, what, _drop)
        self._done()
        return rsp

    async def _stream(self, assoc, reader, context_id, start):
        """Send the command PDV already at buf[6:start] and the data set, PDU by PDU.

        The first data fragment shares the command's PDU. Each PDU is as large as the peer
        accepts, which may exceed the buffer: its header states the fragment's length up front
        (PS3.8 9.3.1, E.2), so the data set's length is counted first, and the PDU's bytes go out
        in buffer-sized writes. The buffer only has to hold what we receive (our max PDU).
        """
        try:
            left = reader.length()
        except (EncodeError, OSError) as exc:
            raise DeliveryError("stored object unreadable: " + str(exc), isinstance(exc, OSError))
        # Corked, the message's PDUs leave in full TCP segments; uncorked at the end, the last
        # one goes at once (the peer answers only after it).
        conn = assoc.conn
        conn.cork(True)
        try:
            await self._send_pdus(assoc, reader, context_id, start, left)
        finally:
            conn.cork(False)

    async def _send_pdus(self, assoc, reader, context_id, start, left):
        """The P-DATA-TF PDUs of one message, `left` data set bytes after the command (_stream)."""
        buf = self.buf
        mv = memoryview(buf)
        cap = len(buf)
        limit = assoc.pdu_size
        turn = ticks_ms()
        if pdu.pdv_room(limit, start) < 2:
            # The peer's maximum leaves no room for data beside the command: send it alone.
            pdu.pack_header(buf, pdu.P_DATA_TF, start - pdu.HEADER)
            if not await assoc.send_pdu(start):
                self._lost()
            start = pdu.HEADER
        raw = reader.raw_stream() if cap >= limit else None
        while True:
            if raw is not None and start == pdu.HEADER:
                # Every PDU after the first starts at 0 and fits the buffer: the steady state.
                await self._send_whole_pdus(assoc, raw, context_id, left, turn)
                return
            room = pdu.pdv_room(limit, start)  # even (PS3.8 E.1)
            frag = left if left <= room else room
            left -= frag
            pack_pdv_header(buf, start, frag, context_id, 0 if left else pdu.CONTROL_LAST)
            pdu.pack_header(buf, pdu.P_DATA_TF, start + pdu.PDV_HEADER + frag - pdu.HEADER)
            at = start + pdu.PDV_HEADER
            first = True
            while first or frag:
                n = cap - at if cap - at < frag else frag
                end = at + n
                # Read exactly n bytes (the PDU header promised them); the handlers are this
                # coroutine's, whose frame is on the heap once, not a helper's per write.
                try:
                    while at < end:
                        k = reader.readinto(mv[at:end])
                        if not k:
                            raise EncodeError("data set ended before the length counted for it")
                        at += k
                except (EncodeError, OSError) as exc:
                    await self._unreadable(assoc, exc)
                frag -= n
                try:
                    sent = assoc.send_now(end, first)
                except (OSError, LinkClosed) as exc:
                    sent = assoc.send_failed(exc)
                if sent != end:
                    await self._send_rest(assoc, sent, end)
                first = False
                at = 0
            if not left:
                return
            # A turn for every other task every YIELD_MS, between PDUs: frames keep arriving
            # during a C-STORE of any size (a small board's UART FIFO lasts ~90 ms), at a cost
            # of one scheduler round trip per few PDUs instead of one per PDU.
            if ticks_diff(ticks_ms(), turn) >= YIELD_MS:
                if self.on_progress is not None:
                    self.on_progress()
                await aio.sleep_ms(0)
                turn = ticks_ms()
            start = pdu.HEADER

    async def _send_whole_pdus(self, assoc, raw, context_id, left, turn):
        """The rest of a data set read from `raw` as stored, each PDU read and written whole:
        both headers packed at once, one read, one write (the sender's hot loop, kept lean: on
        an emulated ARM core the interpreter's work per PDU is the cost that shows)."""
        buf = self.buf
        mv = memoryview(buf)
        room = pdu.pdv_room(assoc.pdu_size, pdu.HEADER)  # even fragments (PS3.8 E.1)
        whole = mv[12:12 + room]
        pack = struct.pack_into
        while left:
            frag = left if left < room else room
            left -= frag
            pack(_PDU_PDV, buf, 0, pdu.P_DATA_TF, 0, frag + 6, frag + 2, context_id,
                 0 if left else pdu.CONTROL_LAST)
            try:
                got = raw.readinto(whole if frag == room else mv[12:12 + frag])
            except OSError as exc:
                got = exc
            if got != frag:
                await self._unreadable(assoc, got if isinstance(got, OSError) else
                                       EncodeError("data set shorter than its length"))
            end = 12 + frag
            try:
                sent = assoc.send_now(end, True)
            except (OSError, LinkClosed) as exc:
                sent = assoc.send_failed(exc)
            if sent != end:
                await self._send_rest(assoc, sent, end)
            if left and ticks_diff(ticks_ms(), turn) >= YIELD_MS:
                if self.on_progress is not None:
                    self.on_progress()
                await aio.sleep_ms(0)
                turn = ticks_ms()

    async def _send_rest(self, assoc, sent, end):
        """The hot path wrote buf[0:sent] of buf[0:end] at once (DT-1 without a coroutine per
        PDU); a full socket (send the rest, waiting) or a peer that spoke (-1) comes here."""
        if sent < 0:
            await assoc.settle()
            self._lost()
        if not await assoc.send_tail(sent, end):
            self._lost()

    async def _unreadable(self, assoc, problem):
        """The stored file failed under us mid-message: abort (the association cannot carry on
        with a promised fragment missing) and keep the object."""
        self.assoc = None
        reason = "stored object unreadable: " + str(problem)
        await assoc.abort(reason, False)
        raise DeliveryError(reason, isinstance(problem, OSError))


class StoreSession(ServiceUser):
    """C-STORE and C-ECHO to one destination, one association reused across calls.

    dest: aet, host, port. settings: calling_aet, max_pdu, connect/acse/dimse/idle/artim
    _timeout_ms, max_objects_per_association (missing ones take DEFAULTS); optional buffer (a
    bytearray allocated early, see jobs/send), extra_sop_classes, and auto_propose (propose a
    file's SOP class when first met, renegotiating; for host tools sending arbitrary files).
    """

    def __init__(self, dest, settings):
        self.classes = storage_classes(settings.get("extra_sop_classes") or ())
        self.auto_propose = bool(settings.get("auto_propose"))
        # Storage Commitment (PS3.4 J) goes to the archive that stores, on the same association.
        self.commitment = bool(settings.get("commitment"))
        ServiceUser.__init__(self, dest, settings, self._proposal(self.classes))

    # -- public API --------------------------------------------------------------------------

    async def store(self, path):
        """Send the Part 10 file at `path`; (status, "success"|"warning", message) or DeliveryError."""
        try:
            return await self._store_path(path)
        except MemoryError as exc:
            await self._out_of_memory(exc)
        except BaseException:
            # Cancelled (the destination was replaced or removed): the association is mid-message
            # and can never be used again; its socket must not outlive the task.
            self.drop()
            raise

    async def _store_path(self, path):
        try:
            f = fs.open_file(path, "rb")
        except OSError as exc:
            raise DeliveryError("cannot open " + path + ": " + str(exc), False)
        try:
            try:
                meta = part10.read_meta(f)
            except EncodeError as exc:
                raise DeliveryError(path + ": " + str(exc), False)
            except OSError as exc:
                raise DeliveryError("cannot read " + path + ": " + str(exc), True)
            return await self._store(f, meta)
        finally:
            f.close()

    async def echo(self):
        """C-ECHO round trip in milliseconds (association opened if needed); DeliveryError otherwise."""
        try:
            return await self._echo()
        except MemoryError as exc:
            await self._out_of_memory(exc)
        except BaseException:
            self.drop()
            raise

    async def _echo(self):
        start = ticks_ms()
        assoc = await self._association()
        context_id = self._context_for(VERIFICATION, (IMPLICIT_VR_LE, EXPLICIT_VR_LE))[0]
        message_id = self._next_id()
        n = dimse.encode_echo_rq(self.buf, pdu.PDATA_OVERHEAD, message_id)
        size = pdu.pack_pdata(self.buf, context_id, pdu.CONTROL_COMMAND | pdu.CONTROL_LAST, n)
        if not await assoc.send_pdu(size):
            self._lost()
        rsp = await self._response(dimse.C_ECHO_RSP, message_id, context_id, "C-ECHO-RSP")
        self._done()
        if rsp["status"] != 0:
            from modgate.net import status

            raise DeliveryError("C-ECHO answered " + status.describe(rsp["status"]), True)
        return ticks_diff(ticks_ms(), start)

    # -- internals ---------------------------------------------------------------------------

    def _context_for(self, sop_class, syntaxes):
        if sop_class not in self.classes:
            raise DeliveryError("SOP class " + sop_class + " is not in the device's storage list", False)
        return ServiceUser._context_for(self, sop_class, syntaxes)

    def _proposal(self, classes):
        # Storage Commitment after Verification: the storage contexts keep their IDs.
        return proposal(classes + [STORAGE_COMMITMENT] if self.commitment else classes)

    async def _propose(self, sop_class):
        """Add a SOP class the device does not make (a host tool sending any file, as storescu
        does); the next association proposes it, so an open one is released first."""
        classes = self.classes[:-1] + [sop_class] + self.classes[-1:]
        contexts = self._proposal(classes)
        if buffer_size(self.max_pdu, contexts, self.impl[0], self.impl[1], self.identity) > len(self.buf):
            raise DeliveryError("no room to propose SOP class " + sop_class, False)
        await self.release()
        self.classes = classes
        self.contexts = contexts

    async def _store(self, f, meta):
        sop_class = meta["sop_class_uid"]
        source = meta["transfer_syntax_uid"]
        if not sop_class or not meta["sop_instance_uid"]:
            raise DeliveryError("file meta information lacks SOP Class or Instance UID", False)
        if self.auto_propose and sop_class not in self.classes:
            await self._propose(sop_class)
        self.sent_whole = False
        assoc = await self._association()
        # Explicit VR files may go as Implicit (re-encoded while streaming); others only as stored.
        wanted = PROPOSED_TRANSFER_SYNTAXES if source == EXPLICIT_VR_LE else (source,)
        context_id, ts = self._context_for(sop_class, wanted)
        try:
            reader = part10.DatasetReader(f, meta, ts, self.scratch)
        except EncodeError as exc:
            raise DeliveryError(str(exc), False)
        message_id = self._next_id()
        buf = self.buf
        n = dimse.encode_store_rq(buf, pdu.PDATA_OVERHEAD, message_id, sop_class, meta["sop_instance_uid"])
        pack_pdv_header(buf, pdu.HEADER, n, context_id, pdu.CONTROL_COMMAND | pdu.CONTROL_LAST)
        await self._stream(assoc, reader, context_id, pdu.PDATA_OVERHEAD + n)
        # From here the archive may hold the object even if its answer never comes.
        self.sent_whole = True
        rsp = await self._response(dimse.C_STORE_RSP, message_id, context_id, "C-STORE-RSP")
        self._done()
        code = rsp["status"]
        self.objects += 1
        if self.objects >= self.max_objects:
            await self.release()
        if code == 0:
            return 0, "success", "stored"  # the common case needs no table (PS3.7 C.1.1)
        try:
            from modgate.net import status  # imported on the first non-success status only
        except MemoryError:
            # Without the table, keep the object and retry: a wrong "permanent" would lose it.
            raise DeliveryError("status 0x%04X (no memory to classify it)" % code, True)
        klass, reason = status.classify(code)
        text = status.describe(code) + (": " + rsp["comment"] if rsp["comment"] else "")
        if klass == status.WARNING:
            log.warn("net", self.peer + " stored " + meta["sop_instance_uid"] + " with warning " + text)
            return code, klass, text
        if klass == status.DUPLICATE:
            # Whether that copy is ours the caller decides: it knows the object's history.
            log.warn("net", self.peer + " already holds " + meta["sop_instance_uid"] + ": " + text)
            return code, klass, text
        log.warn("net", self.peer + " refused " + meta["sop_instance_uid"] + ": " + text)
        raise DeliveryError("C-STORE failed: " + text, klass == status.TRANSIENT)


_PDU_PDV = ">BBLLBB"  # P-DATA-TF header and one PDV item header, back to back (PS3.8 9.3.5)


def _drop(fragment):
    """A response's data set we have no use for (an N-ACTION reply, N-CREATE attribute list)."""


def _check(cmd, got, command, message_id, what, data_ok=False):
    rsp = dimse.parse_response(cmd, got)
    if rsp["command"] != command or rsp["responded_to"] != message_id:
        raise dimse.DimseError("expected %s to message %d, got command 0x%04x to message %d"
                               % (what, message_id, rsp["command"], rsp["responded_to"]))
    if rsp["dataset_type"] != dimse.NO_DATASET and not data_ok:
        raise dimse.DimseError(what + " announces a data set")
    return rsp
