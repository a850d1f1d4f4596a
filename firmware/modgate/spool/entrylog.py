"""An entry's log on flash (q/<id>.m): one JSON array per line, appended and synced per outcome.

    ["H", {"uid", "meta", "born", "size"}]   header, written with the routing before the commit
    ["R", [dest, ...]]                      routing (again later if an unrouted entry is routed)
    ["D", dest]   delivered                 ["X", dest, reason]   dead-lettered
    ["Q", dest]   re-queued by an operator  ["P", dest]   given up (purged dead letter)
A destination that confirms what it stored (Storage Commitment: `commit` required) takes the
object through more states before its "D", which then means confirmed:
    ["S", dest]   stored there, confirmation awaited       ["T", dest, request]   in request
    ["F", dest, reason]   not confirmed: owed again (sent again)
    ["U", dest, reason]   still unconfirmed after the requests allowed: flagged for an operator

A line torn by a power cut has no newline and is ignored: for "D" that means one more send of
an object the destination already has, the at-least-once window (docs/spool.md); for "S", "T"
or "F" one more send or request. A line that the medium garbled (not JSON, or not an operation
of the shape above) is skipped too.
"""

import json

from modgate.port import fs


def id_name(eid):
    # Fixed width so that names sort in commit order.
    return "%010d" % eid


def parse_id(name, suffix):
    """The entry id in `name` (e.g. 0000000042.dcm), or None if it is not such a name."""
    if not name.endswith(suffix):
        return None
    stem = name[: len(name) - len(suffix)]
    if not stem or not stem.isdigit():
        return None
    return int(stem)


def create(path, header, routed):
    f = fs.open_file(path, "w")
    try:
        # Streamed into the file: the header's text is never built whole in the heap.
        fs.dump_json(["H", header], f)
        f.write("\n")
        fs.dump_json(["R", routed], f)
        f.write("\n")
        fs.sync_file(f)
    finally:
        f.close()


def append(path, op):
    f = fs.open_file(path, "a")
    try:
        f.write(json.dumps(op) + "\n")
        fs.sync_file(f)
    finally:
        f.close()


# Operation -> (length, type of each argument): anything else in a log is damage and is skipped.
_SHAPES = {"H": (dict,), "R": (list,), "D": (str,), "X": (str, str), "Q": (str,), "P": (str,),
           "S": (str,), "T": (str, str), "F": (str, str), "U": (str, str)}
# What a destination that confirms is waiting for, per destination: [state, request, requests,
# reason]; state "S" (awaiting confirmation), "F" (not confirmed: owed again) or "U" (flagged).
WAIT_STATE = 0
WAIT_REQUEST = 1
WAIT_REQUESTS = 2
WAIT_REASON = 3


def _well_formed(op):
    if not isinstance(op, list) or not op or not isinstance(op[0], str):
        return False
    shape = _SHAPES.get(op[0])
    if shape is None or len(op) != len(shape) + 1:
        return False
    for i in range(len(shape)):
        if not isinstance(op[i + 1], shape[i]):
            return False
    if op[0] == "R":
        for name in op[1]:
            if not isinstance(name, str):
                return False
    return True


def lines(path):
    """Each line of the JSON-lines file at `path` that is a JSON array, in order, one at a time
    (a missing file has none; a last line torn by a power cut and a garbled line are skipped).
    Also what other queues on flash (modgate.mpps, modgate.commitment) read theirs with."""
    try:
        f = fs.open_file(path, "rb")
    except OSError:
        return
    try:
        while True:
            line = f.readline()
            if not line or line[-1:] != b"\n":
                return  # end, or a last line torn by a power cut
            try:
                op = json.loads(line.decode())
            except ValueError:  # UnicodeError is a ValueError on both runtimes
                continue
            if isinstance(op, list) and op:
                yield op
    finally:
        f.close()


def read(path):
    """The log's well-formed operations, in order (a few short lines per entry)."""
    return [op for op in lines(path) if _well_formed(op)]


def replay(path):
    """(header, routed, done, dead, wait) from the log: None header when it is missing or
    damaged; done is None or a list of names, dead None or a dict name -> reason, wait None or a
    dict name -> [state, request, requests, reason] (WAIT_*)."""
    header = None
    routed = None
    done = None
    dead = None
    wait = None
    for op in read(path):
        kind = op[0]
        if kind == "H":
            header = op[1]
        elif kind == "R":
            routed = op[1]
        elif kind in ("D", "P"):
            done = done or []
            if op[1] not in done:
                done.append(op[1])
            if dead and op[1] in dead:
                del dead[op[1]]
            if wait and op[1] in wait:
                del wait[op[1]]
        elif kind == "X":
            dead = dead or {}
            dead[op[1]] = op[2]
        elif kind == "Q":
            if dead and op[1] in dead:
                del dead[op[1]]
            if wait and op[1] in wait and wait[op[1]][WAIT_STATE] != "S":
                del wait[op[1]]  # sent again from the start, its requests counted anew
        else:
            wait = wait or {}
            step(wait, op)
    return header, routed, done, dead, wait


def step(wait, op):
    """Apply an "S", "T", "F" or "U" line to a destination's wait state (replay, and the queue
    as it appends them: one definition of what each means)."""
    kind = op[0]
    state = wait.get(op[1])
    if kind == "S":
        if state is None:
            wait[op[1]] = ["S", None, 0, None]
        else:
            state[WAIT_STATE] = "S"
            state[WAIT_REQUEST] = None
    elif state is None:
        return  # a request or outcome for a state that a later line already ended
    elif kind == "T":
        state[WAIT_REQUEST] = op[2]
        state[WAIT_REQUESTS] += 1
    else:
        state[WAIT_STATE] = kind
        state[WAIT_REQUEST] = None
        state[WAIT_REASON] = op[2]


def header(path):
    for op in read(path):
        if op[0] == "H":
            return op[1]
    return {}
