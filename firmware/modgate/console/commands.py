"""Console commands: a table (data) of (name, sub, privilege, handler, usage, help) and handlers.

Handlers take (shell, words) -- `words` are the arguments after the command (and subcommand)
-- and return plain data (dict, list, str or None) that the shell renders as text or JSON.
They raise UsageError for bad arguments and ModgateError (ConfigError, DeliveryError...) when
the device refuses or fails; the shell turns both into one clear error reply.

THE DEVICE FACADE (implemented by modgate/device.py; tests use tests/unit/console_fakes.py):
    device.config                      a modgate.config.Config (already loaded)
    device.status() -> dict            short facts: uptime_s, queue_depth, dead, spool_used_pct,
                                       delivered, failed, last_error, clock_set ... (flat, JSON-able)
    device.ident() -> dict             serial, firmware, board, uid_root, ae_title ...
    device.destinations() -> [dict]    [{name, aet, host, port, ...state keys}]
    device.add_destination(name, aet, host, port, commit="off", tls=False)   values already
                                       validated here (commit "off" or "required"); raises
                                       ModgateError (e.g. name exists, list full)
    device.remove_destination(name)    raises ModgateError when there is no such name
    device.echo(name) -> rtt_ms        a coroutine: C-ECHO (PS3.7 9.3.5); raises ModgateError
    device.queue_list(limit) -> [dict] queued objects, oldest first: {id (int), uid (SOP Instance
                                       UID), size, age_s, pending [dest], done [dest], dead {dest:
                                       reason}, ...}
    device.queue_dead() -> [dict]      objects with a dead letter, same shape
    device.queue_retry(which) -> int   which = a decimal id, "all", "dead" or "mpps"; objects (or
                                       refused procedure steps) rescheduled
    device.queue_commit() -> [dict]    objects stored where a Storage Commitment is awaited or
                                       was not given (flagged), same shape as queue_list
    device.queue_mpps() -> [dict]      procedure steps queued: {id, study_uid, status, created,
                                       objects, waiting, refused}
    device.queue_purge(which) -> int   which = a decimal id, "all" or "dead"; objects removed
    device.log_tail(n) -> [str]        last n log lines, oldest first
    device.time_get() -> (Y,M,D,h,m,s) UTC
    device.time_set((Y,M,D,h,m,s))     UTC
    device.next_patient(fields)        demographics for the next acquisition; {} clears. Keys:
                                       name, id, birth_date, sex, accession (validated here)
    device.pending_patient() -> dict   what the next acquisition will use ({} when none)
    device.new_study()                 the next acquisition opens a new study (modgate.contexts)
    device.end_study(status, reason, comments) -> dict   the study ends; its procedure step
                                       (MPPS) COMPLETED or DISCONTINUED with a CID 9300 reason
    device.worklist_refresh() -> dict  a coroutine: query the worklist SCP now (bounded wait)
    device.worklist_rows(start, count) -> [dict]  cached items from `start` (1-based), short rows
    device.worklist_item(n) -> dict    one cached item, every field; ModgateError when none
    device.worklist_select(n) -> dict  item n for the next acquisitions (refused: undecodable text,
                                       or a value objects cannot carry)
    device.worklist_clear() -> bool    forget the selection (the cached list stays)
    (the worklist ones raise ConfigError while no worklist SCP is configured)
    device.send_test_pattern() -> uid  queues a test pattern through the real path
    device.reboot()                    may not return; the shell replies before calling it
    device.selftest_watchdog(task)     stop `task` reporting progress (commissioning check)
Every method may raise ModgateError; anything else is reported as an internal error.
"""

from modgate import config as cfg
from modgate.console.tokens import UsageError
from modgate.errors import ConfigError, ModgateError

# privilege of a command: never, always, or as the config key named by the first argument says
PRIV_NO = 0
PRIV_YES = 1
PRIV_KEY = 2

LOG_TAIL_MAX = 64
QUEUE_LIST_MAX = 100
PATIENT_FIELDS = ("name", "id", "birth_date", "sex", "accession")


def _need(words, count, usage):
    if len(words) != count:
        raise UsageError("usage: " + usage)


def _number(text, what, low, high):
    if not text.isdigit() or not low <= int(text) <= high:
        raise UsageError("%s must be a number %d-%d" % (what, low, high))
    return int(text)


