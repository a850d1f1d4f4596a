"""Attribute tables of the IODs in iods.py (PS3.3 Annex A modules) and the merge that turns them
into the elements of one object; used through `iods.attributes` (documented there)."""

from modgate.errors import EncodeError

# One element a line: tag, VR, source. Source: @name = computed below; 'text = constant;
# key or key=default = context value ("" when missing: Type 2 empty); ?key = only when given (Type 3).
# Patient (C.7.1.1), General Study (C.7.2.1), General Series (C.7.3.1), General Equipment (C.7.5.1),
# General Image (C.7.6.1), Image Pixel (C.7.6.3), SOP Common (C.12.1).
_COMMON = """00080008 CS @image_type
00080012 DA @da
00080013 TM @tm
00080016 UI @sop_class
00080018 UI @sop_instance
00080020 DA @da
00080023 DA @da
00080030 TM @tm
00080033 TM @tm
00080050 SH accession_number
00080060 CS @modality
00080070 LO 'modgate
00080080 LO ?institution_name
00080090 PN referring_physician
00081010 SH ?station_name
00081030 LO ?study_description
0008103E LO ?series_description
00081090 LO model_name=modgate
00100010 PN patient_name
00100020 LO patient_id
00100030 DA patient_birth_date
00100040 CS patient_sex
00180015 CS ?body_part
00181000 LO device_serial
00181020 LO software_version
0020000D UI study_instance_uid
0020000E UI series_instance_uid
00200010 SH study_id
00200011 IS series_number=1
00200013 IS instance_number=1
00200020 CS @orientation
00280002 US @spp
00280004 CS @photometric
00280006 US @planar
00280010 US @rows
00280011 US @columns
00280100 US @ba
00280101 US @bs
00280102 US @hb
00280103 US @pr
00280301 CS burned_in_annotation=NO"""

_TABLES = {
    # General Series Laterality, Type 2C: unknown for a captured frame, so present and empty.
    "LAT": "00200060 CS laterality",
    # SC Equipment (C.8.6.1), SC Image (C.8.6.2).
    "SC": """00080064 CS conversion_type=DI
00181012 DA @da
00181014 TM @tm
00181016 LO 'modgate
00181018 LO model_name=modgate
00181019 LO software_version
00200060 CS laterality""",
    # Cine (C.7.6.5) and Multi-frame (C.7.6.6): frames advance by Frame Time.
    # Image Comments (General Image, Type 3) sits before them so a one-frame close can drop the pointer.
    "MF": """00181063 DS frame_time_ms=100
00204000 LT image_comments=modgate
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
00181164 DS imager_pixel_spacing=0.1\\0.1
00187004 CS detector_type
00200062 CS image_laterality=U
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


def _computed(iod_name, iod, lay, ctx, sop_instance_uid):
    now = ctx.get("now") or (2000, 1, 1, 0, 0, 0)
    sc = "SC" in iod["tables"]
    top = 1 << lay.bits_stored
    if iod_name == "dx" and not ctx.get("patient_orientation"):
        raise EncodeError("dx needs patient_orientation in the configuration (Type 1C, C.8.11.3)")
    return {
        "image_type": "DERIVED\\SECONDARY" if sc else "ORIGINAL\\PRIMARY",
        "da": "%04d%02d%02d" % (now[0], now[1], now[2]),
        "tm": "%02d%02d%02d" % (now[3], now[4], now[5]),
        "sop_class": iod["sop_class_uid"],
        "sop_instance": sop_instance_uid,
        "modality": (ctx.get("modality") or "OT") if sc else iod["modality"],
        # Patient Orientation: Type 2C, unknown for a captured frame; DX needs it (Type 1C).
        "orientation": (ctx.get("patient_orientation") or "") if iod_name == "dx" else "",
        "spp": lay.samples_per_pixel,
        "photometric": lay.photometric,
        "planar": lay.planar_configuration,
        "rows": lay.height,
        "columns": lay.width,
        "ba": lay.bits_allocated,
        "bs": lay.bits_stored,
        "hb": lay.high_bit,
        "pr": lay.pixel_representation,
        "frame_pointer": (0x0018, 0x1063),
        "empty": b"",
        "one": 1,
        "window_center": str(top // 2),
        "window_width": str(top),
    }


def _value(line, computed, ctx):
    """The value of one table line, or None when the element is to be left out."""
    src = line[12:]
    first = src[0]
    if first == "@":
        return computed[src[1:]]
    if first == "'":
        return src[1:]
    key, _, default = src.partition("=")
    if first == "?":
        key = key[1:]
    value = ctx.get(key)
    if value is None or value == "":
        return None if first == "?" else default
    return str(value)


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
