"""Device configuration: a schema (data), validators, and a JSON file on flash saved atomically.

Every key is lower_snake_case. A schema entry is
    (key, kind, default, limit, flags, description)
`kind` picks the parser/validator (see _parse), `limit` is its argument (a max length, an
(min, max) range or a tuple of choices), `flags` is SECRET | PRIVILEGED. RULES holds the
cross-field rules (e.g. spool_low_pct < spool_high_pct); `set` and `load` enforce them.

The schema is the one source of defaults and limits. A layer never keeps a default of its own:
- it names the keys it reads in a tuple, e.g. `Spool.SETTINGS`, `Acquirer.SETTINGS`;
- it receives `config.settings(KEYS)`: a new dict holding every one of those keys with its typed
  value (saved value, else the board's default, else the schema's), valid against the schema and
  RULES; it reads `settings["key"]`, never `settings.get("key", fallback)`;
- a tool or test without a Config object uses `view(KEYS, overrides)`: schema defaults plus
  `overrides`, validated the same way (ConfigError names the first bad key).
A view is a snapshot: after `config save` the device hands each layer a new one.

`Config.set(key, text)` takes the console's text form; `load()` accepts the typed JSON form.
A missing, corrupt or half-written file, a bad value or a broken rule never stops the device:
the keys concerned take their defaults, each is logged, and `Config.load_errors` lists them
(one "key: why" line each) for `status`.
"""

import binascii
import hashlib
import json

from modgate import log
from modgate.compat import const
from modgate.errors import ConfigError
from modgate.net import aetitle
from modgate.port import entropy, fs
from modgate.spool import routing

# const() names are replaced at compile time, so SCHEMA below is a tuple of constants: frozen, it
# stays in flash instead of being built in the heap at import (~1 KB on a 32-bit board).
SECRET = const(1)
PRIVILEGED = const(2)
_P = const(2)  # PRIVILEGED

# AE titles: PS3.5 6.2 (AE: 16 bytes max, no backslash or control characters, leading and
# trailing spaces not significant). UID roots: PS3.5 9.1 (digits and dots, no leading zeros,
# 64 chars total); 24 leaves 40 characters for the suffix the encoder appends.
UID_ROOT_MAX = const(24)