def cmd_help(shell, words):
    if len(words) > 1:
        raise UsageError("usage: help [COMMAND]")
    rows = []
    for name, sub, priv, _h, usage, text in TABLE:
        if words and words[0] != name:
            continue
        rows.append({"usage": usage, "help": text, "privileged": priv != PRIV_NO})
    if not rows:
        raise UsageError("no command '" + words[0] + "'; type help")
    return rows


def cmd_status(shell, words):
    _need(words, 0, "status")
    data = dict(shell.device.status())
    data["config_unsaved"] = shell.device.config.dirty
    data["privileged"] = shell.privilege_state()
    return data


def cmd_ident(shell, words):
    _need(words, 0, "ident")
    return dict(shell.device.ident())


def cmd_config_show(shell, words):
    _need(words, 0, "config show")
    out = {}
    for key, value in shell.device.config.items():
        out[key] = value
    return out


def _key_value(conf, key):
    for k, v in conf.items():
        if k == key:
            return v
    raise ConfigError("unknown key '" + key[:40] + "'")


def cmd_config_get(shell, words):
    _need(words, 1, "config get KEY")
    return {"key": words[0], "value": _key_value(shell.device.config, words[0])}


def cmd_config_set(shell, words):
    if len(words) != 2:
        raise UsageError('usage: config set KEY VALUE (quote a value with spaces: "General Hospital")')
    conf = shell.device.config
    conf.set(words[0], words[1])
    key = "pin_hash" if words[0] == "pin" else words[0]
    if key == "pin_hash" and words[1]:
        shell.grant()  # whoever may set the PIN keeps working with it, as after 'unlock'
    return {"key": key, "value": _key_value(conf, key), "saved": False}


def _commissioning(shell, what):
    """No open doors: a device that sends patient data somewhere must have a PIN first, so
    nobody who finds the cable can redirect it later (PS3.15 asks for access control)."""
    if not shell.device.config.has_pin():
        from modgate.console.shell import Denied

        raise Denied(what + " needs a PIN first: set one with 'config set pin NNNN' (4-12 digits); "
                     "it then guards every privileged change")


def cmd_config_save(shell, words):
    _need(words, 0, "config save")
    if shell.device.config.adds_destination():
        _commissioning(shell, "saving a new or changed destination")
    shell.device.config.save()
    # Destinations, routing, network, retry and identity apply now; the frame input's port and
    # the file drop are set up at boot.
    shell.device.apply_config()
    return {"saved": True, "applied": True}


def cmd_config_reset(shell, words):
    _need(words, 0, "config reset")
    shell.device.config.reset()
    return {"reset": True, "saved": False}


def cmd_dest_list(shell, words):
    _need(words, 0, "dest list")
    return list(shell.device.destinations())


def cmd_dest_add(shell, words):
    usage = "dest add NAME AET HOST PORT [tls] [commit=required|off]"
    if len(words) < 4 or len(words) > 6:
        raise UsageError("usage: " + usage)
    d = {"name": words[0], "aet": words[1], "host": words[2], "port": words[3]}
    for option in words[4:]:
        key, eq, value = option.partition("=")
        if option == "tls" and "tls" not in d:
            d["tls"] = True
        elif key == "commit" and eq and "commit" not in d:
            d["commit"] = value
        else:
            raise UsageError("usage: " + usage)
    d = cfg.validate_destination(d, "dest")
    d["commit"] = d.get("commit", "off")
    _commissioning(shell, "adding a destination")
    shell.device.add_destination(d["name"], d["aet"], d["host"], d["port"], d["commit"], d.get("tls", False))
    return d


def cmd_dest_remove(shell, words):
    _need(words, 1, "dest remove NAME")
    shell.device.remove_destination(words[0])
    return {"removed": words[0]}


async def _echo_one(device, name):
    return {"name": name, "ok": True, "rtt_ms": await device.echo(name)}


async def _echo_all(device):
    results = []
    for d in device.destinations():
        try:
            results.append(await _echo_one(device, d["name"]))
        except ModgateError as exc:
            results.append({"name": d["name"], "ok": False, "error": str(exc)})
    return results


def cmd_dest_echo(shell, words):
    _need(words, 1, "dest echo NAME|all")
    if words[0] != "all":
        return _echo_one(shell.device, words[0])
    return _echo_all(shell.device)


