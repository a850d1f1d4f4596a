"""The device's main job: boot the board, recover the flash, then run the event-driven core.

Boot never waits for the network. The core is a set of asyncio tasks, each with bounded waits
and a heartbeat (modgate.supervisor): the network bring-up and link watch, the TCP frame input
(one task per source) once the link is up, the frame UART, the console, the file drop, the
series timeouts, one delivery task per destination, the worklist refresh when a worklist
SCP is configured, the listener while a destination confirms by Storage Commitment, and the
procedure steps' task when an MPPS SCP is configured. Every wait on a peer suspends only its
own task, so a dead archive delays nobody else and frames keep arriving during a C-STORE of any
size. The supervisor feeds the watchdog while every task makes progress. Docs: architecture.md.
"""

import gc
import json

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import ConfigError, ModgateError
from modgate.port import aio, fs

FILEDROP_SCAN_MS = 1000
SERIES_TICK_MS = 200
CONSOLE_READ_BYTES = 256
CONSOLE_POLL_MS = 1000
NET_POLL_UP_MS = 2000
NET_POLL_DOWN_MS = 500
NET_RESTART_MS = 30000  # a link down this long is brought up again from the start
REBOOT_POLL_MS = 100
SHUTDOWN_MS = 3000
# Collect after this share of the heap has been allocated, not only when an allocation fails:
# garbage then never spreads over the free heap, and the few long-lived objects made meanwhile
# (a queue entry, a log line) land low instead of splitting the one large free block the next
# frame or association needs. On the 96 KB board it took the largest free block after a
# delivery run from ~2 KB to ~11 KB (docs/architecture.md).
GC_THRESHOLD_SHARE = 12
GC_THRESHOLD_MIN = 2048
LISTEN_RETRY_MS = 30000  # the orderly releases before a reboot may take this long, no more
_NO_MEMORY_REPLY = b'{"ok": false, "cmd": "", "code": "internal", "error": "out of memory; try again"}\r\n'


def main(argv):
    import board

    ports = board.start(argv)
    options = ports.get("options") or {}
    gc.collect()
    from modgate.device import Device

    _save_boot_options(ports, options)
    device = Device(ports)
    log.configure(level=device.config.get("log_level"))
    aio.run(Core(device, ports).run())
    ports["reboot"]()
    return 0


def _save_boot_options(ports, options):
    """`--config FILE`, `--dest AET@HOST:PORT` and `--frames-port` from the emulator: saved
    before the device is built, so that settings read at boot (the spool budget) apply too."""
    from modgate.config import Config

    config_file = options.get("config")
    dests = options.get("dest") or []
    if isinstance(dests, str):
        dests = [dests]
    if not (config_file or dests or options.get("frames-port")):
        return
    board = ports.get("board") or {}
    fs.makedirs(ports["state_dir"])
    config = Config(fs.join(ports["state_dir"], "config.json"), board.get("config_defaults"))
    config.load()
    if config_file:
        try:
            values = json.loads(fs.read_bytes(config_file))
        except (OSError, ValueError) as exc:
            raise ConfigError("cannot read --config " + config_file + ": " + str(exc))
        for key in values:
            config.set(key, values[key])
    if dests:
        parsed = []
        for text in dests:
            try:
                aet, where = text.split("@", 1)
                host, port = where.rsplit(":", 1)
                parsed.append({"name": aet.lower(), "aet": aet, "host": host, "port": int(port)})
            except ValueError:
                raise ConfigError("--dest wants AET@HOST:PORT, not " + repr(text))
        config.set("destinations", parsed)
    if options.get("frames-port"):
        config.set("frames_port", options["frames-port"])
    config.save()