SCHEMA = (
    ("device_serial", "text", "", 32, _P, "Device Serial Number (empty = generated once, kept on flash)"),
    ("station_name", "text", "MODGATE", 16, _P, "Station Name (0008,1010), SH"),
    ("institution_name", "text", "", 64, _P, "Institution Name (0008,0080), LO"),
    ("ae_title", "aet", "MODGATE", 16, _P, "Our AE title as calling SCU"),
    ("uid_root", "uid_root", "2.25", UID_ROOT_MAX, _P, "UID root for generated UIDs (2.25 = UUID-derived)"),
    ("max_pdu", "int", 4096, (4096, 131072), _P, "Max PDU length we receive, bytes (PS3.8 D.1)"),
    ("connect_timeout_ms", "int", 5000, (100, 600000), _P, "TCP connect timeout"),
    ("acse_timeout_ms", "int", 10000, (100, 600000), _P, "Association accept/release timeout"),
    ("dimse_timeout_ms", "int", 30000, (100, 3600000), _P, "DIMSE response timeout"),
    ("idle_timeout_ms", "int", 10000, (0, 3600000), _P, "Release an idle association after this"),
    ("artim_timeout_ms", "int", 2000, (100, 600000), _P, "ARTIM timer, PS3.8 9.1.5"),
    ("max_objects_per_association", "int", 500, (1, 100000), _P, "Objects before an orderly release"),
    ("frames_port", "port", 5555, None, _P, "TCP port of the frame input"),
    ("frames_max_bytes", "int", 16777216, (1024, 1073741824), _P, "Largest frame accepted"),
    ("frames_idle_timeout_ms", "int", 30000, (100, 3600000), _P, "Drop a silent frame connection"),
    ("grouping", "choice", "series", ("frame", "series"), _P, "One series per frame, or per burst"),
    ("series_timeout_ms", "int", 60000, (0, 86400000), _P, "Gap that starts a new series"),
    ("iod", "choice", "sc", ("sc", "dx", "us", "vl-photo"), _P, "IOD written for each frame"),
    ("modality", "modality", "OT", 16, _P, "Modality (0008,0060), CS"),
    ("patient_orientation", "text", "", 16, _P, "Patient Orientation for DX, e.g. A\\F (C.8.11.3)"),
    ("default_patient_name", "pn", "", 64, _P, "Patient's Name when none was given, PN"),
    ("default_patient_id", "text", "", 64, _P, "Patient ID when none was given, LO"),
    ("default_patient_birth_date", "date", "", 8, _P, "Patient's Birth Date, YYYYMMDD or empty"),
    ("default_patient_sex", "choice", "", ("", "M", "F", "O"), _P, "Patient's Sex, M/F/O or empty"),
    # -- objects (issue 16): time zone of dates in objects, study grouping, facts per source --
    ("timezone", "tz", "+0000", 5, _P, "Timezone Offset From UTC of object dates, +HHMM"),
    ("study_timeout_s", "int", 1800, (0, 604800), _P, "New study after this gap (0 = never)"),
    ("source_facts", "facts", None, 16, _P, "Acquisition facts per source (JSON)"),
    # -- worklist (issue 17): the Modality Worklist SCP, what is asked of it, how often --
    ("worklist_scp", "worklist", "", 120, _P, "Modality Worklist SCP, AET@HOST:PORT (empty = none)"),
    ("worklist_station_aet", "worklist", "", 16, _P, "Scheduled Station AE asked (empty = ae_title, *)"),
    ("worklist_modality", "worklist", "", 16, _P, "Modality asked (empty = any)"),
    ("worklist_date", "worklist", "today", 32, _P, "Scheduled date: today, today-1..today+1, YYYYMMDD, *"),
    ("worklist_refresh_s", "int", 300, (0, 86400), _P, "Query the worklist this often (0 = on request)"),
    ("worklist_stale_s", "int", 1800, (60, 604800), _P, "A cached worklist older than this is stale"),
    ("worklist_max_items", "int", 200, (1, 1000), _P, "Matches kept; C-CANCEL beyond them"),
    ("retry_base_ms", "int", 1000, (10, 3600000), _P, "First retry delay (doubles each attempt)"),
    ("retry_max_ms", "int", 300000, (10, 86400000), _P, "Longest retry delay"),
    ("retry_max_attempts", "int", 100, (1, 1000000), _P, "Attempts before an object is dead"),
    ("retry_max_age_s", "int", 604800, (60, 31536000), _P, "Age after which an object is dead"),
    ("spool_budget_bytes", "int", 33554432, (65536, 1 << 40), _P, "Flash the queue may use"),
    ("spool_high_pct", "int", 90, (1, 100), _P, "Refuse new frames above this fill"),
    ("spool_low_pct", "int", 75, (0, 99), _P, "Accept again below this fill"),
    ("dead_max_items", "int", 100, (0, 100000), _P, "Dead letters kept"),
    (
        "spool_max_items",
        "int",
        64,
        (8, 100000),
        _P,
        "Objects queued at once (~55 B of RAM each); BUSY when full",
    ),
    ("filedrop_dir", "path", "drop", 64, _P, "Folder watched for frame files"),
    ("filedrop_enabled", "bool", False, None, _P, "Watch filedrop_dir"),
    ("routing", "routes", None, 16, _P, "Rules [{dest, modality?, iod?}]; a dest without one gets all"),
    ("destinations", "dests", None, 8, _P, "List of {name, aet, host, port, tls?}"),
    # ---- security (issue 19): DICOM TLS, user identity, trusted time, frame sources ----
    ("tls_ca_file", "path", "tls/ca.pem", 64, _P, "CA bundle (PEM or DER) that signs archives' certificates"),
    ("tls_cert_file", "file", "", 64, _P, "Our TLS client certificate, for mutual TLS (empty = none)"),
    ("tls_key_file", "file", "", 64, _P, "Private key of tls_cert_file (empty = in tls_cert_file)"),
    ("user_identity", "text", "", 64, _P, "Username for User Identity negotiation (PS3.7 D.3.3.7)"),
    ("user_passcode", "secret", "", 64, SECRET | _P, "Passcode of user_identity, sent over TLS only"),
    ("sntp_server", "hostport", "", 253, _P, "SNTP server that sets the clock, HOST[:PORT] (empty = none)"),
    ("sntp_interval_s", "int", 3600, (60, 86400), _P, "Seconds between clock synchronisations"),
    ("frames_allow", "allow", None, 8, _P, "Frame sources allowed on TCP: IPv4 addresses or A.B.C.D/N"),
    ("console_json", "bool", False, None, 0, "Console replies in JSON by default"),
    ("unlock_window_s", "int", 600, (10, 86400), _P, "How long `unlock PIN` opens privileged commands"),
    ("log_level", "choice", "info", ("debug", "info", "warn", "error"), _P, "Lowest level logged"),
    ("pin_hash", "pin", "", None, SECRET | _P, "PIN for privileged commands (set as 4-12 digits)"),
    # ---- spool and acquisition (durability, issue 15) ----
    ("dead_policy", "choice", "drop-oldest", ("drop-oldest", "refuse"), _P,
     "Dead-letter area full: give up the oldest, or answer BUSY until an operator acts"),
    # ---- workflow (issue 18): Storage Commitment (destinations' `commit`), listener, MPPS ----
    ("listen_port", "int", 11113, (0, 65535), _P, "Port of our SCP (commitment results, C-ECHO); 0 = none"),
    ("listen_aet", "aet0", "", 16, _P, "AE title of our SCP (empty = ae_title)"),
    ("commit_timeout_s", "int", 1800, (10, 604800), _P, "Ask again when no commitment result came this long"),
    ("commit_max_requests", "int", 4, (1, 100), _P, "Requests per object before it is flagged uncommitted"),
    ("commit_batch_max", "int", 100, (1, 1000), _P, "Objects per Storage Commitment request"),
    ("commit_report_wait_ms", "int", 5000, (0, 600000), _P, "Wait for a result on the request's association"),
    ("mpps_scp", "scp", "", 120, _P, "MPPS SCP, AET@HOST:PORT (empty = none)"),
)

