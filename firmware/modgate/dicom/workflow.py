"""The data sets of the workflow services, written to Part 10 files on flash (dicom/dsfile.py):
the Storage Commitment request (PS3.4 J.3.2.1.1, Table J.3-1) and the Modality Performed
Procedure Step N-CREATE and N-SET (PS3.4 F.7.2, Table F.7.2-1; IHE RAD TF-2 RAD-6 and RAD-7).

- `commitment_request(stream, transaction_uid, refs)`: refs yields (SOP Class UID, SOP Instance
  UID); one item each, as they come.
- `mpps_create(stream, pps)`: the IN PROGRESS step. `pps` is the record the device keeps on
  flash for it (modgate.mpps): uid, pps_id, start (UTC Y, M, D, h, m, s), tz, ae_title,
  station_name, modality, the patient fields, study_id, study_instance_uid, accession_number,
  request (the worklist item's Request Attributes item, [(tag, vr, value)], or []),
  referenced_studies, procedure_codes, performed_protocol_codes (items), description,
  type_description.
- `mpps_set(stream, pps, status, end, reason, comments, series, charset)`: COMPLETED or
  DISCONTINUED at `end` (UTC), with a reason key of DISCONTINUATION_REASONS; `series` yields
  (Series Instance UID, series description, protocol name, refs) and refs (SOP Class UID, SOP
  Instance UID): the Performed Series Sequence is written as they come.
Values are the device's own or were checked when they entered it (modgate.dicom.vr).
"""

from modgate.dicom.dsfile import DatasetFile

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"  # as modgate.net (dicom/ imports nothing of net/)
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
MPPS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class (PS3.4 F.7)

# `study discontinue REASON`: CID 9300 Procedure Discontinuation Reasons (PS3.16), scheme DCM.
DISCONTINUATION_REASONS = (
    ("doctor", "110500", "Doctor canceled procedure"),
    ("equipment", "110501", "Equipment failure"),
    ("wrong-procedure", "110502", "Incorrect procedure ordered"),
    ("allergy", "110503", "Patient allergic to media/contrast"),
    ("died", "110504", "Patient died"),
    ("refused", "110505", "Patient refused to continue procedure"),
    ("treatment", "110506", "Patient taken for treatment or surgery"),
    ("no-show", "110507", "Patient did not arrive"),
    ("pregnant", "110508", "Patient pregnant"),
    ("duplicate", "110510", "Duplicate order"),
    ("wrong-side", "110512", "Incorrect side ordered"),
    ("unspecified", "110513", "Discontinued for unspecified reason"),
    ("wrong-worklist", "110514", "Incorrect worklist entry selected"),
    ("condition", "110515", "Patient condition prevented continuing"),
)

_REFERENCED_SOP = 0x00081199
_TRANSACTION_UID = 0x00081195
_CLASS = 0x00081150
_INSTANCE = 0x00081155
_STEP_SEQUENCE = 0x00400270
_SERIES_SEQUENCE = 0x00400340
_IMAGE_SEQUENCE = 0x00081140
# The Scheduled Step Attributes item (Table F.7.2-1), ascending: what a worklist item's Request
# Attributes item gives, the rest sent empty (Type 2). An unscheduled step has only the UID.
_STEP = ((0x00080050, "SH"), (0x00081110, "SQ"), (0x0020000D, "UI"), (0x00321060, "LO"),
         (0x00400007, "LO"), (0x00400008, "SQ"), (0x00400009, "SH"), (0x00401001, "SH"))


def reason(key):
    """(code value, code meaning) of a discontinuation reason key, or None."""
    for name, value, meaning in DISCONTINUATION_REASONS:
        if name == key:
            return value, meaning
    return None


def commitment_request(stream, transaction_uid, refs):
    out = DatasetFile(stream, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE)
    out.elements(((_TRANSACTION_UID, "UI", transaction_uid),))
    out.begin_sequence(_REFERENCED_SOP)
    count = 0
    for sop_class, sop_instance in refs:
        out.item(((_CLASS, "UI", sop_class), (_INSTANCE, "UI", sop_instance)))
        count += 1
    out.end_sequence()
    return count


def _charset(values):
    # PS3.3 C.12.1.1.2: UTF-8 (ISO_IR 192) whenever a value is not ASCII, as in the objects.
    for value in values:
        if isinstance(value, str):
            for ch in value:
                if ord(ch) > 127:
                    return [(0x00080005, "CS", "ISO_IR 192")]
        elif isinstance(value, list):
            inner = [v for item in value for _, _, v in item]
            if _charset(inner):
                return [(0x00080005, "CS", "ISO_IR 192")]
    return []


