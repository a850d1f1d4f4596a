"""The one place where values from outside (frame context, console, settings) are checked before
they go into an object: by Value Representation (PS3.5 6.2, UIDs 9.1) and by the attribute's
enumerated values or defined terms (PS3.3). A bad value is refused with a reason, never changed.

Public API:
- `problem(vr, text, vm=1)` -> None when `text` is a valid value of `vr` with `vm` values
  (vm 0: any number), else a short reason ("not a date YYYYMMDD").
- `field_problem(key, value)` -> None or "key: reason" for a context field (FIELDS below).
- `check_field(key, value)` -> value; raises ValueError("key: reason").
- `field_vr(key)` -> the VR of a context field, or None when `key` is not one.
- `uid_problem(text)`, `date_problem(text)`, `tz_problem(text)`: the single-VR checks config uses.

Lengths are counted in bytes of the UTF-8 encoding: PS3.5 counts characters, but receivers
(dciodvfy among them) count bytes, and a value either fits for every receiver or is refused.
"""

# Context fields: key, VR, VM, then "=" and the enumerated values, or "@" and a rule name.
# PS3.3 sections: C.7.1.1 Patient, C.7.2.1 General Study, C.7.3.1 General Series, C.7.5.1
# General Equipment, C.7.6.1 General Image, C.7.6.3 Image Pixel, C.8.6.1 SC Equipment, C.8.11 DX.
FIELDS = """patient_name PN 1
patient_id LO 1
patient_birth_date DA 1
patient_sex CS 1 =M F O
accession_number SH 1
scheduled_step_id SH 1
referring_physician PN 1
study_instance_uid UI 1
series_instance_uid UI 1
study_id SH 1
study_date DA 1
study_time TM 1
study_description LO 1
series_description LO 1
modality CS 1 @modality
body_part CS 1
laterality CS 1 =R L U B
institution_name LO 1
station_name SH 1
patient_orientation CS 2 @orientation
image_comments LT 1
burned_in_annotation CS 1 =YES NO
conversion_type CS 1 =DV DI DF WSD SD SI DRW SYN
pixel_spacing DS 2 @positive
pixel_aspect_ratio IS 2 @positive
frame_time_ms DS 1 @positive
detector_type CS 1 =DIRECT SCINTILLATOR STORAGE FILM
pixel_intensity_relationship CS 1 =LIN LOG"""

# Modality (0008,0060) Defined Terms in use (PS3.3 C.7.3.1.1.1; retired terms are refused).
_MODALITIES = (" ANN AR ASMT AU BDUS BI BMD CFM CR CT CTPROTOCOL DG DMS DOC DX ECG EEG EMG EOG EPS ES"
               " FID GM HC HD IO IOL IVOCT IVUS KER KO LEN LS M3D MG MR NM OAM OCT OP OPM OPT OPTBSV"
               " OPTENF OPV OSS OT PA PLAN POS PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN"
               " RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA"
               " XAPROTOCOL XC ")

# Maximum value length in bytes (PS3.5 Table 6.2-1).
# DA, TM and UI have exact forms, checked with their own reasons below.
_MAX = {"AE": 16, "CS": 16, "DS": 16, "IS": 12, "LO": 64, "LT": 10240, "PN": 64, "SH": 16, "ST": 1024}
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _control(text, allowed=""):
    """True when `text` holds a control character (C0, DEL or C1) other than `allowed`."""
    for ch in text:
        o = ord(ch)
        if (o < 32 or 127 <= o < 160) and ch not in allowed:
            return True
    return False


def _ascii_digits(text):
    if not text:
        return False
    for ch in text:
        if ch < "0" or ch > "9":
            return False
    return True


def uid_problem(text):
    """PS3.5 9.1: digits and dots, no empty component, no leading zero, 64 characters at most,
    under one of the three ISO/ITU-T root arcs (0, 1, 2)."""
    if not text:
        return "empty UID"
    if len(text) > 64:
        return "UID longer than 64 characters"
    for part in text.split("."):
        if not _ascii_digits(part):
            return "UID is digits separated by single dots"
        if len(part) > 1 and part[0] == "0":
            return "UID component with a leading zero"
    if text[0] not in "012":
        return "UID must start with 0, 1 or 2"
    return None


def date_problem(text):
    """PS3.5 6.2 DA: YYYYMMDD, a real Gregorian calendar date."""
    if len(text) != 8 or not _ascii_digits(text):
        return "not a date YYYYMMDD"
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    if month < 1 or month > 12 or day < 1:
        return "not a calendar date YYYYMMDD"
    days = _DAYS[month - 1]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        days = 29
    if day > days:
        return "not a calendar date YYYYMMDD"
    return None