# Cross-field rules: (key, relation, other key); `set` and `load` refuse a value that breaks one.
RULES = (
    ("spool_low_pct", "<", "spool_high_pct"),
    ("retry_base_ms", "<=", "retry_max_ms"),
)

# Out of the box: one archive on the same host, so `make demo` delivers with no set-up.
DEFAULT_DESTINATIONS = ({"name": "archive", "aet": "ARCHIVE", "host": "127.0.0.1", "port": 11112},)

_INDEX = {}
for _i in range(len(SCHEMA)):
    _INDEX[SCHEMA[_i][0]] = _i


def entry(key):
    """The schema entry of `key`; ConfigError naming the key when there is none."""
    i = _INDEX.get(key)
    if i is None:
        raise ConfigError("unknown key '" + str(key)[:40] + "'")
    return SCHEMA[i]


def keys():
    return [e[0] for e in SCHEMA]


def default(key):
    e = entry(key)
    if e[1] == "dests":
        return [dict(d) for d in DEFAULT_DESTINATIONS]
    if e[1] in ("routes", "allow"):
        return []
    if e[1] == "facts":
        return {}
    return e[2]


def view(keys, overrides=None):
    """Schema defaults for `keys`, with `overrides` (typed or text values) validated on top."""
    out = {}
    for key in keys:
        out[key] = default(key)
    for key in overrides or {}:
        if key not in out:
            raise ConfigError("override '" + str(key) + "' is not one of the keys asked for")
        out[key] = _parse(entry(key), overrides[key])
    for rule in RULES:
        if rule[0] in out and rule[2] in out and not _holds(rule, out[rule[0]], out[rule[2]]):
            _fail(rule[0], _why(rule, rule[0], out[rule[2]]))
    return out


