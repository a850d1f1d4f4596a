"""Acquisition sources: frame protocol v1 (frameproto, link, tcp), file drop, test pattern.

Every source delivers frames to one *sink* (modgate.acquire implements it). The contract:

sink.busy() -> int
    Milliseconds the source should wait before resending (spool full); 0 = accept frames now.
sink.begin_frame(header) -> target
    `header` is a dict: version (int), kind ("single" | "series_start" | "series_frame" |
    "series_end"), sequence (int; 0 for file drop), series_id, frame_index, width, height,
    pixel_format ("GRAY8" | "GRAY16" | "RGB888" | "RGB565" | "YUYV"), bits_stored,
    payload_length (bytes; 0 only on a bare series end), context (dict or None: patient_name,
    patient_id, accession_number, study_description, series_description, modality, ...),
    source (str: "tcp:HOST:PORT", "uart:/dev/ttyX", "file:NAME", "testpattern").
    Raise modgate.errors.FrameError(reason, code) to refuse the frame (code from
    frameproto NAK_*: NAK_REFUSED, NAK_SERIES, NAK_STORAGE, ...); the source drains it and NAKs.
    Raise modgate.errors.SpoolFull to answer BUSY (retry after 1 s) instead.
target.write(chunk)
    `chunk` is a memoryview of the next payload bytes, in order (rows top-down, packed as the
    pixel format says). It is only valid during the call: copy or write it out before returning.
    The sum of chunk lengths equals payload_length. Raising aborts the frame (NAK STORAGE).
sink.commit_frame(target) -> sop_instance_uid (str)
    The frame is complete and its CRC is right. Return only once it is durable (it then gets ACKed
    with that UID; for a series frame, the UID of the multi-frame object it went into).
    Raising FrameError NAKs the frame (its code), SpoolFull answers BUSY, anything else NAK
    STORAGE; the receiver then calls abort_frame(target).
sink.abort_frame(target)
    The frame is bad (CRC, truncation, timeout, write error, duplicate resend): leave nothing
    behind. Called at most once per target, never after commit_frame.
sink.source_lost(source_id)
    The stream `source_id` closed or went idle. Called on every close; the sink decides whether a
    series of that source is open and starts its series timeout.

File drop uses the same begin_frame / write / commit_frame path with a synthesised header
(kind "single", sequence 0), so one code path stores every frame.
"""