def _time_problem(text):
    """PS3.5 6.2 TM: HH[MM[SS[.F{1,6}]]], 00-23, 00-59, 00-60 (leap second)."""
    head, dot, frac = text.partition(".")
    if not _ascii_digits(head) or len(head) not in (2, 4, 6) or (dot and len(head) != 6):
        return "not a time HHMMSS"
    if dot and (not _ascii_digits(frac) or len(frac) > 6):
        return "not a time HHMMSS.FFFFFF"
    limits = (23, 59, 60)
    for i in range(0, len(head), 2):
        if int(head[i:i + 2]) > limits[i // 2]:
            return "not a time of day"
    return None


def tz_problem(text):
    """Timezone Offset From UTC (0008,0201), PS3.3 C.12.1.1.8: "&ZZXX", -1200 to +1400."""
    if len(text) != 5 or text[0] not in "+-" or not _ascii_digits(text[1:]):
        return "not an offset +HHMM or -HHMM"
    hours, minutes = int(text[1:3]), int(text[3:])
    total = hours * 60 + minutes
    if minutes > 59 or total > 14 * 60 or (text[0] == "-" and total > 12 * 60):
        return "offset outside -1200 to +1400"
    return None


def _number(text, integer):
    """The value of a DS (decimal, optional exponent) or IS string, or None when it is neither."""
    text = text.strip(" ")
    body = text[1:] if text[:1] in ("+", "-") else text
    if integer:
        return int(text) if _ascii_digits(body) else None
    mantissa, e, exponent = body.replace("e", "E").partition("E")
    whole, _, fraction = mantissa.partition(".")
    if not (whole or fraction) or (whole and not _ascii_digits(whole)) or (
            fraction and not _ascii_digits(fraction)):
        return None
    if e:
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not _ascii_digits(digits):
            return None
    return float(text)


def _one(vr, value):
    """The reason `value` (one value, no backslash) is not valid for `vr`, or None."""
    if vr == "CS":
        for ch in value:
            if not ("A" <= ch <= "Z" or "0" <= ch <= "9" or ch in " _"):
                return "code string: A-Z, 0-9, space and _ only"
    elif vr == "DA":
        return date_problem(value) if value else None
    elif vr == "TM":
        return _time_problem(value.rstrip(" ")) if value else None
    elif vr == "UI":
        return uid_problem(value) if value else None
    elif vr in ("DS", "IS"):
        if value.strip(" ") and _number(value, vr == "IS") is None:
            return "not a decimal number" if vr == "DS" else "not a whole number"
        if vr == "IS" and value.strip(" ") and not -(1 << 31) <= int(value.strip(" ")) < (1 << 31):
            return "whole number out of range"
    elif vr == "PN":
        groups = value.split("=")
        if len(groups) > 3:
            return "person name: at most 3 component groups"
        for group in groups:
            if group.count("^") > 4:
                return "person name: at most 5 components"
            if len(group.encode()) > 64:
                return "person name group longer than 64 bytes"
        return "control character" if _control(value) else None
    elif vr in ("LT", "ST"):
        return "control character" if _control(value, "\t\n\f\r") else None
    elif _control(value):  # AE, LO, SH
        return "control character"
    return None


def problem(vr, text, vm=1):
    """None when `text` is a valid `vr` value with `vm` values (0: any), else the reason."""
    if not isinstance(text, str):
        return "expected text"
    if vr in ("LT", "ST"):
        values = [text]  # backslash is a character here, not a separator
    else:
        values = text.split("\\")
        if vm == 1 and len(values) > 1:
            return "backslash not allowed"
        if vm and text and len(values) != vm:
            return "expected %d values separated by \\" % vm
    limit = _MAX.get(vr)
    for value in values:
        if limit and len(value.encode()) > limit:
            return "longer than %d bytes" % limit
        if vr not in ("LO", "LT", "PN", "SH", "ST"):
            for ch in value:
                if ord(ch) > 126:
                    return "only ASCII allowed"
        why = _one(vr, value)
        if why:
            return why
    return None


def _line(key):
    start = FIELDS.find(key + " ")
    while start > 0 and FIELDS[start - 1] != "\n":
        start = FIELDS.find(key + " ", start + 1)
    if start < 0:
        return None
    end = FIELDS.find("\n", start)
    return FIELDS[start:end if end > 0 else len(FIELDS)].split(" ")


def field_vr(key):
    line = _line(key)
    return line[1] if line else None


def _rule(rule, text):
    if rule == "@modality":
        if (" " + text + " ") in _MODALITIES:
            return None
        return "not a Modality defined term (PS3.3 C.7.3.1.1.1)"
    if rule == "@orientation":
        for value in text.split("\\"):
            for ch in value:
                if ch not in "APRLHF":
                    return "row\\column directions from A P R L H F"
        return None
    for value in text.split("\\"):  # @positive
        if float(value) <= 0:
            return "must be greater than 0"
    return None


def field_problem(key, value):
    """None, or "key: reason" when `value` cannot be written for context field `key`."""
    line = _line(key)
    if line is None:
        return key + ": not a context field"
    if not isinstance(value, str):
        return key + ": expected text"
    if value and len(line) > 3 and line[3][0] == "=":
        # Enumerated values (all valid for the VR): the list itself is the clearest reason.
        allowed = [line[3][1:]] + line[4:]
        why = None if value in allowed else "must be " + ", ".join(allowed[:-1]) + " or " + allowed[-1]
    else:
        why = problem(line[1], value, int(line[2]))
        if why is None and value and len(line) > 3:
            why = _rule(line[3], value)
    return None if why is None else key + ": " + why


def check_field(key, value):
    why = field_problem(key, value)
    if why:
        raise ValueError(why)
    return value
