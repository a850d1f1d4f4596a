"""From acquired frames to durable DICOM objects in the spool: the sink every input source feeds.

Single frames are encoded straight into a spool temp file and committed (durable) before the
source gets its ACK. Frames of a series are staged one file per frame in `series/<n>/`, each
synced and renamed before its ACK, and the multi-frame object is assembled from them when the
series ends, times out, or at the next boot. So an acknowledged frame survives a power cut at any
instant, and a frame whose CRC failed leaves nothing behind (its staging temp file is removed).
"""

import json

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.dicom import iods, pixels
from modgate.dicom.writer import ObjectWriter
from modgate.errors import EncodeError, FrameError, ModgateError, SpoolFull
from modgate.ingest.frameproto import NAK_REFUSED, NAK_SERIES, NAK_STORAGE
from modgate.port import fs

_COPY_CHUNK = 4096


class _SingleTarget:
    """A frame being encoded straight into its own spool object."""

    def __init__(self, spool, incoming, stream, writer, meta):
        self.spool = spool
        self.incoming = incoming
        self.stream = stream
        self.writer = writer
        self.meta = meta

    def write(self, chunk):
        self.writer.write_pixels(chunk)

    def commit(self):
        self.writer.end_frame()
        uid = self.writer.finish()
        self.stream.close()
        self.spool.commit(self.incoming, uid, self.meta)
        return uid

    def abort(self):
        try:
            self.stream.close()
        except OSError:
            pass
        self.spool.abort(self.incoming)


class _SeriesFrameTarget:
    """One frame of a series, staged in its own file until the series closes."""

    def __init__(self, series, index):
        self.series = series
        self.index = index
        self.tmp = fs.join(series.folder, "frame.tmp")
        self.stream = fs.open_file(self.tmp, "wb")
        self.written = 0

    def write(self, chunk):
        self.stream.write(chunk)
        self.written += len(chunk)

    def commit(self):
        if self.written != self.series.layout.input_frame_bytes:
            self.abort()
            raise FrameError(
                "frame has %d bytes, expected %d" % (self.written, self.series.layout.input_frame_bytes)
            )
        fs.sync_file(self.stream)
        self.stream.close()
        # issue 16: the frame's arrival after the previous one (ms) rides in its name, so the
        # Frame Time Vector survives a restart (_frame_increments).
        now = ticks_ms()
        gap = ticks_diff(now, self.series.touched) if self.index else 0
        fs.rename(self.tmp, fs.join(self.series.folder, "f%06d-%d.raw" % (self.index, gap)))
        fs.sync_dir(self.series.folder)
        self.series.frames += 1
        self.series.touched = now
        return self.series.sop_instance_uid

    def abort(self):
        try:
            self.stream.close()
        except OSError:
            pass
        fs.remove(self.tmp)


class _SeriesEndTarget:
    """A bare series end marker (no payload): closes the series without adding a frame."""

    def __init__(self, series):
        self.series = series

    def write(self, chunk):
        if len(chunk):
            raise FrameError("a bare series end carries no pixels", NAK_SERIES)

    def commit(self):
        return self.series.sop_instance_uid

    def abort(self):
        pass


class _Series:
    def __init__(self, folder, info, layout):
        self.folder = folder
        self.info = info
        self.layout = layout
        self.sop_instance_uid = info["sop_instance_uid"]
        self.frames = 0
        self.touched = ticks_ms()


