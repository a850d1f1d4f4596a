"""From acquired frames to durable DICOM objects in the spool: the sink every input source feeds.

A single frame is encoded straight into a spool object and committed (durable) before its ACK.

The frames of a series go into one open spool object, the multi-frame DICOM object itself: the
header is written when the series opens, each frame's pixels are appended and synced
(spool.checkpoint) before that frame's ACK, and when the series ends or times out, Number of
Frames and the Pixel Data length are patched in place and the object is committed, once. The
object counts in the spool's budget from its first byte. After a power cut, recover() finds the
object again with its whole frames; a torn, unacknowledged frame at its end is overwritten by
the next frame (or cut off at the commit). The series goes on in the same object when its
source continues (same stable source, series_id, frame_index where it stopped), else it is
committed after the series timeout. A commit that fails is retried by tick(), never dropped.
Layout on flash and the crash-safety argument: docs/spool.md.
"""

import binascii

from modgate import log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.dicom import iods, pixels
from modgate.dicom.writer import ObjectWriter
from modgate.errors import EncodeError, FrameError, ModgateError, SpoolFull
from modgate.ingest.frameproto import NAK_REFUSED, NAK_SERIES, NAK_STORAGE, NAK_TOO_LARGE
from modgate.port import clock, fs

_SRC = "acquire"
# Room for an object's header (File Meta and the elements before Pixel Data) in the budget.
HEADER_ROOM = 4096
# The note's last-touched time is rewritten at most this often (it only shortens the wait for a
# source after a restart, so seconds of slack cost nothing).
_TOUCH_REFRESH_S = 10
_RETRY_CLOSE_MS = 1000  # a failed commit of a series is tried again this often
# Frames a series' object can take when the source gives no nominal frame time: the Frame Time
# Vector is reserved in the header for this many (8 bytes each, cut to the frames that came at the
# commit). A longer series goes on in the next instance of its DICOM series.
SERIES_MAX_FRAMES = 1000
_MAX_INCREMENT_MS = 9999999  # the widest Frame Time Vector value the writer holds


def stable_source(source_id):
    """The identity of a source that survives its reconnecting: "tcp:HOST:PORT" becomes
    "tcp:HOST" (a modality reconnects from a new ephemeral port); "uart" and the others stay.
    docs/frame-protocol.md (Series) states what follows for sources sharing a host."""
    text = str(source_id)
    if text.startswith("tcp:") and text.count(":") >= 2:
        return text.rsplit(":", 1)[0]
    return text


class _SingleTarget:
    """A frame being encoded straight into its own spool object. From a source that resends
    what was not acknowledged, its commit is tagged with the source's sequence number and the
    payload's CRC-32: the same frame resent after a power cut that came between the commit and
    the ACK is acknowledged again, not stored twice."""

    def __init__(self, spool, incoming, stream, writer, meta, header):
        self.spool = spool
        self.incoming = incoming
        self.stream = stream
        self.writer = writer
        self.meta = meta
        source = stable_source(header.get("source", ""))
        self.key = "frame:" + source if _resends(source) else None
        self.sequence = header.get("sequence", 0)
        self.crc = 0
        self.stored = True

    def write(self, chunk):
        self.crc = binascii.crc32(chunk, self.crc)
        self.writer.write_pixels(chunk)

    def commit(self):
        crc = self.crc & 0xFFFFFFFF
        tag = None
        if self.key is not None:
            last = self.spool.tagged(self.key)
            if last is not None and last[0].get("seq") == self.sequence and last[0].get("crc") == crc:
                self.abort()
                self.stored = False
                return last[1]
            tag = {"key": self.key, "seq": self.sequence, "crc": crc}
        self.writer.end_frame()
        uid = self.writer.finish()
        self.stream.close()
        self.spool.commit(self.incoming, uid, self.meta, tag=tag)
        return uid

    def abort(self):
        try:
            self.stream.close()
        except OSError:
            pass
        self.spool.abort(self.incoming)


