"""Attribute tables of the IODs in iods.py (PS3.3 Annex A modules) and the merge that turns them
into the elements of one object; used through `iods.attributes` (documented there)."""

from modgate.dicom import vr
from modgate.errors import EncodeError

# One element a line: tag, VR, source. Source: @name = computed below (left out when None);
# 'text = constant; key or key=default = context value ("" when missing: Type 2 empty);
# ?key = only when given (Type 3); !key = required (Type 1): EncodeError naming the key when missing.
# Context values are checked by modgate.dicom.vr (refused, never changed). An SQ value is its
# items, encoded (modgate.dicom.dataset) in base64, from a worklist item whose values
# modgate.worklist checked the same way when it was selected or named.
# Patient (C.7.1.1), General Study (C.7.2.1), General Series (C.7.3.1), General Equipment (C.7.5.1),
# General Image (C.7.6.1), Image Pixel (C.7.6.3), SOP Common (C.12.1).
_COMMON = """00080008 CS @image_type
00080012 DA @da
00080013 TM @tm
00080016 UI @sop_class
00080018 UI @sop_instance
00080020 DA @study_da
00080023 DA @da
00080030 TM @study_tm
00080033 TM @tm
00080050 SH accession_number
00080060 CS @modality
00080070 LO 'modgate
00080080 LO ?institution_name
00080090 PN referring_physician
00080201 SH @tz
00081010 SH ?station_name
00081030 LO ?study_description
00081032 SQ ?procedure_codes
0008103E LO ?series_description
00081090 LO model_name=modgate
00081110 SQ ?referenced_studies
00081111 SQ ?referenced_pps
00100010 PN patient_name
00100020 LO patient_id
00100021 LO ?issuer_of_patient_id
00100030 DA patient_birth_date
00100040 CS patient_sex
00181000 LO device_serial
00181020 LO software_version
0020000D UI study_instance_uid
0020000E UI series_instance_uid
00200010 SH study_id
00200011 IS series_number=1
00200013 IS instance_number=1
00200020 CS patient_orientation
00280002 US @spp
00280004 CS @photometric
00280006 US @planar
00280010 US @rows
00280011 US @columns
00280034 IS @aspect
00280100 US @ba
00280101 US @bs
00280102 US @hb
00280103 US @pr
00400244 DA ?pps_start_date
00400245 TM ?pps_start_time
00400253 SH ?pps_id
00400260 SQ ?performed_protocol_codes
00400275 SQ ?request_attributes"""

_TABLES = {
    # General Series Laterality (C.7.3.1), Type 2C: see _laterality.
    "LAT": "00200060 CS @laterality",
    # Image Comments (General Image, Type 3) where no multi-frame table carries it.
    "IC": "00204000 LT ?image_comments",
    # Body Part Examined (General Series, Type 3); not for DX, whose Anatomic Region Sequence
    # would then need the body part's code (C.8.11.2), which the device does not have.
    "BP": "00180015 CS ?body_part",
    # Pixel Spacing where the IOD's image module allows it (Type 3: SC Image C.8.6.2, VL Image).
    "PS": "00280030 DS ?pixel_spacing",
    # Burned In Annotation: Type 3 (General Image), or Type 1 (SC Multi-frame Image C.8.6.3).
    "BIA": "00280301 CS ?burned_in_annotation",
    "BIA1": "00280301 CS !burned_in_annotation",
    # SC Equipment (C.8.6.1), SC Image (C.8.6.2).
    "SC": """00080064 CS !conversion_type
00181012 DA @da
00181014 TM @tm
00181016 LO 'modgate
00181018 LO model_name=modgate
00181019 LO software_version""",
    # Cine (C.7.6.5) or SC Multi-frame Vector (C.8.6.4), and Multi-frame (C.7.6.6): frames advance
    # by Frame Time (nominal) or Frame Time Vector (measured). Image Comments (present, empty when
    # none was given) sits between them and the pointer so the writer can shrink them in place.
    "MF": """00181063 DS @frame_time
00181065 DS @frame_time_vector
00204000 LT image_comments
00280008 IS '1
00280009 AT @frame_pointer""",
    # SC Multi-frame Image (C.8.6.3), grayscale.
    "MFG": """00281052 DS '0
00281053 DS '1
00281054 LO 'US
20500020 CS 'IDENTITY""",
    # DX Series (C.8.11.1), DX Anatomy Imaged (C.8.11.2), DX Image (C.8.11.3), DX Detector (C.8.11.4),
    # VOI LUT (C.11.2, required For Presentation), Acquisition Context (C.7.6.14).
    "DX": """00080068 CS 'FOR PRESENTATION
00082218 SQ @empty
00181164 DS !pixel_spacing
00187004 CS detector_type
00200062 CS !laterality
00280301 CS !burned_in_annotation
00281040 CS pixel_intensity_relationship=LIN
00281041 SS @one
00281050 DS @window_center
00281051 DS @window_width
00281052 DS '0
00281053 DS '1
00281054 LO 'US
00282110 CS '00
00400555 SQ @empty
20500020 CS 'IDENTITY""",
    # VL Image (C.8.12.1), Acquisition Context (C.7.6.14).
    "VL": """00282110 CS '00
00400555 SQ @empty""",
}