class Acquirer:
    """The sink of modgate.ingest: turns frames into spool objects. See the module docstring.

    `contexts` is the device's context provider: `contexts.for_acquisition(header_context)` returns
    the writer context (patient, study, equipment, clock) and `contexts.new_series_uid()`.
    """

    def __init__(self, spool, uid_gen, contexts, settings, state_dir):
        self.spool = spool
        self.uid_gen = uid_gen
        self.contexts = contexts
        self.settings = settings
        self.series_root = fs.join(state_dir, "series")
        fs.makedirs(self.series_root)
        self.open_series = {}
        self.single_series = {}
        # Reused for every series assembly: a fresh 4 KB block is hard to find in a fragmented heap.
        self._copy_buf = bytearray(_COPY_CHUNK)
        self._series_counter = 0
        self.objects_committed = 0
        self.frames_acked = 0

    # --- the sink interface (modgate.ingest) -------------------------------------------------
    def busy(self):
        return self.spool.busy()

    def begin_frame(self, header):
        if self.spool.busy():
            raise SpoolFull("spool above its high watermark")
        kind = header["kind"]
        if kind == "single" or self.settings.get("grouping") == "frame":
            return self._begin_single(header)
        return self._begin_series_frame(header)

    def commit_frame(self, target):
        try:
            uid = target.commit()
        except SpoolFull:
            target.abort()
            raise
        except (EncodeError, OSError) as exc:
            target.abort()
            raise FrameError("frame not stored: " + str(exc), NAK_STORAGE)
        self.frames_acked += 1
        if isinstance(target, _SingleTarget):
            self.objects_committed += 1
        elif target.series.info.get("end_seen") and target.series.info["series_key"] in self.open_series:
            self._close_series(target.series, "series end marker")
        return uid

    def abort_frame(self, target):
        target.abort()

    def source_lost(self, source_id):
        prefix = str(source_id) + ":"
        for key in [k for k in self.single_series if k.startswith(prefix)]:
            del self.single_series[key]
        for series in self.open_series.values():
            if series.info.get("source") == source_id:
                log.warn(
                    "acquire",
                    "source %s lost with series %s open (%d frames); it closes after the series timeout"
                    % (source_id, series.info["series_key"], series.frames),
                )

    def tick(self):
        """Close series whose source went quiet for longer than the configured timeout."""
        timeout = self.settings.get("series_timeout_ms", 30000)
        now = ticks_ms()
        for series in list(self.open_series.values()):
            if ticks_diff(now, series.touched) >= timeout:
                log.warn(
                    "acquire",
                    "series %s timed out after %d frames; delivering what arrived"
                    % (series.info["series_key"], series.frames),
                )
                self._close_series(series, "timeout")

    def recover(self):
        """At boot: close every series left open by a power cut, with the frames that were acked."""
        for name in fs.listdir(self.series_root):
            folder = fs.join(self.series_root, name)
            fs.remove(fs.join(folder, "frame.tmp"))
            try:
                info = json.loads(fs.read_bytes(fs.join(folder, "series.json")))
            except (OSError, ValueError):
                log.warn("acquire", "discarding series folder %s without readable metadata" % name)
                _remove_folder(folder)
                continue
            layout = pixels.layout(info["format"], info["width"], info["height"], info.get("bits_stored"))
            series = _Series(folder, info, layout)
            series.frames = len(_frame_files(folder))
            self._close_series(series, "recovered after restart")

    # --- single frames ------------------------------------------------------------------------
    def _begin_single(self, header):
        layout = _layout_for(header)
        iod_name = _choose_iod(self.settings.get("iod", "sc"), header, multi_frame=False)
        context = self.contexts.for_acquisition(header.get("context"), header.get("source", ""))
        if not context.get("series_instance_uid"):
            uid, number = self._series_place(header, context)
            context["series_instance_uid"] = uid
            context["instance_number"] = str(number)
        incoming = self.spool.begin(layout.stored_frame_bytes + 4096)
        stream = fs.open_file(incoming.path, "wb")
        try:
            writer = ObjectWriter(stream, iod_name, layout, context, self.uid_gen)
            writer.begin()
        except (EncodeError, OSError) as exc:
            stream.close()
            self.spool.abort(incoming)
            raise FrameError(str(exc), NAK_REFUSED)
        meta = _meta(iod_name, writer, context)
        return _SingleTarget(self.spool, incoming, stream, writer, meta)

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
        key = str(header.get("source", "")) + ":" + str(header.get("series_id", 0))
        series = self.open_series.get(key)
        if header["kind"] == "series_end" and not header.get("payload_length"):
            if series is None:
                raise FrameError("series end for a series that is not open", NAK_SERIES)
            series.info["end_seen"] = True
            return _SeriesEndTarget(series)
        if header["kind"] == "series_start" and series is not None:
            log.warn("acquire", "series %s restarted before its end; closing the earlier one" % key)
            self._close_series(series, "restarted")
            series = None
        if series is None:
            series = self._open_series(key, header)
        elif (header["width"], header["height"], header["pixel_format"]) != (
            series.info["width"],
            series.info["height"],
            series.info["format"],
        ):
            raise FrameError("frame geometry differs from its series", NAK_SERIES)
        if header["kind"] == "series_end":
            series.info["end_seen"] = True
        return _SeriesFrameTarget(series, series.frames)

    def _open_series(self, key, header):
        layout = _layout_for(header)
        iod_name = _choose_iod(self.settings.get("iod", "sc"), header, multi_frame=True)
        context = self.contexts.for_acquisition(header.get("context"), header.get("source", ""))
        context["series_instance_uid"] = self.uid_gen.new()
        try:
            # issue 16: refuse now what the object could not carry (e.g. a Type 1 fact), not
            # after the frames were acknowledged.
            iods.check(iod_name, layout, _with_timing(context, 1))
        except EncodeError as exc:
            raise FrameError(str(exc), NAK_REFUSED)
        self._series_counter += 1
        folder = fs.join(self.series_root, "s%d-%d" % (ticks_ms(), self._series_counter))
        fs.makedirs(folder)
        info = {
            "series_key": key,
            "source": header.get("source", ""),
            "iod": iod_name,
            "format": header["pixel_format"],
            "width": header["width"],
            "height": header["height"],
            "bits_stored": header.get("bits_stored"),
            "context": context,
            "sop_instance_uid": self.uid_gen.new(),
        }
        fs.write_atomic(fs.join(folder, "series.json"), json.dumps(info).encode())
        series = _Series(folder, info, layout)
        self.open_series[key] = series
        log.info("acquire", "series %s opened as %s" % (key, info["sop_instance_uid"]))
        return series

    def _close_series(self, series, why):
        self.open_series.pop(series.info["series_key"], None)
        frames = _frame_files(series.folder)
        if not frames:
            log.info("acquire", "series %s closed (%s) with no frames" % (series.info["series_key"], why))
            _remove_folder(series.folder)
            return
        try:
            self._assemble(series, frames)
        except (ModgateError, OSError) as exc:
            # Keep the staged frames: the next boot tries again rather than losing acked frames.
            log.error("acquire", "series %s could not be assembled: %s" % (series.info["series_key"], exc))
            return
        log.info(
            "acquire",
            "series %s closed (%s): %d frames in %s"
            % (series.info["series_key"], why, len(frames), series.sop_instance_uid),
        )
        _remove_folder(series.folder)

    def _assemble(self, series, frames):
        info = series.info
        incoming = self.spool.begin(series.layout.stored_frame_bytes * len(frames) + 4096)
        stream = fs.open_file(incoming.path, "wb")
        buf = self._copy_buf
        view = memoryview(buf)
        context = _with_timing(info["context"], len(frames))
        try:
            writer = ObjectWriter(
                stream, info["iod"], series.layout, context, _FixedUid(info["sop_instance_uid"])
            )
            writer.begin()
            for name in frames:
                with fs.open_file(fs.join(series.folder, name), "rb") as frame:
                    while True:
                        n = frame.readinto(buf)
                        if not n:
                            break
                        writer.write_pixels(view[:n])
                writer.end_frame(_frame_increment(name))
            uid = writer.finish()
            stream.close()
        except (ModgateError, OSError):
            stream.close()
            self.spool.abort(incoming)
            raise
        self.spool.commit(incoming, uid, _meta(info["iod"], writer, context))
        self.objects_committed += 1


