"""The DICOM upper layer state machine as data (PS3.8 9.2, Tables 9-1 to 9-10).

STATES, EVENTS and ACTIONS name every entry of the standard; TRANSITIONS is Table 9-10 row by
row (one event, its states and the action each triggers), so it can be checked line by line.
An (event, state) pair absent from the table is a local error (PS3.8 9.2.3 leaves those cells
blank). `StateMachine` only looks actions up; the association supplies them as methods named
after the action (`AE_2`, `DT_1`, ...) that do the work and return the next state (an action
with two possible next states, AE-6 and AR-8, picks one).
"""

from modgate.errors import ModgateError

STATES = {
    "Sta1": "Idle",
    "Sta2": "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)",
    "Sta3": "Awaiting local A-ASSOCIATE response primitive",
    "Sta4": "Awaiting transport connection opening to complete",
    "Sta5": "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
    "Sta6": "Association established and ready for data transfer",
    "Sta7": "Awaiting A-RELEASE-RP PDU",
    "Sta8": "Awaiting local A-RELEASE response primitive",
    "Sta9": "Release collision requestor side; awaiting A-RELEASE response",
    "Sta10": "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
    "Sta11": "Release collision requestor side; awaiting A-RELEASE-RP PDU",
    "Sta12": "Release collision acceptor side; awaiting A-RELEASE response primitive",
    "Sta13": "Awaiting transport connection close indication",
}

EVENTS = {
    "Evt1": "A-ASSOCIATE request (local user)",
    "Evt2": "Transport connection confirm (local transport service)",
    "Evt3": "A-ASSOCIATE-AC PDU received",
    "Evt4": "A-ASSOCIATE-RJ PDU received",
    "Evt5": "Transport connection indication",
    "Evt6": "A-ASSOCIATE-RQ PDU received",
    "Evt7": "A-ASSOCIATE response primitive (accept)",
    "Evt8": "A-ASSOCIATE response primitive (reject)",
    "Evt9": "P-DATA request primitive",
    "Evt10": "P-DATA-TF PDU received",
    "Evt11": "A-RELEASE request primitive",
    "Evt12": "A-RELEASE-RQ PDU received",
    "Evt13": "A-RELEASE-RP PDU received",
    "Evt14": "A-RELEASE response primitive",
    "Evt15": "A-ABORT request primitive",
    "Evt16": "A-ABORT PDU received",
    "Evt17": "Transport connection closed indication",
    "Evt18": "ARTIM timer expired",
    "Evt19": "Unrecognized or invalid PDU received",
}

# action -> (what PS3.8 Tables 9-6 to 9-9 say it does, next state; None = decided by the action)
ACTIONS = {
    "AE-1": ("Issue TRANSPORT CONNECT request primitive", "Sta4"),
    "AE-2": ("Send A-ASSOCIATE-RQ PDU", "Sta5"),
    "AE-3": ("Issue A-ASSOCIATE confirmation (accept) primitive", "Sta6"),
    "AE-4": ("Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection", "Sta1"),
    "AE-5": ("Issue transport connection response primitive; start ARTIM timer", "Sta2"),
    "AE-6": ("Stop ARTIM; issue A-ASSOCIATE indication or send A-ASSOCIATE-RJ and start ARTIM", None),
    "AE-7": ("Send A-ASSOCIATE-AC PDU", "Sta6"),
    "AE-8": ("Send A-ASSOCIATE-RJ PDU and start ARTIM timer", "Sta13"),
    "DT-1": ("Send P-DATA-TF PDU", "Sta6"),
    "DT-2": ("Send P-DATA indication primitive", "Sta6"),
    "AR-1": ("Send A-RELEASE-RQ PDU", "Sta7"),
    "AR-2": ("Issue A-RELEASE indication primitive", "Sta8"),
    "AR-3": ("Issue A-RELEASE confirmation primitive and close transport connection", "Sta1"),
    "AR-4": ("Issue A-RELEASE-RP PDU and start ARTIM timer", "Sta13"),
    "AR-5": ("Stop ARTIM timer", "Sta1"),
    "AR-6": ("Issue P-DATA indication", "Sta7"),
    "AR-7": ("Issue P-DATA-TF PDU", "Sta8"),
    "AR-8": ("Issue A-RELEASE indication (release collision)", None),
    "AR-9": ("Send A-RELEASE-RP PDU", "Sta11"),
    "AR-10": ("Issue A-RELEASE confirmation primitive", "Sta12"),
    "AA-1": ("Send A-ABORT PDU (service-user source) and start (or restart) ARTIM timer", "Sta13"),
    "AA-2": ("Stop ARTIM timer if running; close transport connection", "Sta1"),
    "AA-3": ("Issue A-ABORT or A-P-ABORT indication and close transport connection", "Sta1"),
    "AA-4": ("Issue A-P-ABORT indication primitive", "Sta1"),
    "AA-5": ("Stop ARTIM timer", "Sta1"),
    "AA-6": ("Ignore PDU", "Sta13"),
    "AA-7": ("Send A-ABORT PDU", "Sta13"),
    "AA-8": ("Send A-ABORT PDU (service-provider source), issue A-P-ABORT indication, start ARTIM", "Sta13"),
}

