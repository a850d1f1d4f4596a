"""The Modality Worklist Information Model's attributes as the device uses them (PS3.4 K.6):
the C-FIND identifier it sends, a worklist item decoded from a response's identifier, and what
an item gives the objects (IHE RAD TF-2x Table A.1-2, Source MWL in the conformance statement).
Loaded by modgate.worklist when a query, a selection or an acquisition needs it, not at boot.

Public API:
- FIELDS: (key, tag, VR, level) of each field of a cached item, which is also a return key.
- `query_keys(station_aet, modality, date)` -> the identifier, [(tag, vr, value)] (dataset).
- `wanted()` -> the map modgate.dicom.dataset.read keeps of a response's identifier.
- `record(ds)` -> a cached item (JSON-able dict) of one decoded identifier.
- `context_of(item)` -> acquisition context fields; `sequences_of(item)` -> its sequences.
- `problem(item)` -> why the item cannot go into objects, or None.
"""

from modgate.dicom import charset, dataset

# key, tag, VR, level (0: the worklist item, 1: its Scheduled Procedure Step, (0040,0100)):
# the return keys of the query (IHE RAD TF-2 RAD-5, PS3.4 K.6.1.2.2) and the fields of a
# cached item. Tags ascend within each level, as the identifier needs them (PS3.5 7.1).
FIELDS = (
    ("accession_number", 0x00080050, "SH", 0),
    ("referring_physician", 0x00080090, "PN", 0),
    ("referenced_studies", 0x00081110, "SQ", 0),
    ("patient_name", 0x00100010, "PN", 0),
    ("patient_id", 0x00100020, "LO", 0),
    ("issuer_of_patient_id", 0x00100021, "LO", 0),
    ("patient_birth_date", 0x00100030, "DA", 0),
    ("patient_sex", 0x00100040, "CS", 0),
    ("study_instance_uid", 0x0020000D, "UI", 0),
    ("requested_procedure_description", 0x00321060, "LO", 0),
    ("requested_procedure_codes", 0x00321064, "SQ", 0),
    ("requested_procedure_id", 0x00401001, "SH", 0),
    ("modality", 0x00080060, "CS", 1),
    ("station_aet", 0x00400001, "AE", 1),
    ("scheduled_date", 0x00400002, "DA", 1),
    ("scheduled_time", 0x00400003, "TM", 1),
    ("performing_physician", 0x00400006, "PN", 1),
    ("scheduled_step_description", 0x00400007, "LO", 1),
    ("scheduled_protocol_codes", 0x00400008, "SQ", 1),
    ("scheduled_step_id", 0x00400009, "SH", 1),
)
SPS_SEQUENCE = 0x00400100
SPECIFIC_CHARACTER_SET = 0x00080005
_CODE = {0x00080100: True, 0x00080102: True, 0x00080103: True, 0x00080104: True}
_STUDY = {0x00081150: True, 0x00081155: True}
_TEXT = ("PN", "LO", "SH", "LT", "ST", "UC", "UT")


def wanted():
    sps = {}
    top = {SPECIFIC_CHARACTER_SET: True, SPS_SEQUENCE: sps}
    for key, tag, vr, level in FIELDS:
        sub = True if vr != "SQ" else (_STUDY if tag == 0x00081110 else _CODE)
        (sps if level else top)[tag] = sub
    return top



def query_keys(station_aet, modality, date):
    """The C-FIND identifier: every return key empty but the three matching keys (PS3.4
    K.6.1.2.2; empty sequences are universal: their items come back whole, C.2.2.2.6)."""
    sps = []
    top = []
    for key, tag, vr, level in FIELDS:
        value = [] if vr == "SQ" else ""
        if key == "station_aet":
            value = station_aet
        elif key == "modality":
            value = modality
        elif key == "scheduled_date":
            value = date
        (sps if level else top).append((tag, vr, value))
    top.append((SPS_SEQUENCE, "SQ", [sps]))
    top.sort(key=lambda e: e[0])
    return top


# ---- decoding a match --------------------------------------------------------------------------


def _text(raw, vr, charsets):
    if raw is None:
        return "", True
    # Padding (a space, or NUL after a UID) and insignificant spaces go before decoding (PS3.5 6.2).
    return charset.decode(bytes(raw).strip(b" \x00"), charsets if vr in _TEXT else [])


def _codes(items, charsets):
    out = []
    exact = True
    for item in items or ():
        code = []
        for tag in (0x00080100, 0x00080102, 0x00080103, 0x00080104):
            text, ok = _text(item.get(tag), "LO" if tag == 0x00080104 else "SH", charsets)
            code.append(text)
            exact = exact and ok
        if code[0]:
            out.append(code)
    return out, exact