class _SeriesFrameTarget:
    """One frame appended to its series' open object."""

    stored = True

    def __init__(self, acquirer, series, header):
        self.acquirer = acquirer
        self.series = series
        self.sequence = header.get("sequence", 0)
        self.ends = header["kind"] == "series_end"

    def write(self, chunk):
        self.series.writer.write_pixels(chunk)

    def commit(self):
        series = self.series
        writer = series.writer
        now = ticks_ms()
        gap = ticks_diff(now, series.touched) if series.frames else 0
        writer.end_frame(gap if gap < _MAX_INCREMENT_MS else _MAX_INCREMENT_MS)  # Frame Time Vector
        writer.flush()
        note = series.note
        first = not series.inc.noted
        if first:
            note["seq"] = self.sequence
        now_s = _wall_seconds()
        touched = note["touched"]
        refresh = now_s is not None and (touched is None or now_s - touched >= _TOUCH_REFRESH_S)
        if first or refresh:
            note["touched"] = now_s
        self.acquirer.spool.checkpoint(series.inc, series.stream, writer.bytes_written,
                                       note if first or refresh else None)
        series.frames += 1
        series.touched = now
        return series.uid

    def abort(self):
        series = self.series
        self.acquirer.spool.release(series.inc)
        series.drop_writer()  # the next frame resumes at the last whole frame, over the torn one
        if not series.frames:
            self.acquirer._discard(series)  # nothing acknowledged: the object goes


class _SeriesEndTarget:
    """A bare series end marker (no payload): closes the series without adding a frame."""

    stored = False

    def __init__(self, acquirer, series):
        self.acquirer = acquirer
        self.series = series

    def write(self, chunk):
        if len(chunk):
            raise FrameError("a bare series end carries no pixels", NAK_SERIES)

    def commit(self):
        # ACKed even if the commit must be retried: every frame is already on flash.
        self.acquirer._close_series(self.series, "series end marker")
        return self.series.uid

    def abort(self):
        pass


class _Resend:
    """A frame already acknowledged and stored (its ACK was lost): ACK it again, store nothing.
    The resend of a series' last frame still closes the series (`closes`: (acquirer, series))."""

    stored = False

    def __init__(self, uid, closes=None):
        self.uid = uid
        self.closes = closes

    def write(self, chunk):
        pass

    def commit(self):
        if self.closes is not None:
            self.closes[0]._close_series(self.closes[1], "series end (resent)")
        return self.uid

    def abort(self):
        pass