def cmd_queue_list(shell, words):
    if len(words) > 1:
        raise UsageError("usage: queue list [N]")
    limit = _number(words[0], "N", 1, QUEUE_LIST_MAX) if words else 20
    return list(shell.device.queue_list(limit))


def cmd_queue_dead(shell, words):
    _need(words, 0, "queue dead")
    return list(shell.device.queue_dead())


def cmd_queue_commit(shell, words):
    _need(words, 0, "queue commit")
    return list(shell.device.queue_commit())


def cmd_queue_mpps(shell, words):
    _need(words, 0, "queue mpps")
    return list(shell.device.queue_mpps())


def _which(word, usage):
    if word in ("all", "dead") or (word.isdigit() and len(word) < 10):
        return word
    raise UsageError("usage: " + usage + " (ID is the number queue list shows)")


def cmd_queue_retry(shell, words):
    usage = "queue retry [ID|all|dead|mpps]"
    if len(words) > 1:
        raise UsageError("usage: " + usage)
    which = "mpps" if words == ["mpps"] else (_which(words[0], usage) if words else "all")
    return {"retried": shell.device.queue_retry(which)}


def cmd_queue_purge(shell, words):
    usage = "queue purge ID|all|dead"
    _need(words, 1, usage)
    return {"purged": shell.device.queue_purge(_which(words[0], usage))}


def cmd_log_tail(shell, words):
    if len(words) > 1:
        raise UsageError("usage: log tail [N]")
    count = _number(words[0], "N", 1, LOG_TAIL_MAX) if words else 20
    return list(shell.device.log_tail(count))


def format_time(t):
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tuple(t)


def parse_time(text):
    """'YYYY-MM-DDThh:mm:ss[Z]' (UTC) -> (Y, M, D, h, m, s)."""
    if text.endswith("Z"):
        text = text[:-1]
    ok = len(text) == 19 and text[4] == "-" and text[7] == "-" and text[10] in "T " and text[13] == ":"
    ok = ok and text[16] == ":"
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19]) if ok else ()
    if not ok or not all(f.isdigit() for f in fields):
        raise UsageError("time is YYYY-MM-DDThh:mm:ssZ (UTC)")
    t = tuple(int(f) for f in fields)
    in_range = 2000 <= t[0] <= 2099 and 1 <= t[1] <= 12 and 1 <= t[2] <= 31
    if not (in_range and t[3] < 24 and t[4] < 60 and t[5] < 60):
        raise UsageError("time out of range: " + text)
    return t


def cmd_time_get(shell, words):
    _need(words, 0, "time get")
    return {"utc": format_time(shell.device.time_get())}


def cmd_time_set(shell, words):
    if len(words) == 2:
        words = [words[0] + "T" + words[1]]
    _need(words, 1, "time set YYYY-MM-DDThh:mm:ssZ")
    shell.device.time_set(parse_time(words[0]))
    return {"utc": format_time(shell.device.time_get())}


def _patient_fields(words):
    from modgate.contexts import PATIENT_FIELD_KEYS
    from modgate.dicom import vr

    fields = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or key not in PATIENT_FIELDS:
            raise UsageError("expected FIELD=VALUE with FIELD one of " + ", ".join(PATIENT_FIELDS))
        # Checked as the objects will carry them (PS3.5 6.2, Patient's Sex M/F/O): refused, not changed.
        why = vr.field_problem(PATIENT_FIELD_KEYS[key], value)
        if why:
            raise ConfigError("patient " + key + ": " + why.partition(": ")[2])
        fields[key] = value
    return fields


def cmd_patient_next(shell, words):
    if not words:
        raise UsageError("usage: patient next FIELD=VALUE ... (fields: " + ", ".join(PATIENT_FIELDS) + ")")
    shell.device.next_patient(_patient_fields(words))
    return dict(shell.device.pending_patient())


def cmd_patient_show(shell, words):
    _need(words, 0, "patient show")
    return dict(shell.device.pending_patient())


def cmd_patient_clear(shell, words):
    _need(words, 0, "patient clear")
    shell.device.next_patient({})
    return dict(shell.device.pending_patient())


