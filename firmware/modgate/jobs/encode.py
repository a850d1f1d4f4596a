"""Job `encode`: write one DICOM object from the deterministic test pattern (host `modgate encode`).

usage: main.py encode --iod NAME --format FMT --size WxH [--frames N] --out FILE [--bits-stored B]
       [--uid-root R] [--serial S] [--boot-count N] [--study-uid U] [--series-uid U] [--context JSON]
The pattern is synthetic (Conversion Type SYN, no burned-in annotation) and its multi-frame
objects run at a nominal 100 ms per frame; --context adds or replaces context values (for dx:
pixel_spacing and laterality, which a synthetic image cannot know).
Prints one JSON line: sop_instance_uid, bytes, seconds, frames, heap_used (bytes in use after the
object was written and the heap collected; null on CPython).
Exit 0 on success, 1 when the object cannot be made (the reason on stderr), 2 on usage errors.
"""

import gc
import sys

from modgate.errors import ModgateError

USAGE = "usage: main.py encode --iod NAME --format FMT --size WxH [--frames N] --out FILE [...]"
_OPTS = ("--iod", "--format", "--size", "--frames", "--out", "--bits-stored", "--uid-root", "--serial",
         "--boot-count", "--study-uid", "--series-uid", "--context")


def parse(argv):
    opts = {"--frames": "1", "--serial": "1"}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key not in _OPTS or i + 1 >= len(argv):
            raise ValueError("unknown or incomplete option " + key)
        opts[key] = argv[i + 1]
        i += 2
    for key in ("--iod", "--format", "--size", "--out"):
        if key not in opts:
            raise ValueError("missing " + key)
    w, _, h = opts["--size"].partition("x")
    opts["width"] = int(w)
    opts["height"] = int(h)
    opts["frames"] = int(opts["--frames"])
    if opts["frames"] < 1:
        raise ValueError("--frames must be at least 1")
    bits = opts.get("--bits-stored")
    opts["bits"] = int(bits) if bits else None
    if "--context" in opts:
        import json

        opts["context"] = json.loads(opts["--context"])
        if not isinstance(opts["context"], dict):
            raise ValueError("--context must be a JSON object")
    return opts


def run(opts):
    # Imported one by one with a collection before each: every module then compiles in an
    # unfragmented heap, which keeps the compiler's transient peak inside a 64 KB heap.
    gc.collect()
    from modgate.dicom import writer

    gc.collect()
    from modgate.dicom import attrs  # noqa: F401 - loaded now (iods.attributes), not mid-object

    gc.collect()
    from modgate.port import clock, fs

    gc.collect()
    from modgate.testpattern import Pattern

    gc.collect()
    from modgate.dicom import uids

    gc.collect()
    from modgate import VERSION
    from modgate.compat import ticks_diff, ticks_ms
    from modgate.dicom import iods, pixels

    lay = pixels.layout(opts["--format"], opts["width"], opts["height"], opts["bits"])
    gc.collect()
    pixels.converter(lay.fmt)  # loads the conversion kernels (native code) while the heap is tidy
    iods.choose(opts["--iod"], lay.fmt, opts["frames"] > 1)
    boot = opts.get("--boot-count")
    # Without a boot count, time makes a one-off job's UIDs differ from every earlier run.
    boot = int(boot) if boot else (clock.epoch_seconds() % 100000000) * 1000 + ticks_ms() % 1000
    gen = uids.UidGenerator(opts.get("--uid-root"), opts["--serial"], boot)
    ctx = {
        "patient_name": "TEST^PATTERN", "patient_id": "MODGATE-TEST", "study_id": "1",
        "study_instance_uid": opts.get("--study-uid") or gen.new(),
        "series_instance_uid": opts.get("--series-uid") or gen.new(),
        "model_name": "modgate", "device_serial": opts["--serial"], "software_version": VERSION,
        "station_name": "MODGATE", "now": clock.now(), "clock_set": clock.is_set(),
        "series_description": "modgate test pattern", "patient_orientation": "A\\F",
        "conversion_type": "SYN", "burned_in_annotation": "NO", "frame_time_ms": "100",
    }
    extra = opts.get("context") or {}
    for key in extra:
        ctx[key] = extra[key]
    pattern = Pattern(lay.fmt, lay.width, lay.height, opts["bits"])
    gc.collect()
    start = ticks_ms()
    f = fs.open_file(opts["--out"], "wb")
    try:
        w = writer.ObjectWriter(f, opts["--iod"], lay, ctx, gen)
        w.begin()
        for frame in range(opts["frames"]):
            for y in range(lay.height):
                pattern.write_row(y, frame, w.write_pixels)
            w.end_frame()
        uid = w.finish()
        fs.sync_file(f)
    finally:
        f.close()
    seconds = ticks_diff(ticks_ms(), start) / 1000
    gc.collect()
    used = gc.mem_alloc() if hasattr(gc, "mem_alloc") else None
    return {"sop_instance_uid": uid, "bytes": fs.size(opts["--out"]), "seconds": seconds,
            "frames": opts["frames"], "heap_used": used}


def main(argv):
    try:
        opts = parse(argv)
    except ValueError as exc:
        sys.stderr.write("encode: " + str(exc) + "\n" + USAGE + "\n")
        return 2
    try:
        result = run(opts)
    except (ModgateError, OSError) as exc:
        sys.stderr.write("encode: " + str(exc) + "\n")
        return 1
    import json

    print(json.dumps(result))
    return 0
