"""The device: configuration, identity, spool, forwarder, acquisition and inputs wired together.

This is the facade the console talks to (see modgate.console.commands) and what the core's tasks
(jobs/run.py) serve. It holds no protocol logic of its own; each method delegates to its layer.
"""

import gc

from modgate import VERSION, log
from modgate.acquire import Acquirer
from modgate.config import Config
from modgate.contexts import PATIENT_FIELD_KEYS, Contexts
from modgate.dicom import uids
from modgate.errors import ConfigError, DeliveryError, ModgateError
from modgate.port import clock, entropy, fs
from modgate.spool.forwarder import Forwarder
from modgate.spool.queue import Spool

BOOT_COUNT_FILE = "boot_count"
SERIAL_FILE = "serial"
RESET_CAUSE_FILE = "reset_cause"
TASK_BOUND_SLACK_MS = 5000
class Device:
    def __init__(self, ports):
        self.ports = ports
        self.board = ports.get("board") or {}
        self.state_dir = ports["state_dir"]
        fs.makedirs(self.state_dir)
        self.config = Config(fs.join(self.state_dir, "config.json"), _board_defaults(self.board))
        self.config.load()
        self.watchdog = ports.get("watchdog")
        self._worklist = None  # modgate.worklist.Worklist, loaded when an SCP is configured
        self.on_worklist_changed = None  # the core starts the worklist task
        self._mpps = None  # modgate.mpps.Steps, loaded when an MPPS SCP is configured
        self.commitments = None  # modgate.commitment.Commitments, while a destination confirms
        self.listener = None  # the core's net/scp.ReportListener, while it runs
        # One PDU buffer per destination, each kept for the device's life once taken (a session
        # comes and goes; a fresh 4-16 KB block is hard to find in a fragmented heap).
        self.pdu_buffers = {}
        self.reserve_buffers()
        self.online = False  # the network link has an address (the core's network task says)
        self.supervisor = None  # the core's task table, for status
        self.on_destinations_changed = None  # the core restarts the delivery workers
        self.boot_count = uids.next_boot_count(fs.join(self.state_dir, BOOT_COUNT_FILE))
        self.last_reset = self._take_reset_cause()
        self.serial = self.config.get("device_serial") or _board_serial(ports, self.state_dir)
        self.uid_gen = self._uid_generator()
        self.contexts = Contexts(self)
        self.clock_warned = False
        self.clock_source = None  # who set the clock in this boot: "console", "sntp HOST:PORT"
        self.timesync = None  # the core's SNTP task (modgate.timesync), for status
        self.frame_input = None  # the core's TCP frame input, for status and its allow-list
        self.spool = Spool(
            fs.join(self.state_dir, "spool"),
            self.config.settings(Spool.SETTINGS),
            destinations=self._destination_names(),
        )
        self.feed_watchdog()
        self.spool.recover()
        self.feed_watchdog()
        self._load_commitments()
        self.forwarder = self._forwarder()
        self.acquirer = Acquirer(
            self.spool, self.uid_gen, self.contexts, self.config.settings(Acquirer.SETTINGS)
        )
        self.acquirer.on_committed = self._object_committed
        self.acquirer.recover()
        self.feed_watchdog()
        self.mpps()  # its steps on flash, when an MPPS SCP is configured
        self.feed_watchdog()
        self.reboot_requested = False
        self.heap_free_min = -1
        self.out_of_memory = 0
        self._check_security()

    def _take_reset_cause(self):
        """Why the previous boot ended, when the device itself knew (a stuck task left it there
        before the watchdog reset the board): logged once, shown by status, then forgotten."""
        path = fs.join(self.state_dir, RESET_CAUSE_FILE)
        try:
            cause = fs.read_bytes(path).decode().strip()
        except (OSError, ValueError):
            return None
        fs.remove(path)
        log.warn("app", "the previous boot ended in a watchdog reset: " + cause)
        return cause

    def note_reset_cause(self, line):
        """The supervisor saw a stuck task and lets the watchdog fire: keep why, on flash."""
        try:
            fs.write_atomic(fs.join(self.state_dir, RESET_CAUSE_FILE), line.encode())
        except OSError:
            pass  # a full or failing flash: the log line is all there is

    def reserve_buffers(self):
        """A PDU buffer for each destination, taken while the heap is still one block (at boot,
        before any frame link has its receive buffer), and kept: sessions come and go on them."""
        from modgate.net import receive_buffer

        size = self.config.get("max_pdu")
        names = self._destination_names()
        if self.config.get("mpps_scp"):
            names.append("@mpps")  # modgate.mpps.BUFFER_KEY
        if self.config.get("listen_port") and [n for n in names if self._confirms(n)]:
            names.append("@listener")  # the listener's (net/scp.py), while it runs
        for name in names:
            buf = self.pdu_buffers.get(name)
            if buf is None or len(buf) < size:
                gc.collect()
                try:
                    self.pdu_buffers[name] = receive_buffer(size)
                except MemoryError:
                    log.error("app", "no %d-byte block left for %s's PDU buffer: its deliveries wait; reboot "
                              "to take it at boot" % (size, name))

    def feed_watchdog(self):
        """Between long boot steps (recovery), before the supervisor feeds it."""
        if self.watchdog is not None:
            self.watchdog.feed()

    def _online(self):
        return self.online

    def apply_config(self):
        """Make saved configuration changes take effect without a reboot."""
        self.release_sessions()
        self.serial = self.config.get("device_serial") or self.serial
        # The new generator goes on from the old one's sequence, so no UID of this boot can come
        # out twice (PS3.5 9.1), whatever root or serial was set.
        self.uid_gen = self._uid_generator(self.uid_gen.sequence)
        self.acquirer.uid_gen = self.uid_gen
        self.acquirer.settings = self.config.settings(Acquirer.SETTINGS)
        self.spool.configure(self.config.settings(Spool.SETTINGS))
        self._load_commitments()
        self.forwarder = self._forwarder()
        self._destinations_changed()
        if self.on_worklist_changed is not None:
            self.on_worklist_changed()
        self._check_security()
        if self.timesync is not None:
            self.timesync.changed()
        if self.frame_input is not None:
            self.frame_input.allow = self.config.get("frames_allow")

    def _check_security(self):
        """What the settings leave open, said once when they take effect (boot, config save)."""
        cfg = self.config
        if cfg.get("user_passcode"):
            plain = [d["name"] for d in cfg.get("destinations") if not d.get("tls")]
            if plain:
                log.warn("net", "user_passcode goes to TLS destinations only; " + ", ".join(plain)
                         + " get user_identity alone")
        secure = [d["name"] for d in cfg.get("destinations") if d.get("tls")]
        if secure:
            from modgate.port import tls

            if not tls.available():
                log.error("net", "destinations want TLS but this firmware image has none: they are held")
            elif not self.tls_fits():
                log.warn("net", "%s want TLS, which this board's heap does not carry (board %s: %s)"
                         % (", ".join(secure), self.board.get("id", "?"), self.board.get("tls_why", "")))

    def tls_fits(self):
        """True when the board offers TLS (board.json tls), or its heap is at least the
        tls_heap_bytes its data names (an emulator run with a TLS board's heap)."""
        if self.board.get("tls", True):
            return True
        need = self.board.get("tls_heap_bytes")
        total = heap_free() + gc.mem_alloc() if hasattr(gc, "mem_alloc") else -1
        return bool(need) and total >= need * 15 // 16  # the GC's own tables take part of -X heapsize

    def _forwarder(self):
        return Forwarder(self.spool, self._session_for, self._retry_policy(), online=self._online,
                         settle=self.settle_heap, committer=self.commitments)

    def _uid_generator(self, sequence=0):
        root = self.config.get("uid_root")
        # "2.25" in the configuration means the UUID-derived form (PS3.5 B.2), not a prefix.
        return uids.UidGenerator("" if root == "2.25" else root, self.serial, self.boot_count, sequence)

    def release_sessions(self):
        """Close every association now (settings changed): the workers open new ones."""
        self.forwarder.drop_all()

    async def shutdown(self):
        """Orderly stop before a reboot: release associations (the queue is already on flash)."""
        await self.forwarder.close()

    def _destination_names(self):
        return [d["name"] for d in self.config.get("destinations")]

    # --- settings derived from configuration -----------------------------------------------------
    def _retry_policy(self):
        cfg = self.config
        return {
            "base_backoff_ms": cfg.get("retry_base_ms"),
            "max_backoff_ms": cfg.get("retry_max_ms"),
            "max_attempts": cfg.get("retry_max_attempts"),
            "max_age_s": cfg.get("retry_max_age_s"),
            "jitter": 0.2,
        }

    def network_settings(self):
        cfg = self.config
        return {
            "calling_aet": cfg.get("ae_title"),
            "max_pdu": cfg.get("max_pdu"),
            "connect_timeout_ms": cfg.get("connect_timeout_ms"),
            "acse_timeout_ms": cfg.get("acse_timeout_ms"),
            "dimse_timeout_ms": cfg.get("dimse_timeout_ms"),
            "idle_timeout_ms": cfg.get("idle_timeout_ms"),
            "artim_timeout_ms": cfg.get("artim_timeout_ms"),
            "max_objects_per_association": cfg.get("max_objects_per_association"),
            "tls_ca_file": self._flash_path(cfg.get("tls_ca_file")),
            "tls_cert_file": self._flash_path(cfg.get("tls_cert_file")),
            "tls_key_file": self._flash_path(cfg.get("tls_key_file")),
            "user_identity": cfg.get("user_identity"),
            "user_passcode": cfg.get("user_passcode"),
        }

    def _flash_path(self, path):
        """A setting's file path: relative ones are in the state folder (the board's flash)."""
        if not path or path.startswith("/"):
            return path
        return fs.join(self.state_dir, path)

    def _destination(self, name):
        for dest in self.config.get("destinations"):
            if dest["name"] == name:
                return dest
        raise ModgateError("no destination named " + repr(name))

    def _session_for(self, name):
        """A new session for destination `name` (the forwarder keeps it while it is in use),
        reusing the destination's PDU buffer."""
        from modgate.net.scu import StoreSession

        settings = self.network_settings()
        settings["buffer"] = self.pdu_buffers.get(name)
        dest = self._destination(name)
        settings["commitment"] = dest.get("commit") == "required"
        session = StoreSession(dest, settings)
        self.pdu_buffers[name] = session.buf
        return session

    def task_bound_ms(self):
        """How long a task may go without progress before it counts as stuck: more than the
        longest chain of network waits one step can make (connect, then ACSE, then DIMSE)."""
        cfg = self.config
        return (cfg.get("connect_timeout_ms") + cfg.get("acse_timeout_ms") + cfg.get("dimse_timeout_ms")
                + TASK_BOUND_SLACK_MS)

    def note_clock_unset(self):
        if not self.clock_warned:
            self.clock_warned = True
            log.warn(
                "clock", "device clock is unset (year before 2024): objects carry that date; use `time set`"
            )

    # --- the console's facade ---------------------------------------------------------------------
    def status(self):
        stats = self.spool.stats()
        out = {
            "state": "running",
            "network": "up" if self.online else "down",
            "clock_set": clock.is_set(),
            "time": _iso(clock.now()),
            "clock_source": self.clock_source,
            "boot_count": self.boot_count,
            "last_reset": self.last_reset,
            "objects_committed": self.acquirer.objects_committed,
            "frames_acked": self.acquirer.frames_acked,
            "open_series": len(self.acquirer.open_series),
            "series_closing": len(self.acquirer.closing),  # committed again every second until done
            "config_fallbacks": list(self.config.load_errors),  # saved values refused at boot
            "queue": stats,
            "destinations": self._destination_names(),
            "heap": self.heap_stats(),
        }
        if self.timesync is not None:
            out["clock_sync"] = self.timesync.status()
        if self.frame_input is not None:
            out["frames_refused"] = self.frame_input.refused
        if self.supervisor is not None:
            out.update(self.supervisor.status())
        if self.worklist() is not None:
            out["worklist"] = self._worklist.status()
        if self.commitments is not None:
            commit = self.commitments.status()
            if self.listener is not None:
                commit["listener"] = self.listener.status()
            out["commitment"] = commit
        if self.mpps() is not None:
            out["mpps"] = self._mpps.status()
        return out

    def settle_heap(self):
        """After a delivery: free its temporaries now (a fragmented heap fails the next large
        block) and note the least free heap seen, for status."""
        gc.collect()
        self.note_heap()

    def note_heap(self):
        """Called by the loop right after it collects garbage (at ready, after each delivery,
        after an error): the least free heap seen then is the most live data held, for `status`."""
        free = heap_free()
        if free >= 0 and (self.heap_free_min < 0 or free < self.heap_free_min):
            self.heap_free_min = free

    def heap_stats(self):
        """Free heap now, the least seen after a collection since boot, and how many times the
        loop caught an out-of-memory: what a field engineer needs to tell a board near its RAM."""
        return {"free": heap_free(), "free_min": self.heap_free_min, "out_of_memory": self.out_of_memory}

    def ident(self):
        return {
            "serial": self.serial,
            "firmware_version": VERSION,
            "board": self.board.get("id", "unknown"),
            "board_name": self.board.get("name", ""),
            "uid_root": self.config.get("uid_root") or "2.25",
            "ae_title": self.config.get("ae_title"),
        }

    def destinations(self):
        out = []
        for dest in self.config.get("destinations"):
            dest["commit"] = dest.get("commit", "off")
            out.append(dest)
        return out

    def add_destination(self, name, aet, host, port, commit="off", tls=False):
        dests = [d for d in self.config.get("destinations") if d["name"] != name]
        dest = {"name": name, "aet": aet, "host": host, "port": int(port)}
        if commit != "off":
            dest["commit"] = commit
        if tls:
            dest["tls"] = True
        dests.append(dest)
        self.config.set("destinations", dests)
        self._destinations_changed()

    def remove_destination(self, name):
        dests = self.config.get("destinations")
        kept = [d for d in dests if d["name"] != name]
        if len(kept) == len(dests):
            raise ConfigError("no destination named " + repr(name))
        self.config.set("destinations", kept)
        self._destinations_changed()

    def _destinations_changed(self):
        # A replaced destination must not keep talking to its old address: drop every session.
        self.release_sessions()
        names = self._destination_names()
        self.spool.set_destinations(names, self.config.get("routing"))
        self._load_commitments()
        self.forwarder.committer = self.commitments
        for name in names:
            if not self._confirms(name):
                self.spool.confirm_all(name, "its commit setting is off")
        for gone in [n for n in self.pdu_buffers if n not in names]:
            del self.pdu_buffers[gone]
        self.reserve_buffers()
        if self.on_destinations_changed is not None:
            self.on_destinations_changed()

    async def echo(self, name):
        self._destination(name)  # a clear error for an unknown name
        try:
            # Through the destination's own session, taking turns with its deliveries.
            return await self.forwarder.echo(name)
        except DeliveryError as exc:
            raise ModgateError("C-ECHO to " + name + " failed: " + str(exc))

    def selftest_watchdog(self, task):
        """Stop task `task` reporting progress: the watchdog must then reset the board."""
        sup = self.supervisor
        if sup is None:
            raise ModgateError("no task table: the device core is not running")
        if not sup.freeze(task):
            raise ModgateError("no task named " + repr(task) + "; tasks: " + ", ".join(sorted(sup.tasks)))
        return {"task": task, "reset_within_ms": self.task_bound_ms() + 2 * sup.feed_ms,
                "watchdog": self.watchdog is not None}

    def queue_list(self, limit=20):
        return self.spool.list(limit)

    def queue_dead(self):
        return self.spool.dead()

    def queue_retry(self, which):
        if which == "mpps":
            return self._need_mpps().retry()
        count = self.spool.requeue(which)
        self.forwarder.nudge()
        return count

    def queue_commit(self, limit=100):
        return self.spool.committing(limit)

    def queue_mpps(self):
        return self._need_mpps().list()

    def queue_purge(self, which):
        return self.spool.purge(which)

    def log_tail(self, count):
        return log.tail(count)

    def time_get(self):
        return clock.now()

    def time_set(self, when):
        # Set the RTC first: on boards time.time() follows it, and clock keeps only the remainder.
        rtc_set = self.ports.get("rtc_set")
        if rtc_set is not None:
            rtc_set(*when)
        clock.set_time(*when)
        self.clock_warned = False
        self.clock_source = "console"
        log.info("clock", "time set to " + _iso(when))

    def set_clock_unix_ms(self, unix_ms, source):
        """The time server's correction (modgate.timesync): RTC first, as time_set does."""
        rtc_set = self.ports.get("rtc_set")
        if rtc_set is not None:
            rtc_set(*clock.utc(unix_ms // 1000))
        clock.set_unix_ms(unix_ms)
        self.clock_warned = False
        self.clock_source = source

    def next_patient(self, fields):
        self.contexts.pending_patient = dict((PATIENT_FIELD_KEYS.get(k, k), v) for k, v in fields.items())
        self.contexts.study_uid = None
        if self.worklist() is not None:
            self._worklist.clear("replaced by patient next|clear")
        log.info("acquire", "next patient set (%d fields)" % len(fields))

    def new_study(self):
        self.contexts.new_study()
        log.info("acquire", "next acquisition starts a new study")

    # --- workflow: Storage Commitment (modgate.commitment) and MPPS (modgate.mpps) --------------
    def _confirms(self, name):
        for dest in self.config.get("destinations"):
            if dest["name"] == name:
                return dest.get("commit") == "required"
        return False

    def _aets(self):
        return dict((d["name"], d["aet"]) for d in self.config.get("destinations"))

    def _load_commitments(self):
        """The commitment bookkeeping, while some destination confirms (none loaded otherwise)."""
        names = [n for n in self._destination_names() if self._confirms(n)]
        if not names:
            self.commitments = None
            return
        from modgate.commitment import Commitments

        settings = self.config.settings(Commitments.SETTINGS)
        if self.commitments is None:
            self.commitments = Commitments(self.spool, self.state_dir, settings, self._confirms, self._aets,
                                           self._new_uid)
            self.commitments.recover(names)
        else:
            self.commitments.configure(settings)

    def _new_uid(self):
        return self.uid_gen.new()

    def listener_settings(self):
        cfg = self.config
        return {"ae_title": cfg.get("listen_aet") or cfg.get("ae_title"), "port": cfg.get("listen_port"),
                "host": self._listen_host(), "max_pdu": cfg.get("max_pdu"),
                "acse_timeout_ms": cfg.get("acse_timeout_ms"),
                "dimse_timeout_ms": cfg.get("dimse_timeout_ms"),
                "artim_timeout_ms": cfg.get("artim_timeout_ms")}

    def _listen_host(self):
        ip = self.board.get("network", {}).get("ip")
        return ip if isinstance(ip, str) and ip.count(".") == 3 else "0.0.0.0"

    def mpps(self):
        """The procedure steps, loaded on first use; None while no MPPS SCP is configured."""
        if not self.config.get("mpps_scp"):
            return None
        if self._mpps is None:
            from modgate.mpps import Steps

            self._mpps = Steps(self)
            self._mpps.recover(self.spool)
        return self._mpps

    def _need_mpps(self):
        steps = self.mpps()
        if steps is None:
            raise ConfigError("mpps_scp: no MPPS SCP configured (set it: AET@HOST:PORT)")
        return steps

    def mpps_settings(self):
        settings = self.network_settings()
        settings["buffer"] = self.pdu_buffers.get("@mpps")
        return settings

    def study_started(self, context, now):
        """A study session starts (modgate.contexts): its procedure step opens; returns what its
        objects carry of it, or None."""
        steps = self.mpps()
        if steps is None:
            return None
        from modgate.dicom import iods

        return steps.started(context, iods.modality(self.config.get("iod"), context))

    def _object_committed(self, uid, meta, context):
        if self._mpps is not None:
            self._mpps.committed(uid, meta, context)

    def study_open(self, study_uid):
        return self.acquirer.study_open(study_uid)

    def expire_study(self):
        """The mpps task's look at the session: quiet for study_timeout_s, its step completes."""
        ctx = self.contexts
        if ctx.study_uid is None or ctx.last_ticks is None or self._mpps is None:
            return
        from modgate.compat import ticks_diff, ticks_ms

        idle = ticks_diff(ticks_ms(), ctx.last_ticks)
        if self._mpps.expire(ctx.study_uid, idle, self.config.get("study_timeout_s") * 1000):
            ctx.study_uid = None

    def end_study(self, status, reason="", comments=""):
        """Console `study end` / `study discontinue`: the study session ends (the next
        acquisition opens a new one) and its procedure step is COMPLETED or DISCONTINUED."""
        study = self.contexts.study_uid
        if study is None and self.mpps() is not None:
            study = self._mpps.open_study()  # the study a restart interrupted
        self.contexts.new_study()
        ended = self._mpps is not None and self.mpps().end(study, status, reason, comments)
        log.info("acquire", "study %s ended (%s)%s" % (study or "-", status.lower(),
                                                       "" if ended else "; no procedure step was open"))
        return {"study_uid": study, "status": status, "mpps": ended}

    def pending_patient(self):
        names = dict((v, k) for k, v in PATIENT_FIELD_KEYS.items())
        return dict((names.get(k, k), v) for k, v in self.contexts.pending_patient.items())

    # --- the worklist (modgate.worklist) ---------------------------------------------------------
    def worklist(self):
        """The worklist, loaded on first use; None while no worklist SCP is configured."""
        if not self.config.get("worklist_scp"):
            return None
        if self._worklist is None:
            from modgate.worklist import Worklist

            self._worklist = Worklist(self)
        return self._worklist

    def _need_worklist(self):
        worklist = self.worklist()
        if worklist is None:
            raise ConfigError("worklist_scp: no worklist SCP configured (set it: AET@HOST:PORT)")
        return worklist

    def worklist_refresh(self):
        """A coroutine: query now, waiting for the worklist task at most half a task's bound
        (the console task itself reports no progress meanwhile)."""
        return self._need_worklist().refresh_now(min(30000, self.task_bound_ms() // 2))

    def worklist_rows(self, start, count):
        return self._need_worklist().rows(start, count)

    def worklist_item(self, n):
        return self._need_worklist().item(n)

    def worklist_select(self, n):
        rec = self._need_worklist().select(n)
        self.contexts.pending_patient = {}  # one source of the patient at a time
        self.contexts.study_uid = None
        return rec

    def worklist_clear(self):
        return self._need_worklist().clear()

    def send_test_pattern(self):
        """Commission without a modality: one test-pattern frame through the real acquisition path."""
        from modgate.ingest.testsource import send_test_pattern

        uid = send_test_pattern(self.acquirer, self.config)
        log.info("app", "test pattern stored as " + uid)
        return uid

    def reboot(self):
        log.info("app", "reboot requested from the console")
        self.reboot_requested = True


def _board_defaults(board):
    """The board's config_defaults, and frames_allow from its modality link (board.json
    frames.allow: the emulators' loopback; a hardware board's link is its UART: no TCP source)."""
    defaults = dict(board.get("config_defaults") or {})
    allow = (board.get("frames") or {}).get("allow")
    if allow is not None and "frames_allow" not in defaults:
        defaults["frames_allow"] = allow
    return defaults


def _board_serial(ports, state_dir):
    """The board's own unique id, else one made once and kept on flash (digits and letters only)."""
    unique = ports.get("unique_id")
    if unique:
        return unique
    path = fs.join(state_dir, SERIAL_FILE)
    try:
        return fs.read_bytes(path).decode().strip()
    except OSError:
        pass
    # Nine decimal digits: short enough for a UID under an organisation's root (modgate.dicom.uids).
    serial = "%09d" % (int.from_bytes(entropy.random_bytes(4), "little") % 1000000000)
    fs.write_atomic(path, serial.encode())
    log.info("app", "no device_serial configured; generated " + serial)
    return serial


def _iso(t):
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tuple(t[:6])


def heap_free():
    free = getattr(gc, "mem_free", None)  # MicroPython only; -1 on CPython
    return free() if free is not None else -1