class Core:
    """The device's tasks, started and watched (see the module docstring)."""

    def __init__(self, device, ports):
        from modgate.supervisor import Supervisor

        self.device = device
        self.ports = ports
        self.board = ports.get("board") or {}
        watchdog = ports.get("watchdog")
        wd_ms = self.board.get("watchdog_ms") or 8000
        # Fed well inside the watchdog's period, so one late turn never resets a healthy board.
        self.supervisor = Supervisor(watchdog, min(1000, wd_ms // 4), self._out_of_memory,
                                     device.note_reset_cause)
        device.supervisor = self.supervisor
        device.on_destinations_changed = self._destinations_changed
        device.on_worklist_changed = self._start_worklist
        self.bound_ms = device.task_bound_ms()
        self.network = ports.get("network")
        self.frames = None
        self._listening = None  # (handler, settings) of the listener task running

    def spawn(self, name, body, restart=True):
        return self.supervisor.spawn(name, body, self.bound_ms, restart)

    async def run(self):
        device = self.device
        self._look_at_network()  # a link already up (the emulator's loopback) serves frames at once
        self.spawn("network", self._network_task)
        self._start_uart()
        self._start_console()
        self._start_filedrop()
        self.spawn("series", self._series_task)
        self._start_clock()
        self._start_deliveries()
        self._start_worklist()
        self._start_workflow()
        supervising = aio.create_task(self.supervisor.run())
        gc.collect()
        device.note_heap()
        _collect_early()
        cfg = device.config
        log.info("app", "ready frames=tcp://%s:%d network=%s heap_free=%d" % (
            self._frames_host(), cfg.get("frames_port"), "up" if device.online else "down",
            device.heap_stats()["free"]))
        while not device.reboot_requested:
            await aio.sleep_ms(REBOOT_POLL_MS)
        log.info("app", "rebooting: releasing associations")
        self.supervisor.cancel_all()
        try:
            await aio.wait_for_ms(device.shutdown(), SHUTDOWN_MS)
        except (aio.TimeoutError, ModgateError, OSError):
            device.release_sessions()
        supervising.cancel()

    def _out_of_memory(self):
        self.device.out_of_memory += 1

    # ---- network --------------------------------------------------------------------------------

    def _frames_host(self):
        ip = self.board.get("network", {}).get("ip")
        return ip if isinstance(ip, str) and ip.count(".") == 3 else "0.0.0.0"

    def _look_at_network(self):
        """One look at the link: on the way up, start what needs it; on the way down, say so."""
        address = None
        if self.network is not None:
            try:
                address = self.network.address()
            except (ModgateError, OSError) as exc:
                log.warn("net", "link: " + str(exc))
        device = self.device
        if address and not device.online:
            device.online = True
            log.info("net", "link up, address " + address)
            self._start_frames()
            device.forwarder.nudge()
        elif not address and device.online:
            device.online = False
            log.warn("net", "link lost: deliveries wait for it; acquisition goes on to flash")
        return address

    async def _network_task(self, beat):
        """Bring the link up without ever blocking boot, watch it, and bring it up again when it
        stays down (mqtt_as's approach: never wait on the network, poll it)."""
        if self.network is None:
            return
        started = None
        while True:
            beat()
            stale = started is None or ticks_diff(ticks_ms(), started) > NET_RESTART_MS
            if not self.device.online and stale:
                started = ticks_ms()
                try:
                    self.network.start()
                except (ModgateError, OSError) as exc:
                    log.warn("net", "link cannot be started: " + str(exc))
            self._look_at_network()
            await aio.sleep_ms(NET_POLL_UP_MS if self.device.online else NET_POLL_DOWN_MS)

    # ---- inputs ---------------------------------------------------------------------------------

    def _start_frames(self):
        if self.frames is not None:
            return
        from modgate.ingest.tcp import TcpInput

        device = self.device
        cfg = device.config
        try:
            self.frames = TcpInput(
                device.acquirer,
                self._frames_host(),
                cfg.get("frames_port"),
                spawn=self._spawn_link,
                allow=cfg.get("frames_allow"),
                max_frame_bytes=cfg.get("frames_max_bytes"),
                idle_timeout_ms=cfg.get("frames_idle_timeout_ms"),
                chunk_bytes=self._chunk_bytes(),
            )
        except OSError as exc:
            log.error("ingest", "frame input cannot listen on port %d: %s" % (cfg.get("frames_port"), exc))
            return
        device.frame_input = self.frames
        self.spawn("frames-tcp", self.frames.serve)

    def _spawn_link(self, name, body):
        self.spawn(name, body, restart=False)

    def _chunk_bytes(self):
        # Larger reads mean fewer wake-ups per frame; the board data says what its RAM allows.
        return self.board.get("frame_chunk_bytes", 4096)

    def _start_uart(self):
        if self.ports.get("frame_uart") is None:
            return
        from modgate.ingest.link import FrameLink
        from modgate.port.uart import open_serial

        cfg = self.device.config
        link = FrameLink(
            open_serial(self.ports["frame_uart"]),
            self.device.acquirer,
            "uart",
            close_on_idle=False,
            max_frame_bytes=cfg.get("frames_max_bytes"),
            chunk_bytes=self._chunk_bytes(),
        )
        self.spawn("frames-uart", link.run)

    def _start_console(self):
        if self.ports.get("console_in") is None:
            return
        from modgate.console.shell import Console

        self.console = Console(self.device, self.ports["console_out"])
        self.spawn("console", self._console_task)

    async def _console_task(self, beat):
        console_in = self.ports["console_in"]
        target = self.ports.get("console_poll")
        self.console.start()
        while True:
            beat()
            if target is None:
                await aio.sleep_ms(20)
            elif not await aio.readable(target, CONSOLE_POLL_MS):
                continue
            data = console_in.read(CONSOLE_READ_BYTES)
            if data == b"":
                log.info("console", "console input closed")
                return
            if data:
                try:
                    await self.console.feed(data)
                except ModgateError as exc:
                    log.error("console", "line failed: " + str(exc))
                except MemoryError:
                    # The reply could not be built: answer with a line that needs no heap, so a
                    # host waiting for one hears why, and go on reading.
                    self.device.out_of_memory += 1
                    self.ports["console_out"].write(_NO_MEMORY_REPLY)
                    gc.collect()
                    log.error("console", "out of memory while answering a line")

    def _start_filedrop(self):
        cfg = self.device.config
        if not cfg.get("filedrop_enabled"):
            return
        from modgate.ingest.filedrop import FileDrop

        folder = cfg.get("filedrop_dir")
        if not folder.startswith("/"):
            folder = fs.join(self.device.state_dir, folder)
        fs.makedirs(folder)
        self.filedrop = FileDrop(self.device.acquirer, folder)
        self.spawn("filedrop", self._filedrop_task)

    async def _filedrop_task(self, beat):
        while True:
            beat()
            try:
                await self.filedrop.scan()
            except (ModgateError, OSError) as exc:
                log.error("ingest", "file drop scan failed: " + str(exc))
            await aio.sleep_ms(FILEDROP_SCAN_MS)

    async def _series_task(self, beat):
        while True:
            beat()
            self.device.acquirer.tick()
            await aio.sleep_ms(SERIES_TICK_MS)

    def _start_clock(self):
        """Trusted time (modgate.timesync): always running, idle until sntp_server is set."""
        from modgate.timesync import TimeSync

        self.device.timesync = TimeSync(self.device)
        self.spawn("clock", self.device.timesync.run)

    # ---- deliveries -----------------------------------------------------------------------------

    def _start_deliveries(self):
        """One worker per destination; (re)started whenever the destinations change, so a
        replaced destination never keeps talking to its old address."""
        self.supervisor.cancel_all("dest:")
        self.bound_ms = self.device.task_bound_ms()
        forwarder = self.device.forwarder
        for name in self.device.spool.destinations:
            self.spawn("dest:" + name, _worker(forwarder, name))


    def _destinations_changed(self):
        self._start_deliveries()
        self._start_workflow()

    # ---- workflow: the listener (Storage Commitment results) and the MPPS task ---------------

    def _start_workflow(self):
        """The listener while a destination confirms and `listen_port` is set (restarted when
        its settings change), and the `mpps` task while an MPPS SCP is configured."""
        device = self.device
        tasks = self.supervisor.tasks
        handler = device.commitments
        wanted = None
        if handler is not None and device.config.get("listen_port"):
            wanted = (handler, tuple(sorted(device.listener_settings().items())))
        if wanted != self._listening:
            self.supervisor.cancel("listener")
            self._listening = wanted
            if wanted is not None:
                self.spawn("listener", _listen(device, handler, dict(wanted[1])))
        steps = device.mpps()
        if steps is not None and "mpps" not in tasks:
            self.spawn("mpps", steps.run)

    def _start_worklist(self):
        """The `worklist` task (modgate.worklist) while a worklist SCP is configured; it ends by
        itself when the setting is emptied, and starts again when one is saved."""
        worklist = self.device.worklist()
        if worklist is not None and "worklist" not in self.supervisor.tasks:
            self.spawn("worklist", worklist.run)


def _collect_early():
    threshold = getattr(gc, "threshold", None)  # MicroPython's; CPython collects by its own rules
    if threshold is not None:
        threshold(max(GC_THRESHOLD_MIN, (gc.mem_free() + gc.mem_alloc()) // GC_THRESHOLD_SHARE))


def _listen(device, handler, settings):
    async def body(beat):
        from modgate.net.scp import ReportListener

        while True:
            while not device.online:  # the board's address is needed to bind
                beat()
                await aio.sleep_ms(NET_POLL_DOWN_MS)
            settings["buffer"] = device.pdu_buffers.get("@listener")
            settings["settle"] = device.settle_heap
            try:
                listener = ReportListener(settings, handler)
            except OSError as exc:
                log.error("net", "cannot listen on port %d: %s; trying again in %d s" % (
                    settings["port"], exc, LISTEN_RETRY_MS // 1000))
                for _ in range(LISTEN_RETRY_MS // NET_POLL_DOWN_MS):
                    beat()
                    await aio.sleep_ms(NET_POLL_DOWN_MS)
                continue
            device.listener = listener
            try:
                await listener.serve(beat)
            finally:
                device.listener = None

    return body


def _worker(forwarder, name):
    async def body(beat):
        await forwarder.run(name, beat)

    return body