def _holds(rule, value, other):
    """True when `value` (of rule[0]) and `other` (of rule[2]) keep `rule`."""
    return value < other if rule[1] == "<" else value <= other


def _why(rule, key, other_value):
    """What `key`, one side of `rule`, must be, given the other side's value."""
    strict = rule[1] == "<"
    if key == rule[0]:
        return "must be %s %s (%s)" % ("below" if strict else "at most", rule[2], other_value)
    return "must be %s %s (%s)" % ("above" if strict else "at least", rule[0], other_value)


# ---- validators: each returns the normalised value or raises ConfigError naming the key ----


def _fail(key, why):
    raise ConfigError(key + ": " + why)


def _printable(key, text, limit):
    if len(text) > limit:
        _fail(key, "longer than %d characters" % limit)
    for ch in text:
        if ch < " " or ch > "~":
            _fail(key, "only printable ASCII allowed")
    if "\\" in text:
        _fail(key, "backslash not allowed (DICOM value separator)")
    return text


def validate_aet(text, key="ae_title"):
    """PS3.5 6.2 AE (via modgate.net.aetitle), stored without its non-significant spaces."""
    try:
        return aetitle.validate(text).strip()
    except ConfigError as exc:
        _fail(key, str(exc))


def validate_host(text, key="host"):
    """An IPv4 dotted quad or an RFC 1123 host name."""
    if not isinstance(text, str) or not text or len(text) > 253:
        _fail(key, "host must be 1-253 characters")
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        for p in parts:
            if len(p) > 3 or int(p) > 255:
                _fail(key, "'" + text + "' is not a valid IPv4 address")
        return text
    for label in parts:
        if not label or len(label) > 63:
            _fail(key, "'" + text[:64] + "' is not a valid host name")
        if label[0] == "-" or label[-1] == "-":
            _fail(key, "host name labels may not start or end with '-'")
        for ch in label:
            if not (ch.isalpha() or ch.isdigit() or ch == "-") or ch > "z":
                _fail(key, "'" + text[:64] + "' is not a valid host name")
    if parts[-1].isdigit():
        _fail(key, "'" + text + "' is not a valid IPv4 address")
    return text


def validate_port(value, key="port"):
    value = _int(key, value)
    if value < 1 or value > 65535:
        _fail(key, "port must be 1-65535")
    return value


def validate_uid_root(text, key="uid_root"):
    """PS3.5 9.1: digit components separated by dots, no leading zeros; short enough for a suffix."""
    if not isinstance(text, str) or not text:
        _fail(key, "UID root must not be empty")
    if len(text) > UID_ROOT_MAX:
        _fail(key, "UID root longer than %d characters (generated UIDs must fit in 64)" % UID_ROOT_MAX)
    from modgate.dicom import vr

    why = vr.uid_problem(text)
    if why:
        _fail(key, why)
    return text


def validate_pin(text, key="pin_hash"):
    if not isinstance(text, str) or not text.isdigit() or len(text) < 4 or len(text) > 12:
        _fail(key, "PIN must be 4-12 digits")
    return text


def validate_date(text, key):
    """PS3.5 6.2 DA: YYYYMMDD (a calendar date), or empty (modgate.dicom.vr)."""
    from modgate.dicom import vr  # the checks load on first use, not at boot (RAM)

    if text and vr.date_problem(text):
        _fail(key, vr.date_problem(text))
    return text


def validate_pn(text, key):
    """PS3.5 6.2 PN (modgate.dicom.vr): component groups of at most 5 components and 64 bytes."""
    from modgate.dicom import vr

    why = vr.problem("PN", text)
    if why:
        _fail(key, why)
    return text