_BUSY = ("Sta6", "Sta7", "Sta8", "Sta9", "Sta10", "Sta11", "Sta12")


def _row(action, states, **rest):
    row = {}
    for state in states:
        row[state] = action
    row.update(rest)
    return row


# PS3.8 Table 9-10, one entry per event row: {state: action}.
TRANSITIONS = {
    "Evt1": {"Sta1": "AE-1"},
    "Evt2": {"Sta4": "AE-2"},
    "Evt3": _row("AA-8", ("Sta3",) + _BUSY, Sta2="AA-1", Sta5="AE-3", Sta13="AA-6"),
    "Evt4": _row("AA-8", ("Sta3",) + _BUSY, Sta2="AA-1", Sta5="AE-4", Sta13="AA-6"),
    "Evt5": {"Sta1": "AE-5"},
    "Evt6": _row("AA-8", ("Sta3", "Sta5") + _BUSY, Sta2="AE-6", Sta13="AA-7"),
    "Evt7": {"Sta3": "AE-7"},
    "Evt8": {"Sta3": "AE-8"},
    "Evt9": {"Sta6": "DT-1", "Sta8": "AR-7"},
    "Evt10": _row("AA-8", ("Sta3", "Sta5") + _BUSY, Sta2="AA-1", Sta6="DT-2", Sta7="AR-6", Sta13="AA-6"),
    "Evt11": {"Sta6": "AR-1"},
    "Evt12": _row("AA-8", ("Sta3", "Sta5") + _BUSY, Sta2="AA-1", Sta6="AR-2", Sta7="AR-8", Sta13="AA-6"),
    "Evt13": _row("AA-8", ("Sta3", "Sta5") + _BUSY, Sta2="AA-1", Sta7="AR-3", Sta10="AR-10", Sta11="AR-3",
                  Sta13="AA-6"),
    "Evt14": {"Sta8": "AR-4", "Sta9": "AR-9", "Sta12": "AR-4"},
    "Evt15": _row("AA-1", ("Sta3", "Sta5") + _BUSY, Sta4="AA-2"),
    "Evt16": _row("AA-3", ("Sta3", "Sta5") + _BUSY, Sta2="AA-2", Sta13="AA-2"),
    "Evt17": _row("AA-4", ("Sta3", "Sta4", "Sta5") + _BUSY, Sta2="AA-5", Sta13="AR-5"),
    "Evt18": {"Sta2": "AA-2", "Sta13": "AA-2"},
    "Evt19": _row("AA-8", ("Sta3", "Sta5") + _BUSY, Sta2="AA-1", Sta13="AA-7"),
}


class StateMachine:
    """Current state plus dispatch: `fire(event, arg)` runs the action Table 9-10 names."""

    def __init__(self, handler):
        self.state = "Sta1"
        self._actions = {}
        for name in ACTIONS:
            method = getattr(handler, name.replace("-", "_"), None)
            if method is not None:
                self._actions[name] = method

    def fire(self, event, arg=None):
        action = TRANSITIONS[event].get(self.state)
        if action is None:
            raise ModgateError("upper layer: " + event + " (" + EVENTS[event] + ") is not valid in " + self.state)
        method = self._actions.get(action)
        if method is None:
            raise ModgateError("upper layer: action " + action + " is not supported by this service user")
        next_state = method(arg)
        self.state = next_state if next_state else ACTIONS[action][1]
        return self.state
