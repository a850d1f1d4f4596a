"""The DICOM upper layer state machine as data (PS3.8 9.2, Tables 9-1 to 9-10).

TABLE is Table 9-10 row by row: one line per event, one 5-character cell per state (Sta1 to
Sta13) naming the action, "." for the cells the standard leaves blank (a local error). It is kept
as text so it reads like the standard and costs little RAM on a board. The association supplies
each action as a method named after it (AE-2 -> `AE_2`) that does the work and returns the next
state the standard gives for it (PS3.8 Tables 9-6 to 9-9).

States (Table 9-2): 1 idle; 2 transport open, awaiting A-ASSOCIATE-RQ; 3 awaiting local
A-ASSOCIATE response; 4 awaiting transport connect; 5 awaiting A-ASSOCIATE-AC/RJ; 6 established;
7 awaiting A-RELEASE-RP; 8 awaiting local A-RELEASE response; 9-12 release collisions (requestor
9/11, acceptor 10/12); 13 awaiting transport close.
Events (Table 9-3): 1 A-ASSOCIATE request; 2 transport connect confirm; 3 AC, 4 RJ, 6 RQ, 10
P-DATA-TF, 12 A-RELEASE-RQ, 13 A-RELEASE-RP, 16 A-ABORT received; 5 transport indication; 7/8
local accept/reject; 9 P-DATA request; 11 A-RELEASE request; 14 A-RELEASE response; 15 A-ABORT
request; 17 transport closed; 18 ARTIM expired; 19 unrecognised or invalid PDU.
"""

from modgate.errors import ModgateError

# Sta:       1    2    3    4    5    6    7    8    9    10   11   12   13
TABLE = {
    "Evt1": "AE-1 .    .    .    .    .    .    .    .    .    .    .    .    ",
    "Evt2": ".    .    .    AE-2 .    .    .    .    .    .    .    .    .    ",
    "Evt3": ".    AA-1 AA-8 .    AE-3 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6 ",
    "Evt4": ".    AA-1 AA-8 .    AE-4 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6 ",
    "Evt5": "AE-5 .    .    .    .    .    .    .    .    .    .    .    .    ",
    "Evt6": ".    AE-6 AA-8 .    AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-7 ",
    "Evt7": ".    .    AE-7 .    .    .    .    .    .    .    .    .    .    ",
    "Evt8": ".    .    AE-8 .    .    .    .    .    .    .    .    .    .    ",
    "Evt9": ".    .    .    .    .    DT-1 .    AR-7 .    .    .    .    .    ",
    "Evt10": ".    AA-1 AA-8 .    AA-8 DT-2 AR-6 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6 ",
    "Evt11": ".    .    .    .    .    AR-1 .    .    .    .    .    .    .    ",
    "Evt12": ".    AA-1 AA-8 .    AA-8 AR-2 AR-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6 ",
    "Evt13": ".    AA-1 AA-8 .    AA-8 AA-8 AR-3 AA-8 AA-8 AR-10AR-3 AA-8 AA-6 ",
    "Evt14": ".    .    .    .    .    .    .    AR-4 AR-9 .    .    AR-4 .    ",
    "Evt15": ".    .    AA-1 AA-2 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1 .    ",
    "Evt16": ".    AA-2 AA-3 .    AA-3 AA-3 AA-3 AA-3 AA-3 AA-3 AA-3 AA-3 AA-2 ",
    "Evt17": ".    AA-5 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AR-5 ",
    "Evt18": ".    AA-2 .    .    .    .    .    .    .    .    .    .    AA-2 ",
    "Evt19": ".    AA-1 AA-8 .    AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-7 ",
}
STATES = 13


def action(event, state):
    """The action Table 9-10 gives for `event` in `state` (1..13), or None for a blank cell."""
    start = (state - 1) * 5
    cell = TABLE[event][start:start + 5].strip()
    return None if cell == "." else cell


class StateMachine:
    """Current state plus dispatch: `fire(event, arg)` runs the action Table 9-10 names.

    The bound method for each (event, state) met is kept after its first lookup, so the hot
    path (Evt9 in Sta6, once per P-DATA-TF) allocates nothing.
    """

    def __init__(self, handler):
        self.state = 1
        self.handler = handler
        self._seen = {}  # event -> {state: bound action method}

    def fire(self, event, arg=None):
        row = self._seen.get(event)
        if row is None:
            row = self._seen[event] = {}
        method = row.get(self.state)
        if method is None:
            name = action(event, self.state)
            if name is None:
                raise ModgateError("upper layer: %s is not valid in Sta%d" % (event, self.state))
            method = getattr(self.handler, name.replace("-", "_"), None)
            if method is None:
                raise ModgateError("upper layer: action " + name + " is not supported by this service user")
            row[self.state] = method
        self.state = method(arg)
        return self.state