def _date_time(when, tz):
    from modgate.dicom.attrs import local_time  # MPPS only: a commitment request needs no dates

    t = local_time(when, tz or "+0000")
    return "%04d%02d%02d" % (t[0], t[1], t[2]), "%02d%02d%02d" % (t[3], t[4], t[5])


def _step_item(pps):
    given = {}
    for tag, vr, value in pps.get("request") or ():
        given[tag] = value
    given[0x0020000D] = pps["study_instance_uid"]
    if pps.get("accession_number") and not given.get(0x00080050):
        given[0x00080050] = pps["accession_number"]
    if pps.get("referenced_studies"):
        given[0x00081110] = pps["referenced_studies"]
    item = []
    for tag, vr in _STEP:
        value = given.get(tag)
        item.append((tag, vr, value if value else ([] if vr == "SQ" else "")))
    return item


def mpps_create(stream, pps):
    date, time = _date_time(pps["start"], pps.get("tz"))
    top = [
        (0x00080060, "CS", pps["modality"]),
        (0x00081032, "SQ", pps.get("procedure_codes") or []),
        (0x00081120, "SQ", []),  # Referenced Patient Sequence: Type 2, no patient instance known
        (0x00100010, "PN", pps.get("patient_name") or ""),
        (0x00100020, "LO", pps.get("patient_id") or ""),
    ]
    if pps.get("issuer_of_patient_id"):
        top.append((0x00100021, "LO", pps["issuer_of_patient_id"]))
    top += [
        (0x00100030, "DA", pps.get("patient_birth_date") or ""),
        (0x00100040, "CS", pps.get("patient_sex") or ""),
        (0x00200010, "SH", pps.get("study_id") or ""),
        (0x00400241, "AE", pps["ae_title"]),
        (0x00400242, "SH", pps.get("station_name") or ""),
        (0x00400243, "SH", ""),  # Performed Location: Type 2, not known to the device
        (0x00400244, "DA", date),
        (0x00400245, "TM", time),
        (0x00400250, "DA", ""),  # End Date and Time: Type 2, empty until the N-SET
        (0x00400251, "TM", ""),
        (0x00400252, "CS", "IN PROGRESS"),
        (0x00400253, "SH", pps["pps_id"]),
        (0x00400254, "LO", pps.get("description") or ""),
        (0x00400255, "LO", pps.get("type_description") or ""),
        (0x00400260, "SQ", pps.get("performed_protocol_codes") or []),
        (_STEP_SEQUENCE, "SQ", [_step_item(pps)]),
        (_SERIES_SEQUENCE, "SQ", []),  # Type 2 in the N-CREATE: filled by the N-SET
    ]
    out = DatasetFile(stream, MPPS, pps["uid"])
    out.elements(_charset([v for _, _, v in top]) + top)


def mpps_set(stream, pps, status, end, reason_key, comments, series, charset):
    """`charset`: True when a series description or the comments are not ASCII (the caller
    knows it from what it stored, without reading every reference twice)."""
    date, time = _date_time(end, pps.get("tz"))
    out = DatasetFile(stream, MPPS, pps["uid"])
    head = [(0x00080005, "CS", "ISO_IR 192")] if charset or _charset([comments]) else []
    head += [(0x00400250, "DA", date), (0x00400251, "TM", time), (0x00400252, "CS", status)]
    if comments:
        head.append((0x00400280, "ST", comments))
    code = reason(reason_key) if status == "DISCONTINUED" else None
    if code is not None:
        head.append((0x00400281, "SQ", [[(0x00080100, "SH", code[0]), (0x00080102, "SH", "DCM"),
                                         (0x00080104, "LO", code[1])]]))
    out.elements(head)
    out.begin_sequence(_SERIES_SEQUENCE)
    for series_uid, description, protocol, refs in series:
        out.begin_item()
        # Performed Series Sequence item (Table F.7.2-1), ascending tags.
        out.elements(((0x00080054, "AE", ""), (0x0008103E, "LO", description or ""), (0x00081050, "PN", ""),
                      (0x00081070, "PN", "")))
        out.begin_sequence(_IMAGE_SEQUENCE)
        for sop_class, sop_instance in refs:
            out.item(((_CLASS, "UI", sop_class), (_INSTANCE, "UI", sop_instance)))
        out.end_sequence()
        out.elements(((0x00181030, "LO", protocol), (0x0020000E, "UI", series_uid), (0x00400220, "SQ", [])))
        out.end_item()
    out.end_sequence()