def cmd_study_new(shell, words):
    _need(words, 0, "study new")
    shell.device.new_study()
    return {"study": "new"}


WORKLIST_PAGE = 20
WORKLIST_MAX = 100000


def cmd_worklist_refresh(shell, words):
    _need(words, 0, "worklist refresh")
    return shell.device.worklist_refresh()


def cmd_worklist_list(shell, words):
    if len(words) > 1:
        raise UsageError("usage: worklist list [FROM]")
    start = _number(words[0], "FROM", 1, WORKLIST_MAX) if words else 1
    return list(shell.device.worklist_rows(start, WORKLIST_PAGE))


def cmd_worklist_show(shell, words):
    _need(words, 1, "worklist show N")
    return dict(shell.device.worklist_item(_number(words[0], "N", 1, WORKLIST_MAX)))


def cmd_worklist_select(shell, words):
    _need(words, 1, "worklist select N")
    rec = shell.device.worklist_select(_number(words[0], "N", 1, WORKLIST_MAX))
    out = {}
    for key in ("n", "patient_name", "patient_id", "patient_birth_date", "patient_sex", "accession_number",
                "scheduled_step_id", "study_instance_uid", "scheduled_step_description"):
        out[key] = rec.get(key, "")
    return out


def cmd_worklist_clear(shell, words):
    _need(words, 0, "worklist clear")
    return {"cleared": shell.device.worklist_clear()}


def cmd_study_end(shell, words):
    _need(words, 0, "study end")
    return dict(shell.device.end_study("COMPLETED"))


def cmd_study_discontinue(shell, words):
    from modgate.dicom.workflow import DISCONTINUATION_REASONS

    names = [r[0] for r in DISCONTINUATION_REASONS]
    if not words or words[0] not in names:
        raise UsageError("usage: study discontinue REASON [COMMENT...]; REASON one of " + ", ".join(names))
    comments = " ".join(words[1:])
    if comments:
        from modgate.dicom import vr

        why = vr.problem("ST", comments)  # Comments on the Performed Procedure Step (0040,0280)
        if why:
            raise ConfigError("comment: " + why)
    return dict(shell.device.end_study("DISCONTINUED", words[0], comments))


def cmd_test_pattern(shell, words):
    _need(words, 0, "test-pattern send")
    return {"sop_instance_uid": shell.device.send_test_pattern()}


def cmd_selftest_watchdog(shell, words):
    _need(words, 1, "selftest watchdog TASK")
    return shell.device.selftest_watchdog(words[0])


def cmd_reboot(shell, words):
    _need(words, 0, "reboot")
    shell.after_reply = shell.device.reboot
    return {"rebooting": True}


def cmd_json(shell, words):
    if len(words) != 1 or words[0] not in ("on", "off"):
        raise UsageError("usage: json on|off")
    shell.set_json(words[0] == "on")
    return {"json": shell.json}


def cmd_unlock(shell, words):
    _need(words, 1, "unlock PIN")
    return shell.unlock(words[0])


def cmd_lock(shell, words):
    _need(words, 0, "lock")
    shell.lock()
    return {"privileged": shell.privilege_state()}


