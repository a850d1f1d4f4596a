"""An entry's log on flash (q/<id>.m): one JSON array per line, appended and synced per outcome.

    ["H", {"uid", "meta", "born", "size"}]   header, written with the routing before the commit
    ["R", [dest, ...]]                      routing (again later if an unrouted entry is routed)
    ["D", dest]   delivered                 ["X", dest, reason]   dead-lettered
    ["Q", dest]   re-queued by an operator  ["P", dest]   given up (purged dead letter)

A line torn by a power cut has no newline and is ignored: for "D" that means one more send of
an object the destination already has, the at-least-once window (docs/spool.md). A line that
the medium garbled (not JSON, or not an operation of the shape above) is skipped too.
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
_SHAPES = {"H": (dict,), "R": (list,), "D": (str,), "X": (str, str), "Q": (str,), "P": (str,)}


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


def read(path):
    """The log's well-formed operations, in order (a few short lines per entry)."""
    ops = []
    try:
        f = fs.open_file(path, "rb")
    except OSError:
        return ops
    try:
        while True:
            line = f.readline()
            if not line or line[-1:] != b"\n":
                break  # end, or a last line torn by a power cut
            try:
                op = json.loads(line.decode())
            except ValueError:  # UnicodeError is a ValueError on both runtimes
                continue
            if _well_formed(op):
                ops.append(op)
    finally:
        f.close()
    return ops


def replay(path):
    """(header, routed, done, dead) from the log: None header when it is missing or damaged;
    done is None or a list of names, dead None or a dict name -> reason."""
    header = None
    routed = None
    done = None
    dead = None
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
        elif kind == "X":
            dead = dead or {}
            dead[op[1]] = op[2]
        elif kind == "Q" and dead and op[1] in dead:
            del dead[op[1]]
    return header, routed, done, dead


def header(path):
    for op in read(path):
        if op[0] == "H":
            return op[1]
    return {}