class _Series:
    """A series being acquired into one open spool object. `note` is what recovery needs:
    key, iod, format, width, height, bits_stored, context, uid, number (Instance Number),
    point (ObjectWriter.resume_point), base (frame_index of its first frame), seq (sequence of
    its first frame), touched (clock seconds, None when the clock is unset)."""

    def __init__(self, inc, note, layout):
        self.inc = inc
        self.note = note
        self.key = note["key"]
        self.uid = note["uid"]
        self.layout = layout
        self.frames = 0
        self.touched = ticks_ms()
        self.writer = None
        self.stream = None
        self.closing = None  # why it is being closed, once it is
        self.close_error = None
        self.retry_at = 0

    def next_index(self):
        return self.note["base"] + self.frames

    def good_length(self):
        """Bytes of the finished object: header, whole frames, the pad byte (PS3.5 7.1.1)."""
        pixels_len = self.frames * self.layout.stored_frame_bytes
        return self.note["point"][0] + pixels_len + (pixels_len & 1)

    def drop_writer(self):
        stream = self.stream
        self.stream = None
        self.writer = None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class Acquirer:
    """The sink of modgate.ingest: turns frames into spool objects. See the module docstring.

    `contexts` is the device's context provider: `contexts.for_acquisition(header_context)` returns
    the writer context (patient, study, equipment, clock). `settings` is a view of SETTINGS
    (modgate.config.settings).
    """

    SETTINGS = ("grouping", "series_timeout_ms", "iod")

    def __init__(self, spool, uid_gen, contexts, settings):
        self.spool = spool
        self.uid_gen = uid_gen
        self.contexts = contexts
        self.settings = settings
        self.open_series = {}  # series key -> _Series taking frames
        self.closing = []  # series being committed; stay here until the commit succeeded
        self.single_series = {}
        self.objects_committed = 0
        self.frames_acked = 0
        # Told of every object committed, with its metadata and context (the procedure step
        # of its study lists it: modgate.mpps). Called before the frame is acknowledged.
        self.on_committed = None

    # --- the sink interface (modgate.ingest) -------------------------------------------------
    def busy(self):
        return self.spool.admit()

    def begin_frame(self, header):
        try:
            if header["kind"] == "single" or self.settings["grouping"] == "frame":
                layout = _layout_for(header)
                self._admit(layout.stored_frame_bytes + HEADER_ROOM, None)
                return self._begin_single(header, layout)
            return self._begin_series_frame(header)
        except OSError as exc:
            raise FrameError("frame not stored: " + str(exc), NAK_STORAGE)

    def commit_frame(self, target):
        try:
            uid = target.commit()
        except SpoolFull:
            target.abort()
            raise
        except (EncodeError, OSError) as exc:
            target.abort()
            raise FrameError("frame not stored: " + str(exc), NAK_STORAGE)
        if target.stored:
            self.frames_acked += 1
        if isinstance(target, _SingleTarget) and target.stored:
            self.objects_committed += 1
            self._committed(uid, target.meta, target.writer.context)
        elif isinstance(target, _SeriesFrameTarget) and target.ends:
            self._close_series(target.series, "series end")
        return uid

    def abort_frame(self, target):
        target.abort()

    def source_lost(self, source_id):
        prefix = str(source_id) + ":"
        for key in [k for k in self.single_series if k.startswith(prefix)]:
            del self.single_series[key]
        source = stable_source(source_id)
        for series in self.open_series.values():
            if series.note["source"] == source:
                log.warn(_SRC, "source %s lost with series %s open (%d frames); it goes on if the source "
                         "continues, else closes after the series timeout" % (
                             source_id, series.key, series.frames))

    def tick(self, now_ms=None):
        """Retry failed commits; close series whose source went quiet for the series timeout.
        Bounded work: patching a few header bytes and a rename per series."""
        now = ticks_ms() if now_ms is None else now_ms
        for series in self.closing[:]:
            if ticks_diff(now, series.retry_at) >= 0:
                self._try_close(series)
        timeout = self.settings["series_timeout_ms"]
        for series in list(self.open_series.values()):
            if ticks_diff(now, series.touched) >= timeout:
                log.warn(_SRC, "series %s timed out after %d frames; delivering what arrived" % (
                    series.key, series.frames))
                self._close_series(series, "timeout")

    def recover(self):
        """At boot: take up the series that a power cut left open, with their whole frames."""
        timeout = self.settings["series_timeout_ms"]
        now_s = _wall_seconds()
        for inc in self.spool.open_objects():
            try:
                series = _recovered(inc)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, EncodeError) as exc:
                self.spool.set_aside(inc, "note does not describe a series (%s: %s)" % (
                    type(exc).__name__, exc))
                continue
            note = series.note
            if series.frames <= 0:
                log.info(_SRC, "open object of series %s had no whole frame: removed" % series.key)
                self.spool.abort(inc)
                continue
            # Wait for the source a full timeout from boot, less what the clock says went by.
            waited_ms = 0
            if now_s is not None and note["touched"] is not None and now_s > note["touched"]:
                waited_ms = (now_s - note["touched"]) * 1000
            series.touched = ticks_add(ticks_ms(), -(waited_ms if waited_ms < timeout else timeout))
            earlier = self.open_series.get(series.key)
            if earlier is not None:
                self._close_series(earlier, "a later object of the same series was found")
            self.open_series[series.key] = series
            log.info(_SRC, "series %s recovered after restart with %d frames in %s; it goes on if its "
                     "source continues, else closes after the series timeout" % (
                         series.key, series.frames, series.uid))

    # --- single frames ------------------------------------------------------------------------
    def _admit(self, need, series):
        """SpoolFull (BUSY) unless the spool takes `need` more bytes now."""
        if need > self.spool.budget:
            raise FrameError("frame needs %d bytes, more than the spool budget" % need, NAK_TOO_LARGE)
        if self.spool.admit(need):
            if series is not None and series.frames and self.spool.committed_bytes() <= self.spool.low:
                # Open objects alone hold the spool full, and delivery cannot free them: commit
                # this one now; the series goes on in a new object of the same DICOM series.
                log.warn(_SRC, "spool full with series %s open: committing its %d frames so they can "
                         "be delivered" % (series.key, series.frames))
                self._close_series(series, "spool full")
            raise SpoolFull("spool full")

    def _begin_single(self, header, layout):
        iod_name = _choose_iod(self.settings["iod"], header, multi_frame=False)
        context = self.contexts.for_acquisition(header.get("context"), header.get("source", ""))
        if not context.get("series_instance_uid"):
            uid, number = self._series_place(header, context)
            context["series_instance_uid"] = uid
            context["instance_number"] = str(number)
        incoming = self.spool.begin(layout.stored_frame_bytes + HEADER_ROOM)
        try:
            stream = fs.open_file(incoming.path, "wb")
        except OSError:
            self.spool.abort(incoming)
            raise
        try:
            writer = ObjectWriter(stream, iod_name, layout, context, self.uid_gen)
            writer.begin()
        except (EncodeError, OSError) as exc:
            stream.close()
            self.spool.abort(incoming)
            raise FrameError(str(exc), NAK_REFUSED if isinstance(exc, EncodeError) else NAK_STORAGE)
        return _SingleTarget(self.spool, incoming, stream, writer, _meta(iod_name, writer, context), header)

    def _series_place(self, header, context):
        """(Series Instance UID, Instance Number) of a single frame: the frames from one source
        connection, of one study, form one series and are numbered in arrival order."""
        key = "%s:%s:%s" % (
            header.get("source", ""),
            context["study_instance_uid"],
            header.get("series_id", 0) if header["kind"] != "single" else "",
        )
        place = self.single_series.get(key)
        if place is None:
            place = [self.uid_gen.new(), 0]
            self.single_series[key] = place
        place[1] += 1
        return place[0], place[1]

    # --- series ---------------------------------------------------------------------------------
    def _begin_series_frame(self, header):
        key = stable_source(header.get("source", "")) + ":" + str(header.get("series_id", 0))
        kind = header["kind"]
        index = header.get("frame_index", 0)
        series = self.open_series.get(key)
        if kind == "series_end" and not header.get("payload_length"):
            if series is not None:
                return _SeriesEndTarget(self, series)
            done = self._closed(key)
            if done is not None:
                return _Resend(done["uid"])  # its series closed at the first one; the ACK was lost
            raise FrameError("series end for a series that is not open", NAK_SERIES)
        follow = None
        if series is not None:
            if kind == "series_start" and header.get("sequence", 0) != series.note["seq"]:
                log.warn(_SRC, "series %s restarted before its end; closing the earlier one" % key)
                self._close_series(series, "restarted")
                series = None
            else:
                self._check_index(series.key, index, series.next_index())
                if index < series.next_index():
                    return _Resend(series.uid, (self, series) if kind == "series_end" else None)
                if (header["width"], header["height"], header["pixel_format"]) != (
                        series.note["width"], series.note["height"], series.note["format"]):
                    raise FrameError("frame geometry differs from its series", NAK_SERIES)
                if series.frames >= series.note["context"].get("max_frames", series.frames + 1):
                    log.info(_SRC, "series %s reached %d frames: it goes on in a new object" % (
                        key, series.frames))
                    self._close_series(series, "frame limit")
                    series = None
                    follow = self._closed(key)
        elif kind != "series_start":
            follow = self._closed(key)
            if follow is None:
                # Its start was never stored (refused, or lost with a power cut before its first
                # whole frame): the series has no context to go on from (frame protocol, NAK 7).
                raise FrameError("frame %d of a series that is not open (its series start was not "
                                 "stored): resend the series from its start" % index, NAK_SERIES)
            self._check_index(key, index, follow["next"])
            if index < follow["next"]:
                return _Resend(follow["uid"])
        layout = _layout_for(header) if series is None else series.layout
        # A new object's header may hold a Frame Time Vector (8 bytes a frame it can take).
        need = layout.stored_frame_bytes + (HEADER_ROOM + 8 * self._capacity(layout) if series is None else 1)
        self._admit(need, series)
        if series is None:
            series = self._open_series(key, header, layout, follow)
        else:
            self._prepare(series)
        self.spool.reserve(series.inc, need)
        return _SeriesFrameTarget(self, series, header)

    def _capacity(self, layout):
        """Frames a series' object takes: SERIES_MAX_FRAMES, or fewer when the spool could not
        hold that many (so the header reserves no Frame Time Vector slots that cannot fill)."""
        fit = self.spool.budget // layout.stored_frame_bytes
        return SERIES_MAX_FRAMES if fit > SERIES_MAX_FRAMES else (fit if fit > 2 else 2)

    def _check_index(self, key, index, expected):
        # A resend of a frame already stored is fine (ACK again); a skipped frame is not.
        if index > expected:
            raise FrameError("series %s: frame %d arrived, %d expected (a frame is missing)" % (
                key, index, expected), NAK_SERIES)

    def _open_series(self, key, header, layout, follow):
        """A new open object for series `key`: its own DICOM series, or with `follow` (a series
        closed before its source finished) the next instance of that DICOM series."""
        iod_name = _choose_iod(self.settings["iod"], header, multi_frame=True)
        context = self.contexts.for_acquisition(header.get("context"), header.get("source", ""))
        if not context.get("frame_time_ms"):
            # The frames' arrival times make a Frame Time Vector, reserved for as many frames as
            # the spool could hold of them (issue 16: the source gave no nominal frame time).
            context["max_frames"] = self._capacity(layout)
        if follow is None:
            context["series_instance_uid"] = self.uid_gen.new()
            number = 1
        else:
            context["series_instance_uid"] = follow["series_uid"]
            number = follow["number"] + 1
        context["instance_number"] = str(number)
        try:
            # Refuse now what the object could not carry (a missing Type 1 fact), not after frames
            # were acknowledged.
            iods.check(iod_name, layout, context)
        except EncodeError as exc:
            raise FrameError(str(exc), NAK_REFUSED)
        note = {"key": key, "source": stable_source(header.get("source", "")), "iod": iod_name,
                "format": header["pixel_format"], "width": header["width"], "height": header["height"],
                "bits_stored": header.get("bits_stored"), "context": context, "uid": self.uid_gen.new(),
                "number": number, "point": None, "base": header.get("frame_index", 0), "seq": None,
                "touched": None}
        inc = self.spool.begin(layout.stored_frame_bytes + HEADER_ROOM, open_meta=note)
        series = _Series(inc, note, layout)
        try:
            series.stream = fs.open_file(inc.path, "r+b")
            series.writer = ObjectWriter(series.stream, iod_name, layout, context, _FixedUid(series.uid))
            series.writer.begin()
            note["point"] = series.writer.resume_point()
        except (EncodeError, OSError) as exc:
            self._discard(series)
            raise FrameError(str(exc), NAK_REFUSED if isinstance(exc, EncodeError) else NAK_STORAGE)
        self.open_series[key] = series
        log.info(_SRC, "series %s opened as %s (instance %d)" % (key, series.uid, number))
        return series

    def _prepare(self, series):
        """Writer and file ready to append after the last whole frame (after a restart, or a
        frame that was dropped half-written)."""
        if series.writer is not None:
            return
        note = series.note
        stream = fs.open_file(series.inc.path, "r+b")
        try:
            writer = ObjectWriter(stream, note["iod"], series.layout, note["context"], _FixedUid(series.uid))
            writer.resume(note["point"], series.frames, series.uid)
        except (EncodeError, OSError):
            stream.close()
            raise
        series.stream = stream
        series.writer = writer

    def _discard(self, series):
        """Forget a series none of whose frames was acknowledged."""
        series.drop_writer()
        if self.open_series.get(series.key) is series:
            del self.open_series[series.key]
        self.spool.abort(series.inc)

    def _close_series(self, series, why):
        """Take the series out of acquisition and commit it; a failed commit stays in
        `closing` and tick() retries it, so acknowledged frames are never given up."""
        if self.open_series.get(series.key) is series:
            del self.open_series[series.key]
        if series.closing is None:
            series.closing = why
            self.closing.append(series)
        self._try_close(series)

    def _try_close(self, series):
        note = series.note
        if not series.frames:
            self.closing.remove(series)
            self._discard(series)
            return
        try:
            self._prepare(series)
            series.writer.finish()
            meta = _meta(note["iod"], series.writer, note["context"])
            series.drop_writer()
            # The tag lets a resend, or the rest of the series, find this object after a restart.
            tag = {"key": series.key, "next": series.next_index(), "number": note["number"],
                   "series_uid": note["context"]["series_instance_uid"]}
            self.spool.commit(series.inc, series.uid, meta, series.good_length(), tag)
        except (ModgateError, OSError) as exc:
            series.drop_writer()
            series.retry_at = ticks_add(ticks_ms(), _RETRY_CLOSE_MS)
            cause = str(exc)
            if cause != series.close_error:
                series.close_error = cause
                log.error(_SRC, "series %s (%d frames) not committed yet, retrying: %s" % (
                    series.key, series.frames, cause))
            return
        self.closing.remove(series)
        self.objects_committed += 1
        self._committed(series.uid, meta, note["context"])
        log.info(_SRC, "series %s closed (%s): %d frames in %s" % (series.key, series.closing, series.frames,
                                                                  series.uid))

    def _committed(self, uid, meta, context):
        if self.on_committed is None:
            return
        try:
            self.on_committed(uid, meta, context)
        except (ModgateError, OSError) as exc:
            # The object is safe in the spool; only its listing in the study's step is lost.
            log.error(_SRC, "object %s committed, but not noted for its study: %s" % (uid, exc))

    def study_open(self, study_uid):
        """True while a series of study `study_uid` is still taking frames or being closed."""
        for series in list(self.open_series.values()) + self.closing:
            if series.note["context"].get("study_instance_uid") == study_uid:
                return True
        return False

    def _closed(self, key):
        """The tag of the last committed object of series `key`, with its "uid": how the series
        ended (next frame index, series UID, instance number), or None."""
        found = self.spool.tagged(key)
        if found is None or not isinstance(found[0].get("next"), int):
            return None
        tag = dict(found[0])
        tag["uid"] = found[1]
        return tag