TABLE = (
    ("help", "", PRIV_NO, cmd_help, "help [COMMAND]", "List commands, or one command's forms"),
    ("status", "", PRIV_NO, cmd_status, "status", "What the box is doing now"),
    ("ident", "", PRIV_NO, cmd_ident, "ident", "Serial, firmware version, board, UID root"),
    ("config", "show", PRIV_NO, cmd_config_show, "config show", "Every setting (secrets hidden)"),
    ("config", "get", PRIV_NO, cmd_config_get, "config get KEY", "One setting"),
    ("config", "set", PRIV_KEY, cmd_config_set, "config set KEY VALUE", "Change a setting (validated)"),
    ("config", "save", PRIV_YES, cmd_config_save, "config save", "Write settings to flash (atomic)"),
    ("config", "reset", PRIV_YES, cmd_config_reset, "config reset", "Back to defaults (keeps the PIN)"),
    ("dest", "list", PRIV_NO, cmd_dest_list, "dest list", "Destinations and their state"),
    ("dest", "add", PRIV_YES, cmd_dest_add, "dest add NAME AET HOST PORT [tls] [commit=required|off]",
     "Add a destination (tls: DICOM TLS, verified against tls_ca_file; commit=required: delete "
     "only what it confirmed)"),
    ("dest", "remove", PRIV_YES, cmd_dest_remove, "dest remove NAME", "Remove a destination"),
    ("dest", "echo", PRIV_NO, cmd_dest_echo, "dest echo NAME|all", "C-ECHO with round-trip time"),
    ("queue", "list", PRIV_NO, cmd_queue_list, "queue list [N]", "Objects waiting for delivery"),
    ("queue", "dead", PRIV_NO, cmd_queue_dead, "queue dead", "Objects that gave up (dead letters)"),
    ("queue", "commit", PRIV_NO, cmd_queue_commit, "queue commit",
     "Objects stored, awaiting Storage Commitment or flagged uncommitted"),
    ("queue", "mpps", PRIV_NO, cmd_queue_mpps, "queue mpps", "Procedure steps (MPPS) queued"),
    ("queue", "retry", PRIV_NO, cmd_queue_retry, "queue retry [ID|all|dead|mpps]", "Retry now"),
    ("queue", "purge", PRIV_YES, cmd_queue_purge, "queue purge ID|all|dead", "Delete queued objects"),
    ("log", "tail", PRIV_NO, cmd_log_tail, "log tail [N]", "Last N log lines"),
    ("time", "get", PRIV_NO, cmd_time_get, "time get", "Device clock (UTC)"),
    ("time", "set", PRIV_NO, cmd_time_set, "time set YYYY-MM-DDThh:mm:ssZ", "Set the device clock (UTC)"),
    ("patient", "next", PRIV_NO, cmd_patient_next, "patient next FIELD=VALUE ...", "Next image's patient"),
    ("patient", "show", PRIV_NO, cmd_patient_show, "patient show", "Pending demographics"),
    ("patient", "clear", PRIV_NO, cmd_patient_clear, "patient clear", "Forget pending demographics"),
    ("study", "new", PRIV_NO, cmd_study_new, "study new", "Next acquisition starts a new study"),
    ("study", "end", PRIV_NO, cmd_study_end, "study end", "The study is complete (MPPS COMPLETED)"),
    ("study", "discontinue", PRIV_NO, cmd_study_discontinue, "study discontinue REASON [COMMENT...]",
     "The study stops (MPPS DISCONTINUED); REASON: doctor, equipment, refused, ... (help lists)"),
    ("worklist", "refresh", PRIV_NO, cmd_worklist_refresh, "worklist refresh", "Query the worklist SCP now"),
    ("worklist", "list", PRIV_NO, cmd_worklist_list, "worklist list [FROM]", "Cached worklist, 20 a page"),
    ("worklist", "show", PRIV_NO, cmd_worklist_show, "worklist show N", "Every field of item N"),
    ("worklist", "select", PRIV_NO, cmd_worklist_select, "worklist select N",
     "Item N gives the patient and study of the next acquisitions"),
    ("worklist", "clear", PRIV_NO, cmd_worklist_clear, "worklist clear", "Forget the selected item"),
    ("test-pattern", "send", PRIV_NO, cmd_test_pattern, "test-pattern send", "Send a test image"),
    ("selftest", "watchdog", PRIV_YES, cmd_selftest_watchdog, "selftest watchdog TASK",
     "Make TASK stop reporting progress: the watchdog must reset the board (status lists tasks)"),
    ("reboot", "", PRIV_YES, cmd_reboot, "reboot", "Restart the device"),
    ("json", "", PRIV_NO, cmd_json, "json on|off", "Machine replies: one JSON line each"),
    ("unlock", "", PRIV_NO, cmd_unlock, "unlock PIN", "Open privileged commands for a while"),
    ("lock", "", PRIV_NO, cmd_lock, "lock", "Close privileged commands now"),
)


def find(words):
    """(entry, args) for a split command line; UsageError with a clear message otherwise."""
    name = words[0]
    subs = []
    for e in TABLE:
        if e[0] != name:
            continue
        if not e[1]:
            return e, words[1:]
        subs.append(e[1])
        if len(words) > 1 and words[1] == e[1]:
            return e, words[2:]
    if not subs:
        raise UsageError("unknown command '" + name[:32] + "'; type help", "unknown")
    raise UsageError("usage: " + name + " " + "|".join(subs) + " ...")
