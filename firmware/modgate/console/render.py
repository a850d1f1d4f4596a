"""Human-readable console replies: key/value lists and small tables, one line at a time."""

import json

# Column order for tables; unknown columns follow, sorted (MicroPython dicts keep no order).
_COLUMNS = (
    "n", "selected", "patient_name", "patient_id", "birth_date", "sex", "accession", "step_id", "date",
    "time", "modality", "description", "note",
    "id", "name", "ok", "rtt_ms", "aet", "host", "port", "state", "uid", "sop_instance_uid", "destination",
    "pending", "done", "dead", "attempts", "age_s", "next_try_s", "size", "last_error", "error",
)
_CELL_MAX = 40


def text(value):
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "-"
    if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value):
        return ", ".join(text(v) for v in value) or "-"
    if isinstance(value, dict) and not any(isinstance(v, (list, dict)) for v in value.values()):
        return ", ".join(k + ": " + text(value[k]) for k in sorted(value)) or "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _config_text(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "":
        return '""'
    return text(value)


def _pad(s, width):
    return s + " " * (width - len(s))


def table(rows):
    """Lines of an aligned table of dicts."""
    if not rows:
        return ["(none)"]
    seen = []
    for row in rows:
        for k in row:
            if k not in seen:
                seen.append(k)
    cols = [c for c in _COLUMNS if c in seen] + sorted(c for c in seen if c not in _COLUMNS)
    cells = [[text(row.get(c))[:_CELL_MAX] for c in cols] for row in rows]
    widths = [len(c) for c in cols]
    for line in cells:
        for i in range(len(cols)):
            if len(line[i]) > widths[i]:
                widths[i] = len(line[i])
    out = ["  ".join(_pad(cols[i], widths[i]) for i in range(len(cols))).rstrip()]
    for line in cells:
        out.append("  ".join(_pad(line[i], widths[i]) for i in range(len(cols))).rstrip())
    return out


def mapping(data):
    keys = sorted(data)
    width = max(len(k) for k in keys) if keys else 0
    return [_pad(k, width) + "  " + text(data[k]) for k in keys]


def reply_lines(reply, entry):
    """Lines for one reply; `entry` is the command's table entry (None if the line was not one)."""
    if not reply["ok"]:
        return ["error: " + reply["error"]]
    data = reply["data"]
    cmd = reply["cmd"]
    if cmd == "help":
        return _help(data)
    if cmd == "config show":
        from modgate import config

        return [k + " = " + _config_text(data[k]) for k in config.keys() if k in data]
    if cmd in ("config get", "config set"):
        line = data["key"] + " = " + _config_text(data["value"])
        if cmd == "config set":
            line += "  (not saved yet: 'config save' writes it to flash)"
        return [line]
    if data is None:
        return ["ok"]
    if isinstance(data, str):
        return [data]
    if isinstance(data, list):
        if data and isinstance(data[0], dict):
            return table(data)
        return [text(x) for x in data] or ["(none)"]
    if isinstance(data, dict):
        return mapping(data) or ["(none)"]
    return [text(data)]


def _help(rows):
    width = max(len(r["usage"]) for r in rows)
    out = []
    for r in rows:
        out.append("  " + _pad(r["usage"], width) + "  " + r["help"] + (" [PIN]" if r["privileged"] else ""))
    out.append("Add --json to any command for a JSON reply. [PIN]: needs 'unlock PIN' first.")
    return out
