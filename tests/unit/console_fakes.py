"""A FakeDevice implementing the console's device facade (see modgate/console/commands.py),
and a stream that collects what the console writes. Shared by the console tests and the host
transport tests (which serve a real firmware Console over a socket)."""

from modgate.config import Config
from modgate.errors import ModgateError


class Stream:
    def __init__(self):
        self.data = bytearray()

    def write(self, b):
        self.data += b
        return len(b)

    def take(self):
        out = bytes(self.data).decode()
        self.data[:] = b""
        return out


class FakeDevice:
    def __init__(self, config_path):
        self.config = Config(config_path).load()
        self.reboots = 0
        self.applied = 0
        self.sent = []
        self.patient = {}
        self.clock = (2026, 1, 2, 3, 4, 5)
        self.queue = [
            {
                "id": 1,
                "uid": "2.25.1",
                "size": 1000,
                "age_s": 4,
                "pending": ["archive"],
                "done": [],
                "dead": {},
            },
        ]
        self.dead = [
            {
                "id": 2,
                "uid": "2.25.9",
                "size": 10,
                "age_s": 90,
                "pending": [],
                "done": [],
                "dead": {"archive": "A-ASSOCIATE-RJ"},
            },
        ]
        self.unreachable = set()
        self.log = ["2026-01-02T03:04:05Z INFO app: line %d" % i for i in range(100)]

    def apply_config(self):
        self.applied += 1

    def status(self):
        return {
            "uptime_s": 12,
            "queue_depth": len(self.queue),
            "dead": len(self.dead),
            "spool_used_pct": 3,
            "delivered": len(self.sent),
            "failed": 0,
            "last_error": None,
            "clock_set": True,
        }

    def ident(self):
        conf = self.config
        return {
            "serial": conf.get("device_serial") or "FAKE0001",
            "firmware": "0.1.0",
            "board": "fake",
            "uid_root": conf.get("uid_root"),
            "ae_title": conf.get("ae_title"),
        }

    def destinations(self):
        return self.config.get("destinations")

    def add_destination(self, name, aet, host, port, commit="off", tls=False):
        dests = self.config.get("destinations")
        for d in dests:
            if d["name"] == name:
                raise ModgateError("destination '" + name + "' exists")
        dest = {"name": name, "aet": aet, "host": host, "port": port}
        if commit != "off":
            dest["commit"] = commit
        if tls:
            dest["tls"] = True
        dests.append(dest)
        self.config.set("destinations", dests)

    def remove_destination(self, name):
        dests = self.config.get("destinations")
        kept = [d for d in dests if d["name"] != name]
        if len(kept) == len(dests):
            raise ModgateError("no destination '" + name + "'")
        self.config.set("destinations", kept)

    async def echo(self, name):
        if name not in [d["name"] for d in self.destinations()]:
            raise ModgateError("no destination '" + name + "'")
        if name in self.unreachable:
            raise ModgateError("connection refused")
        return 3

    def queue_list(self, limit):
        return self.queue[:limit]

    def queue_dead(self):
        return self.dead

    def queue_commit(self):
        return [q for q in self.queue if q.get("committing")]

    def queue_mpps(self):
        return [{"id": 1, "study_uid": "2.25.7", "status": "IN PROGRESS", "created": True, "objects": 2,
                 "waiting": "study end", "refused": None}]

    def end_study(self, status, reason="", comments=""):
        self.ended = (status, reason, comments)
        return {"study_uid": "2.25.7", "status": status, "mpps": True}

    def queue_retry(self, which):
        if which == "all":
            return len(self.queue)
        return 1 if which in [str(q["id"]) for q in self.queue] else 0

    def queue_purge(self, which):
        if which == "dead":
            n, self.dead = len(self.dead), []
        elif which == "all":
            n, self.queue = len(self.queue), []
        else:
            before = len(self.queue)
            self.queue = [q for q in self.queue if str(q["id"]) != which]
            n = before - len(self.queue)
        return n

    def log_tail(self, n):
        return self.log[-n:]

    def time_get(self):
        return self.clock

    def time_set(self, t):
        self.clock = tuple(t)

    def next_patient(self, fields):
        self.patient = dict(fields)

    def pending_patient(self):
        return self.patient

    def new_study(self):
        self.new_studies = getattr(self, "new_studies", 0) + 1

    def send_test_pattern(self):
        uid = "2.25.%d" % (1000 + len(self.sent))
        self.sent.append(uid)
        return uid

    def reboot(self):
        self.reboots += 1