def record(ds):
    """The cached item (a JSON-able dict) of one decoded identifier (dataset.read with wanted())."""
    raw_charset = ds.get(SPECIFIC_CHARACTER_SET)
    charsets = charset.terms(raw_charset)
    steps = ds.get(SPS_SEQUENCE) or [{}]
    rec = {}
    exact = True
    for key, tag, vr, level in FIELDS:
        where = steps[0] if level else ds
        if tag == 0x00081110:
            studies = []
            for item in where.get(tag) or ():
                studies.append([_text(item.get(t), "UI", [])[0] for t in (0x00081150, 0x00081155)])
            rec[key] = studies
            continue
        if vr == "SQ":
            rec[key], ok = _codes(where.get(tag), charsets)
        else:
            rec[key], ok = _text(where.get(tag), vr, charsets)
        exact = exact and ok
    rec["charset"] = "\\".join(charsets)
    if not exact:
        rec["escaped"] = True
    if len(steps) > 1:
        rec["steps"] = len(steps)  # PS3.4 K.6.1.2.2: one step per match; the first is used
    return rec


# ---- into objects: IHE RAD TF-2x Table A.1-2 (MWL attributes in the images) -------------------

# Flat context fields of an acquisition taken from an item (context key, item key).
_CONTEXT = (("patient_name", "patient_name"), ("patient_id", "patient_id"),
            ("issuer_of_patient_id", "issuer_of_patient_id"), ("patient_birth_date", "patient_birth_date"),
            ("patient_sex", "patient_sex"), ("accession_number", "accession_number"),
            ("referring_physician", "referring_physician"), ("study_instance_uid", "study_instance_uid"),
            ("study_description", "requested_procedure_description"), ("study_id", "requested_procedure_id"))


def _code_items(codes):
    """Code Sequence Macro items (PS3.3 Table 8.8-1) of [[value, scheme, version, meaning]]."""
    items = []
    for value, scheme, version, meaning in codes:
        item = [(0x00080100, "SH", value), (0x00080102, "SH", scheme)]
        if version:
            item.append((0x00080103, "SH", version))
        item.append((0x00080104, "LO", meaning))
        items.append(item)
    return items


def sequences_of(rec):
    """{context key: items} of the sequences an item gives the objects (modgate.dicom.attrs):
    Request Attributes, Procedure Code, Performed Protocol Code, Referenced Study."""
    out = {}
    request = []  # Request Attributes Macro (PS3.3 Table 10-9), ascending tags, empty ones left out
    for tag, vr, value in ((0x00080050, "SH", rec.get("accession_number")),
                           (0x0020000D, "UI", rec.get("study_instance_uid")),
                           (0x00321060, "LO", rec.get("requested_procedure_description")),
                           (0x00321064, "SQ", _code_items(rec.get("requested_procedure_codes") or ())),
                           (0x00400007, "LO", rec.get("scheduled_step_description")),
                           (0x00400008, "SQ", _code_items(rec.get("scheduled_protocol_codes") or ())),
                           (0x00400009, "SH", rec.get("scheduled_step_id")),
                           (0x00401001, "SH", rec.get("requested_procedure_id"))):
        if value:
            request.append((tag, vr, value))
    out["request_attributes"] = [request]
    if rec.get("requested_procedure_codes"):
        out["procedure_codes"] = _code_items(rec["requested_procedure_codes"])
    if rec.get("scheduled_protocol_codes"):
        # As scheduled: the device cannot know that another protocol was performed.
        out["performed_protocol_codes"] = _code_items(rec["scheduled_protocol_codes"])
    studies = [[(0x00081150, "UI", c), (0x00081155, "UI", i)] for c, i in rec.get("referenced_studies") or ()
               if c and i]
    if studies:
        out["referenced_studies"] = studies
    return out


def context_of(rec):
    """The acquisition context fields an item gives (modgate.contexts): patient and study, and
    its sequences encoded as the writer takes them (base64 of Explicit VR LE items: a context
    stays small, and JSON for a series' note)."""
    import binascii

    ctx = {}
    for key, source in _CONTEXT:
        if rec.get(source):
            ctx[key] = rec[source]
    sequences = sequences_of(rec)
    for key in sequences:
        out = bytearray()
        dataset.encode_items(out, sequences[key], True)
        ctx[key] = binascii.b2a_base64(out).decode().strip()
        if _not_ascii(sequences[key]):
            ctx["items_not_ascii"] = True  # the writer's Specific Character Set (its values are ASCII)
    return ctx


def _not_ascii(items):
    for item in items:
        for _, vr, value in item:
            if _not_ascii(value) if vr == "SQ" else any(ord(c) > 127 for c in value):
                return True
    return False


def _item_problem(items):
    from modgate.dicom import vr as vrs

    for item in items:
        for tag, vr, value in item:
            why = _item_problem(value) if vr == "SQ" else vrs.problem(vr, value)
            if why:
                return "(%04X,%04X) %s" % (tag >> 16, tag & 0xFFFF, why)
    return None


def problem(rec):
    """Why item `rec` cannot go into objects, or None: a value the objects' rules refuse
    (modgate.dicom.vr: refused, never changed), or text that could not be decoded."""
    from modgate.dicom import vr

    if rec.get("escaped"):
        return ("character set '%s' cannot be decoded here: its bytes are shown escaped; enter the "
                "patient by hand (patient next)" % rec.get("charset", ""))
    for key, source in _CONTEXT:
        value = rec.get(source)
        if value:
            why = vr.field_problem(key, value) if vr.field_vr(key) else vr.problem("LO", value)
            if why:
                return why
    sequences = sequences_of(rec)
    for key in sequences:
        why = _item_problem(sequences[key])
        if why:
            return key + ": " + why
    return None