def _recovered(inc):
    """The series of a recovered open object, from its note; raises when the note (damaged, or
    from another firmware) lacks what the series needs."""
    note = inc.open_meta
    layout = pixels.layout(note["format"], note["width"], note["height"], note["bits_stored"])
    iods.choose(note["iod"], layout.fmt, True)
    series = _Series(inc, note, layout)
    for key in ("source", "seq", "touched"):
        if key not in note:
            raise KeyError(key)
    if not isinstance(note["number"], int) or not isinstance(note["base"], int):
        raise TypeError("number and base must be whole numbers")
    note["context"]["series_instance_uid"].encode()
    point = note["point"]
    numbers = [p for p in point[:11] if isinstance(p, int)]
    if len(point) != 12 or len(numbers) != 11 or not isinstance(point[11], str):
        raise ValueError("resume point is not 11 whole numbers and the captured header bytes")
    series.frames = (inc.held - point[0]) // layout.stored_frame_bytes
    return series


class _FixedUid:
    """A UID source that hands out the SOP Instance UID a series was given when it opened."""

    def __init__(self, uid):
        self.uid = uid

    def new(self):
        return self.uid


def _resends(source):
    """True for sources that resend a frame until it is acknowledged, so a frame seen again may
    be one already stored: the frame protocol's (docs/frame-protocol.md) and the file drop's
    (a file is taken again when the power went before it was removed). Not the test pattern:
    each of its frames is a new acquisition."""
    for prefix in ("tcp:", "uart", "file:"):
        if source.startswith(prefix):
            return True
    return False