def local_time(now, offset):
    """`now` (UTC Y, M, D, h, m, s) moved by Timezone Offset From UTC `offset` ("+0100")."""
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    if offset[0] == "-":
        minutes = -minutes
    if not minutes:
        return now
    # Days from 1970-01-01 (civil calendar, proleptic Gregorian), then back.
    y, m, d = now[0], now[1], now[2]
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    total = days * 1440 + now[3] * 60 + now[4] + minutes
    days, rest = total // 1440, total % 1440
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y = yoe + era * 400
    if m <= 2:
        y += 1
    return (y, m, d, rest // 60, rest % 60, now[5])


# Context values that computed elements use (the table lines check the others as they go).
_CHECKED = ("frame_time_ms", "pixel_aspect_ratio", "laterality", "study_date", "study_time", "modality")


def _laterality(ctx):
    """General Series Laterality, Type 2C (C.7.3.1): required for a paired body part. R or L when
    known; absent when the source says the body part is unpaired (U) and names it; otherwise
    present and empty: whether the part is paired is not known, so neither is the side."""
    side = ctx.get("laterality") or ""
    if side in ("R", "L"):
        return side
    if side == "U" and ctx.get("body_part"):
        return None
    return ""


def _computed(iod_name, iod, lay, ctx, sop_instance_uid):
    for key in _CHECKED:
        value = ctx.get(key)
        why = value and vr.field_problem(key, str(value))
        if why:
            raise EncodeError(why)
    offset = ctx.get("tz") or "+0000"
    if vr.tz_problem(offset):
        raise EncodeError("tz: " + vr.tz_problem(offset))
    now = local_time(ctx.get("now") or (2000, 1, 1, 0, 0, 0), offset)
    started = local_time(ctx.get("study_started") or ctx.get("now") or (2000, 1, 1, 0, 0, 0), offset)
    tables = iod["tables"].split()
    top = 1 << lay.bits_stored
    if iod_name == "dx" and not ctx.get("patient_orientation"):
        raise EncodeError("dx needs patient_orientation (Type 1C, PS3.3 C.8.11.3)")
    multi = iod["multi_frame"]
    frame_time = ctx.get("frame_time_ms")
    capacity = ctx.get("max_frames")
    if multi and not frame_time and not capacity:
        raise EncodeError("multi-frame needs frame_time_ms, or max_frames with arrival times")
    spacing = ctx.get("pixel_spacing") and ("PS" in tables or "DX" in tables)
    aspect = ctx.get("pixel_aspect_ratio") or ""
    if spacing or not aspect or len(set(int(v) for v in aspect.split("\\"))) == 1:
        aspect = None  # Type 1C (C.7.6.3): only when not 1:1 and no pixel spacing is given
    return {
        # DX Image Type has an empty third value (PS3.3 C.8.11.3.1.1).
        "image_type": "DERIVED\\SECONDARY" if "SC" in tables else (
            "ORIGINAL\\PRIMARY\\" if iod_name == "dx" else "ORIGINAL\\PRIMARY"),
        "da": "%04d%02d%02d" % (now[0], now[1], now[2]),
        "tm": "%02d%02d%02d" % (now[3], now[4], now[5]),
        "study_da": ctx.get("study_date") or "%04d%02d%02d" % (started[0], started[1], started[2]),
        "study_tm": ctx.get("study_time") or "%02d%02d%02d" % (started[3], started[4], started[5]),
        "tz": offset,
        "sop_class": iod["sop_class_uid"],
        "sop_instance": sop_instance_uid,
        "modality": modality(iod, ctx),
        "spp": lay.samples_per_pixel,
        "photometric": lay.photometric,
        "planar": lay.planar_configuration,
        "rows": lay.height,
        "columns": lay.width,
        "aspect": aspect,
        "ba": lay.bits_allocated,
        "bs": lay.bits_stored,
        "hb": lay.high_bit,
        "pr": lay.pixel_representation,
        "laterality": _laterality(ctx),
        "frame_time": str(frame_time) if frame_time else None,
        "frame_time_vector": None if frame_time else capacity,
        "frame_pointer": (0x0018, 0x1063) if frame_time else (0x0018, 0x1065),
        "empty": b"",
        "one": 1,
        "window_center": str(top // 2),
        "window_width": str(top),
    }


def modality(iod, ctx):
    """Modality (0008,0060) as written: the SC IODs take the source's, the others fix their own."""
    if "SC" in iod["tables"].split():
        return ctx.get("modality") or "OT"
    return iod["modality"]


def _value(line, computed, ctx):
    """The value of one table line, or None when the element is to be left out."""
    src = line[12:]
    first = src[0]
    if first == "@":
        return computed[src[1:]]
    if first == "'":
        return src[1:]
    key, _, default = src.partition("=")
    if first in "?!":
        key = key[1:]
    value = ctx.get(key)
    if value is None or value == "":
        if first == "!":
            raise EncodeError("%s is required for this IOD (Type 1): set it for the source" % key)
        return None if first == "?" else default
    if line[9:11] == "SQ":
        return value
    value = str(value)
    if vr.field_vr(key) is not None:
        why = vr.field_problem(key, value)
        if why:
            raise EncodeError(why)
    elif vr.problem(line[9:11], value):
        raise EncodeError("%s: %s" % (key, vr.problem(line[9:11], value)))
    return value


def attributes(iod, iod_name, lay, ctx, sop_instance_uid):
    """Yield (tag, vr, value) in ascending tag order: a merge of the IOD's tables, each sorted, so
    no list of the whole data set is ever built."""
    for key in ("study_instance_uid", "series_instance_uid"):
        if not ctx.get(key):
            raise EncodeError("context has no %s (Type 1)" % key)
    computed = _computed(iod_name, iod, lay, ctx, sop_instance_uid)
    # One cursor per table: [next tag, table text, offset of the line].
    cursors = []
    for table in [_COMMON] + [_TABLES[name] for name in iod["tables"].split()]:
        cursors.append([int(table[:8], 16), table, 0])
    while cursors:
        best = cursors[0]
        for c in cursors:
            if c[0] < best[0]:
                best = c
        table = best[1]
        start = best[2]
        end = table.find("\n", start)
        if end < 0:
            end = len(table)
            cursors.remove(best)
        else:
            best[0] = int(table[end + 1:end + 9], 16)
            best[2] = end + 1
        line = table[start:end]
        value = _value(line, computed, ctx)
        if value is not None:
            yield int(line[:8], 16), line[9:11], value