class _FixedUid:
    """A UID source that hands out the SOP Instance UID a series was given when it opened."""

    def __init__(self, uid):
        self.uid = uid

    def new(self):
        return self.uid


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


def _with_timing(context, frames):
    """issue 16: a series' objects advance by the source's nominal frame time when one is known,
    else by the frames' arrival times (a Frame Time Vector of `frames` values)."""
    if context.get("frame_time_ms"):
        return context
    timed = dict(context)
    timed["max_frames"] = frames
    return timed


def _frame_increment(name):
    """The arrival time (ms after the previous frame) in a staged frame's name "f000001-33.raw"."""
    _, dash, gap = name[:-4].partition("-")
    return int(gap) if dash and gap.isdigit() else None


def _meta(iod_name, writer, context):
    return {
        "iod": iod_name,
        "sop_class_uid": iods.IODS[iod_name]["sop_class_uid"],
        # What the object carries, so a routing rule on "modality" matches the written value.
        "modality": writer.modality,
        "series_uid": context.get("series_instance_uid", ""),
    }


def _frame_files(folder):
    return [n for n in fs.listdir(folder) if n.startswith("f") and n.endswith(".raw")]


def _remove_folder(folder):
    # issue 16: a few names at a time (fs.iterdir), not one sorted list of a long series' frames:
    # right after a big object was assembled the heap may have no block that large.
    while True:
        batch = []
        for name in fs.iterdir(folder):
            batch.append(name)
            if len(batch) == 16:
                break
        if not batch:
            break
        for name in batch:
            fs.remove(fs.join(folder, name))
    fs.rmdir(folder)