def _wall_seconds():
    return clock.epoch_seconds() if clock.is_set() else None


def _layout_for(header):
    try:
        return pixels.layout(
            header["pixel_format"], header["width"], header["height"], header.get("bits_stored")
        )
    except EncodeError as exc:
        raise FrameError(str(exc), NAK_REFUSED)


# A series becomes the multi-frame member of the configured IOD's family (PS3.3 A.8.2-A.8.5, A.7).
_MULTI_FRAME_OF = {
    ("sc", "GRAY8"): "mf-gray8",
    ("sc", "GRAY16"): "mf-gray16",
    ("sc", "RGB888"): "mf-rgb",
    ("sc", "RGB565"): "mf-rgb",
    ("sc", "YUYV"): "mf-rgb",
    ("us", "GRAY8"): "us-mf",
    ("us", "RGB888"): "us-mf",
    ("us", "RGB565"): "us-mf",
    ("us", "YUYV"): "us-mf",
}


def _choose_iod(configured, header, multi_frame):
    fmt = header["pixel_format"]
    name = _MULTI_FRAME_OF.get((configured, fmt), configured) if multi_frame else configured
    try:
        iods.choose(name, fmt, multi_frame)
    except EncodeError as exc:
        raise FrameError(str(exc), NAK_REFUSED)
    return name


def _meta(iod_name, writer, context):
    return {
        "iod": iod_name,
        "sop_class_uid": iods.IODS[iod_name]["sop_class_uid"],
        # What the object carries, so a routing rule on "modality" matches the written value.
        "modality": writer.modality,
        "series_uid": context.get("series_instance_uid", ""),
        "study_uid": context.get("study_instance_uid", ""),
    }