# Settings written into objects as they are: checked like the context field they feed
# (setting, field); a constant tuple stays in flash when frozen.
_DICOM_SETTINGS = (("station_name", "station_name"), ("institution_name", "institution_name"),
                   ("default_patient_id", "patient_id"), ("patient_orientation", "patient_orientation"),
                   ("modality", "modality"))


def validate_name(text, key="name"):
    """Destination names: 1-16 of letters, digits, '-', '_' (typed on the console)."""
    if not isinstance(text, str) or not text or len(text) > 16:
        _fail(key, "name must be 1-16 characters")
    for ch in text:
        if not (ch.isalpha() or ch.isdigit() or ch in "-_") or ch > "z":
            _fail(key, "name may contain only letters, digits, '-' and '_'")
    return text


COMMIT_CHOICES = ("off", "required")


DESTINATION_FIELDS = ("name", "aet", "host", "port", "commit", "tls")


def validate_destination(d, key="destinations"):
    """A destination dict {name, aet, host, port, commit?, tls?}, normalised; ConfigError on a
    bad field. `commit` "required": objects stay on flash until the destination confirmed them
    by Storage Commitment (modgate.commitment); kept only when not the default "off". `tls`
    true: DICOM TLS (PS3.15 B.9) to it, never plain TCP; kept only when true."""
    if not isinstance(d, dict):
        _fail(key, "each destination is an object {name, aet, host, port}")
    for field in ("name", "aet", "host", "port"):
        if field not in d:
            _fail(key, "destination lacks '" + field + "'")
    for field in d:
        if field not in DESTINATION_FIELDS:
            _fail(key, "destination field '" + str(field)[:16] + "' is not one of "
                  + ", ".join(DESTINATION_FIELDS))
    out = {
        "name": validate_name(d["name"], key + ".name"),
        "aet": validate_aet(d["aet"], key + ".aet"),
        "host": validate_host(d["host"], key + ".host"),
        "port": validate_port(d["port"], key + ".port"),
    }
    commit = d.get("commit", "off")
    if commit not in COMMIT_CHOICES:
        _fail(key + ".commit", "must be off or required")
    if commit != "off":
        out["commit"] = commit
    if _bool(key + ".tls", d.get("tls", False)):
        out["tls"] = True
    return out


def validate_scp(value, key):
    """A peer given as AET@HOST:PORT (worklist_scp, mpps_scp), normalised; empty means none."""
    if not value:
        return value
    aet, at, where = value.partition("@")
    host, colon, port = where.rpartition(":")
    if not at or not colon:
        _fail(key, "expected AET@HOST:PORT, e.g. RIS@10.1.2.3:104")
    return validate_aet(aet, key) + "@" + validate_host(host, key) + ":" + str(validate_port(port, key))


def validate_allow(value, key="frames_allow"):
    """An allow-list entry: an IPv4 address, or a network A.B.C.D/N; returned as given."""
    if not isinstance(value, str):
        _fail(key, "each entry is an IPv4 address or A.B.C.D/N")
    address, slash, bits = value.partition("/")
    if slash and not (bits.isdigit() and int(bits) <= 32):
        _fail(key, "'" + value[:24] + "': the prefix length after / must be 0-32")
    if not _ipv4(address):
        _fail(key, "'" + value[:24] + "' is not an IPv4 address or A.B.C.D/N")
    return value


def _ipv4(text):
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def allowed(allow, address):
    """True when IPv4 `address` is in the allow-list `allow` (addresses and A.B.C.D/N networks)."""
    if not _ipv4(address):
        return False
    number = _ip_number(address)
    for rule in allow:
        net, _, bits = rule.partition("/")
        shift = 32 - (int(bits) if bits else 32)
        if number >> shift == _ip_number(net) >> shift:
            return True
    return False


def _ip_number(text):
    a, b, c, d = text.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def validate_hostport(text, key):
    """HOST or HOST:PORT (empty: not set), as validate_host and validate_port check them."""
    if not text:
        return ""
    host, colon, port = text.partition(":")
    validate_host(host, key)
    if colon:
        validate_port(port, key)
    return text


