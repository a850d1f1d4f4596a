"""The IODs the device creates (PS3.3 Annex A) and the attributes each needs, as data.

Public API:
- `IODS`: name -> dict(sop_class_uid, title, multi_frame, formats, modality).
- `NAMES`: the IOD names in their fixed order (MicroPython's dicts keep none).
- `STORAGE_SOP_CLASSES`: every SOP Class UID the device can create, in NAMES order: the network
  layer proposes them, and so numbers its presentation contexts, in this order.
- `choose(iod_name, fmt, multi_frame)` -> the IODS entry; raises EncodeError("... not supported ...").
- `check(iod_name, layout, context)`: raises the EncodeError `attributes` would (a missing Type 1
  value, a value the tables refuse).
- `modality(iod_name, context)` -> the Modality (0008,0060) an object of that IOD gets.
- `attributes(iod_name, layout, context, sop_instance_uid)` -> iterator of (tag, vr, value) in tag
  order, every element before Pixel Data. Values: str (text VRs, "" = empty), int (US/SS), tuple (AT),
  b"" (empty SQ). Number of Frames is written as a placeholder the writer patches.

The attribute tables (attrs.py) are text, one element a line: MicroPython compiles a text constant in
a few bytes of heap where the same table as tuples in code took tens of KB to compile.

Context keys (a missing Type 2 value is written empty; every value is checked by modgate.dicom.vr
and refused, never changed): patient_name, patient_id, patient_birth_date, patient_sex,
accession_number, referring_physician, study_instance_uid, series_instance_uid (Type 1: the caller
must pass them), study_id, study_date, study_time (else the clock at `study_started`),
study_description, series_description, series_number, instance_number, modality (SC IODs only,
default "OT"; the others fix their own: DX, US, XC), body_part (not for dx), laterality (R, L, or
U = unpaired, B = both; dx: required), station_name, institution_name, model_name, device_serial,
software_version, patient_orientation ("row\\col", dx: required), image_comments,
now=(Y, M, D, h, m, s) UTC, study_started (the same, for Study Date/Time), tz (Timezone Offset
From UTC, "+0100"; DA/TM are written in that zone), clock_set.
Acquisition facts: burned_in_annotation (YES/NO; required by mf-* and dx), conversion_type (SC:
required), pixel_spacing ("row\\col" mm; dx: required, as Imager Pixel Spacing),
pixel_aspect_ratio ("row\\col", written only when not 1:1 and no spacing is known),
detector_type (dx), pixel_intensity_relationship (dx, default "LIN").
Multi-frame timing, one of: frame_time_ms (nominal Frame Time), or max_frames (the most frames
the object may get): the writer then reserves a Frame Time Vector and each end_frame(ms) fills
the next value with that frame's arrival time after the previous one.
"""

from modgate.errors import EncodeError

_ALL = ("GRAY8", "GRAY16", "RGB888", "RGB565", "YUYV")
# US: 8 bits per sample; uncompressed colour only as RGB (PS3.3 C.8.5.6.1.2, .1.3): YUYV is
# converted to RGB, so it qualifies like the other colour formats.
_US_FORMATS = ("GRAY8", "RGB888", "RGB565", "YUYV")


def _iod(uid, title, multi_frame, formats, modality, tables):
    return {"sop_class_uid": uid, "title": title, "multi_frame": multi_frame, "formats": formats,
            "modality": modality, "tables": tables}


IODS = {
    "sc": _iod("1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image", False, _ALL, "OT",
               "SC LAT BP IC PS BIA"),
    "mf-gray8": _iod("1.2.840.10008.5.1.4.1.1.7.2", "Multi-frame Grayscale Byte Secondary Capture Image",
                     True, ("GRAY8",), "OT", "SC LAT BP MF PS BIA1 MFG"),
    "mf-gray16": _iod("1.2.840.10008.5.1.4.1.1.7.3", "Multi-frame Grayscale Word Secondary Capture Image",
                      True, ("GRAY16",), "OT", "SC LAT BP MF PS BIA1 MFG"),
    "mf-rgb": _iod("1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color Secondary Capture Image",
                   True, ("RGB888", "RGB565", "YUYV"), "OT", "SC LAT BP MF PS BIA1"),
    "dx": _iod("1.2.840.10008.5.1.4.1.1.1.1", "Digital X-Ray Image - For Presentation", False,
               ("GRAY8", "GRAY16"), "DX", "DX IC"),
    "us": _iod("1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image", False, _US_FORMATS, "US", "LAT BP IC BIA"),
    "us-mf": _iod("1.2.840.10008.5.1.4.1.1.3.1", "Ultrasound Multi-frame Image", True, _US_FORMATS, "US",
                  "LAT BP MF BIA"),
    "vl-photo": _iod("1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image", False,
                     ("GRAY8", "RGB888", "RGB565", "YUYV"), "XC", "LAT BP IC PS BIA VL"),
}

# Anything whose order reaches the wire iterates this tuple, never the IODS dict.
NAMES = ("sc", "mf-gray8", "mf-gray16", "mf-rgb", "dx", "us", "us-mf", "vl-photo")
STORAGE_SOP_CLASSES = tuple(IODS[name]["sop_class_uid"] for name in NAMES)

# Number of Frames (IS) is written this wide so finish() can patch it in place (PS3.5 6.2: IS <= 12).
FRAMES_FIELD = 10

def choose(iod_name, fmt, multi_frame):
    iod = IODS.get(iod_name)
    if iod is None:
        raise EncodeError("IOD %s is not supported (one of %s)" % (iod_name, ", ".join(NAMES)))
    if fmt not in iod["formats"]:
        raise EncodeError("%s input is not supported by %s (%s accepts %s)" % (
            fmt, iod_name, iod["title"], ", ".join(iod["formats"])))
    if multi_frame and not iod["multi_frame"]:
        raise EncodeError("multi-frame is not supported by %s (%s is single-frame)" % (
            iod_name, iod["title"]))
    return iod


def modality(iod_name, ctx):
    from modgate.dicom import attrs

    return attrs.modality(IODS[iod_name], ctx)


def check(iod_name, lay, ctx):
    """Raise EncodeError when an `iod_name` object cannot be written with `ctx` (a dry run)."""
    for _ in attributes(iod_name, lay, ctx, "1.2"):
        pass


def attributes(iod_name, lay, ctx, sop_instance_uid):
    """See the module doc; the tables live in attrs.py, compiled only when an object begins."""
    from modgate.dicom import attrs

    return attrs.attributes(IODS[iod_name], iod_name, lay, ctx, sop_instance_uid)
