"""The IODs the device creates (PS3.3 Annex A) and the attributes each needs, as data.

Public API:
- `IODS`: name -> dict(sop_class_uid, title, multi_frame, formats, modality).
- `NAMES`: the IOD names in their fixed order (MicroPython's dicts keep none).
- `STORAGE_SOP_CLASSES`: every SOP Class UID the device can create, in NAMES order: the network
  layer proposes them, and so numbers its presentation contexts, in this order.
- `choose(iod_name, fmt, multi_frame)` -> the IODS entry; raises EncodeError("... not supported ...").
- `attributes(iod_name, layout, context, sop_instance_uid)` -> iterator of (tag, vr, value) in tag
  order, every element before Pixel Data. Values: str (text VRs, "" = empty), int (US/SS), tuple (AT),
  b"" (empty SQ). Number of Frames is written as a placeholder the writer patches.

The attribute tables (attrs.py) are text, one element a line: MicroPython compiles a text constant in
a few bytes of heap where the same table as tuples in code took tens of KB to compile.

Context keys (all optional; a missing Type 2 value is written empty): patient_name, patient_id,
patient_birth_date, patient_sex, accession_number, study_description, series_description,
referring_physician, study_instance_uid, series_instance_uid (Type 1: the caller must pass them),
study_id, series_number, instance_number, modality, station_name, institution_name, model_name,
device_serial, software_version, body_part, now=(Y, M, D, h, m, s), clock_set.
Modality-specific: conversion_type (SC, default "DI"), burned_in_annotation ("NO"),
frame_time_ms (multi-frame, default 100), image_comments (multi-frame, default "modgate"),
image_laterality (DX, default "U"), detector_type (DX, Type 2), patient_orientation (DX, required,
e.g. "A\\F"), imager_pixel_spacing (DX, "row\\col" mm, default "0.1\\0.1"),
pixel_intensity_relationship (DX, "LIN"), laterality (General Series, Type 2C, written empty).
Modality (SC IODs only, default "OT"); the modality IODs fix their own (DX, US, XC).
"""

from modgate.errors import EncodeError

_ALL = ("GRAY8", "GRAY16", "RGB888", "RGB565", "YUYV")
# US: 8 bits per sample; uncompressed colour only as RGB (PS3.3 C.8.5.6.1.2, .1.3), so no YUYV.
_US_FORMATS = ("GRAY8", "RGB888", "RGB565")


def _iod(uid, title, multi_frame, formats, modality, tables):
    return {"sop_class_uid": uid, "title": title, "multi_frame": multi_frame, "formats": formats,
            "modality": modality, "tables": tables}


IODS = {
    "sc": _iod("1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image", False, _ALL, "OT", "SC"),
    "mf-gray8": _iod("1.2.840.10008.5.1.4.1.1.7.2", "Multi-frame Grayscale Byte Secondary Capture Image",
                     True, ("GRAY8",), "OT", "SC MF MFG"),
    "mf-gray16": _iod("1.2.840.10008.5.1.4.1.1.7.3", "Multi-frame Grayscale Word Secondary Capture Image",
                      True, ("GRAY16",), "OT", "SC MF MFG"),
    "mf-rgb": _iod("1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color Secondary Capture Image",
                   True, ("RGB888", "RGB565"), "OT", "SC MF"),
    "dx": _iod("1.2.840.10008.5.1.4.1.1.1.1", "Digital X-Ray Image - For Presentation", False,
               ("GRAY8", "GRAY16"), "DX", "DX"),
    "us": _iod("1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image", False, _US_FORMATS, "US", "LAT"),
    "us-mf": _iod("1.2.840.10008.5.1.4.1.1.3.1", "Ultrasound Multi-frame Image", True, _US_FORMATS, "US",
                  "LAT MF"),
    "vl-photo": _iod("1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image", False,
                     ("GRAY8", "RGB888", "RGB565"), "XC", "LAT VL"),
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


def attributes(iod_name, lay, ctx, sop_instance_uid):
    """See the module doc; the tables live in attrs.py, compiled only when an object begins."""
    from modgate.dicom import attrs

    return attrs.attributes(IODS[iod_name], iod_name, lay, ctx, sop_instance_uid)