def _int(key, value):
    if isinstance(value, bool):
        _fail(key, "expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value[1:] if value[:1] == "-" else value
        if text.isdigit() and len(text) < 19:
            return int(value)
    _fail(key, "expected a whole number, got '" + str(value)[:32] + "'")


def _bool(key, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.lower()
        if low in ("1", "on", "true", "yes"):
            return True
        if low in ("0", "off", "false", "no"):
            return False
    _fail(key, "expected on/off")


def _parse(e, value):
    """Validate `value` (console text or JSON-typed) against schema entry `e`."""
    key, kind, limit = e[0], e[1], e[3]
    if kind == "int":
        value = _int(key, value)
        if value < limit[0] or value > limit[1]:
            _fail(key, "must be %d-%d" % limit)
        return value
    if kind == "bool":
        return _bool(key, value)
    if kind == "dests":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                _fail(key, "expected a JSON list of {name, aet, host, port}")
        if not isinstance(value, list) or len(value) > limit:
            _fail(key, "expected a list of at most %d destinations" % limit)
        out = [validate_destination(d) for d in value]
        names = [d["name"] for d in out]
        for n in names:
            if names.count(n) > 1:
                _fail(key, "destination name '" + n + "' used twice")
        return out
    if kind == "routes":
        return _routes(key, value, limit)
    if kind == "allow":
        if isinstance(value, str):
            text = value.strip()
            try:
                value = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
            except ValueError:
                _fail(key, "expected addresses (A.B.C.D or A.B.C.D/N) separated by spaces or commas")
        if not isinstance(value, list) or len(value) > limit:
            _fail(key, "expected a list of at most %d addresses or networks" % limit)
        return [validate_allow(v, key) for v in value]
    if kind == "facts":
        return _facts(key, value, limit)
    if kind == "port":
        return validate_port(value, key)
    if not isinstance(value, str):
        _fail(key, "expected text")
    field = None
    for setting, name in _DICOM_SETTINGS:
        if setting == key:
            field = name
    if field is not None or kind == "tz":
        from modgate.dicom import vr
    if field is not None:
        why = vr.field_problem(field, value)
        if why:
            _fail(key, why.partition(": ")[2])
        if kind == "modality" and not value:
            _fail(key, "modality must not be empty")
        return value
    if kind == "worklist":
        return _worklist(key, value)
    if kind == "tz":
        if vr.tz_problem(value):
            _fail(key, vr.tz_problem(value))
        return value
    if kind == "choice":
        if value not in limit:
            _fail(key, "must be one of " + ", ".join(c or "''" for c in limit))
        return value
    if kind == "aet":
        return validate_aet(value, key)
    if kind == "aet0":
        return validate_aet(value, key) if value else value
    if kind == "scp":
        return validate_scp(value, key)
    if kind == "host":
        return validate_host(value, key)
    if kind == "uid_root":
        return validate_uid_root(value, key)
    if kind == "date":
        return validate_date(value, key)
    if kind == "pn":
        return validate_pn(value, key)
    if kind == "hostport":
        return validate_hostport(value, key)
    if kind == "path" or (kind == "file" and value):
        _printable(key, value, limit)
        if not value or ".." in value.split("/"):
            _fail(key, "path must be non-empty and may not contain '..'")
        return value
    return _printable(key, value, limit)  # "text"


def _worklist(key, value):
    """The worklist settings (modgate.worklist), each in its text form."""
    if key == "worklist_scp":
        return validate_scp(value, key)
    if key == "worklist_station_aet":
        return value if value in ("", "*") else validate_aet(value, key)
    if key == "worklist_modality":
        from modgate.dicom import vr

        why = value and vr.field_problem("modality", value)
        if why:
            _fail(key, why.partition(": ")[2])
        return value
    if value == "*":
        return value
    days = value.split("..")
    if len(days) > 2:
        _fail(key, "a date or a range FROM..TO")
    for day in days:
        if day.startswith("today"):
            shift = day[5:]
            if shift and not (shift[0] in "+-" and shift[1:].isdigit() and int(shift[1:]) <= 366):
                _fail(key, "today, today+N or today-N (N up to 366 days)")
        else:
            validate_date(day, key)
            if not day:
                _fail(key, "empty date")
    return value


def _routes(key, value, limit):
    """Routing rules (modgate.spool.routing): a JSON list of {dest, modality?, iod?, sop_class_uid?}."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            _fail(key, "expected a JSON list of rules {dest, modality?, iod?}")
    if not isinstance(value, list) or len(value) > limit:
        _fail(key, "expected a list of at most %d rules" % limit)
    try:
        routing.check(value)
    except ValueError as exc:
        _fail(key, str(exc))
    return [dict(rule) for rule in value]


def _facts(key, value, limit):
    """Acquisition facts per source (modgate.contexts): {"uart": {"burned_in_annotation": "YES"}}."""
    from modgate.contexts import check_source_facts

    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            _fail(key, "expected a JSON object {source: {fact: value}}")
    if isinstance(value, dict) and len(value) > limit:
        _fail(key, "at most %d sources" % limit)
    try:
        return check_source_facts(value)
    except ValueError as exc:
        _fail(key, str(exc))


def hash_pin(pin, salt=None):
    """'sha256$SALT$DIGEST' (hex) of a PIN; the PIN itself is never stored."""
    if salt is None:
        salt = binascii.hexlify(entropy.random_bytes(8)).decode()
    digest = hashlib.sha256((salt + ":" + pin).encode()).digest()
    return "sha256$" + salt + "$" + binascii.hexlify(digest).decode()


def _well_formed_hash(value):
    parts = value.split("$")
    return len(parts) == 3 and parts[0] == "sha256" and len(parts[2]) == 64


class Config:
    """The device's settings. `get` returns typed values; `set` validates the console's text."""

    def __init__(self, path, board_defaults=None):
        self.path = path
        self.dirty = False
        self._values = {}
        self.load_errors = []
        self._dests_before = None  # destinations before the first change since the last save
        # A board's data may change a default its RAM or hardware calls for (board.json
        # "config_defaults", e.g. a smaller max_pdu on the smallest heap); a bad one is ignored.
        self._board_defaults = {}
        for key in board_defaults or {}:
            try:
                self._board_defaults[key] = _parse(entry(key), board_defaults[key])
            except ConfigError as exc:
                log.warn("config", "board default ignored: " + str(exc))
        for rule in self._broken_rules():
            why = _why(rule, rule[0], self.get(rule[2]))
            for key in (rule[0], rule[2]):
                self._board_defaults.pop(key, None)
            log.warn("config", "board defaults of %s and %s ignored: %s %s" % (
                rule[0], rule[2], rule[0], why))

    def load(self):
        """Read the file. A missing, unreadable or half-written file gives the defaults; a bad
        value or a broken rule gives the defaults of the keys concerned. Each is logged and
        listed in `load_errors`; nothing here raises."""
        self._values = {}
        self.dirty = False
        self.load_errors = []
        # write_atomic's temporary file: a save cut short, whose old file is still whole.
        if fs.remove(self.path + ".tmp"):
            log.warn("config", "removed a half-written " + self.path + ".tmp (a save was cut short)")
        if not fs.exists(self.path):
            log.info("config", "no " + self.path + "; using defaults")
            return self
        try:
            data = json.loads(fs.read_bytes(self.path))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            why = "unreadable " + self.path + " (" + str(exc)[:60] + "); every key at its default"
            self._load_error("*", why)
            return self
        for key in data:
            if key not in _INDEX:
                log.warn("config", "ignoring unknown key '" + str(key)[:40] + "'")
                continue
            try:
                if key == "pin_hash":
                    value = data[key]
                    if not isinstance(value, str) or (value and not _well_formed_hash(value)):
                        raise ConfigError("pin_hash: malformed")
                else:
                    value = _parse(entry(key), data[key])
                self._values[key] = value
            except ConfigError as exc:
                self._load_error(key, str(exc) + "; default used")
        for rule in self._broken_rules():
            why = _why(rule, rule[0], self.get(rule[2]))
            for key in (rule[0], rule[2]):
                self._values.pop(key, None)
            self._load_error(rule[0], why + "; %s and %s at their defaults" % (rule[0], rule[2]))
        return self

    def _load_error(self, key, why):
        text = why if why.startswith(key + ":") or key == "*" else key + ": " + why
        log.error("config", "saved configuration: " + text)
        self.load_errors.append(text)

    def _broken_rules(self, key=None, value=None):
        """The rules the current values break, with `key` taken as `value` when given."""
        out = []
        for rule in RULES:
            a = value if rule[0] == key else self.get(rule[0])
            b = value if rule[2] == key else self.get(rule[2])
            if not _holds(rule, a, b):
                out.append(rule)
        return out

    def settings(self, keys):
        """A complete settings view of `keys` for a layer (see the module docstring)."""
        out = {}
        for key in keys:
            out[key] = self.get(key)
        return out

    def get(self, key):
        entry(key)
        if key in self._values:
            value = self._values[key]
            if isinstance(value, list):
                return [dict(d) if isinstance(d, dict) else d for d in value]
            return value
        if key in self._board_defaults:
            return self._board_defaults[key]
        return default(key)

    def set(self, key, value):
        """Validate and set `key` from its text (or typed) form; ConfigError naming the key."""
        if key == "pin":
            key = "pin_hash"
        e = entry(key)
        if key == "pin_hash":
            if value == "" and self.has_pin():
                _fail("pin", "a PIN once set can be changed, not removed (the device would be open again)")
            value = hash_pin(validate_pin(value)) if value != "" else ""
        else:
            value = _parse(e, value)
        for rule in self._broken_rules(key, value):
            _fail(key, _why(rule, key, self.get(rule[2] if key == rule[0] else rule[0])))
        if key == "destinations" and self._dests_before is None:
            self._dests_before = self.get(key)
        self._values[key] = value
        self.dirty = True
        return value

    def save(self):
        """Write every non-default value; a power cut leaves the old or the new file. Streamed
        (write_json_atomic): on a busy board the whole text and its bytes may find no room."""
        fs.write_json_atomic(self.path, self._values)
        self.dirty = False
        self._dests_before = None

    def adds_destination(self):
        """True when saving would add a destination, or change where one sends, compared with
        the destinations before the changes (the commissioning step that needs a PIN)."""
        before = self._dests_before
        return before is not None and any(d not in before for d in self.get("destinations"))

    def reset(self):
        """Back to defaults in memory (the PIN is kept, so a reset cannot remove protection)."""
        pin = self._values.get("pin_hash")
        self._values = {}
        if pin:
            self._values["pin_hash"] = pin
        self.dirty = True

    def items(self, show_secrets=False):
        """[(key, value)] in schema order; secrets read '***' when set and show_secrets is False."""
        out = []
        for e in SCHEMA:
            value = self.get(e[0])
            if e[4] & SECRET and not show_secrets:
                value = "***" if value else ""
            out.append((e[0], value))
        return out

    def has_pin(self):
        return bool(self.get("pin_hash"))

    def check_pin(self, pin):
        stored = self.get("pin_hash")
        if not stored or not isinstance(pin, str):
            return False
        salt = stored.split("$")[1]
        # Compare every character so the time taken does not reveal the matching prefix.
        a, b = hash_pin(pin, salt), stored
        diff = len(a) ^ len(b)
        for i in range(min(len(a), len(b))):
            diff |= ord(a[i]) ^ ord(b[i])
        return diff == 0

    def is_privileged(self, key):
        if key == "pin":
            key = "pin_hash"
        return bool(entry(key)[4] & PRIVILEGED)
