"""The device's main job: boot the board, recover the flash, then serve inputs and deliver.

One cooperative loop, no threads: it waits in the frame input's poll (bounded), then serves the
console, the file drop, series timeouts and at most one delivery attempt, and feeds the watchdog.
Every wait is bounded, so a stuck peer or a silent source never stops the others.
"""

import gc
import json

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import ConfigError, ModgateError
from modgate.port import fs

IDLE_WAIT_MS = 50
FILEDROP_SCAN_MS = 1000
CONSOLE_READ_BYTES = 256


def main(argv):
    import board

    ports = board.start(argv)
    options = ports.get("options") or {}
    # The PDU buffer is the device's largest block: take it while the heap is unfragmented.
    gc.collect()
    from modgate.device import Device

    device = Device(ports)
    _apply_boot_options(device, options)
    log.configure(level=device.config.get("log_level"))
    loop = Loop(device, ports, options)
    return loop.run()


def _apply_boot_options(device, options):
    """`--config FILE` and `--dest AET@HOST:PORT` from the emulator: applied and saved at boot."""
    config_file = options.get("config")
    if config_file:
        try:
            values = json.loads(fs.read_bytes(config_file))
        except (OSError, ValueError) as exc:
            raise ConfigError("cannot read --config " + config_file + ": " + str(exc))
        for key in values:
            device.config.set(key, values[key])
    dests = options.get("dest") or []
    if isinstance(dests, str):
        dests = [dests]
    if dests:
        parsed = []
        for text in dests:
            try:
                aet, where = text.split("@", 1)
                host, port = where.rsplit(":", 1)
                parsed.append({"name": aet.lower(), "aet": aet, "host": host, "port": int(port)})
            except ValueError:
                raise ConfigError("--dest wants AET@HOST:PORT, not " + repr(text))
        device.config.set("destinations", parsed)
    if options.get("frames-port"):
        device.config.set("frames_port", options["frames-port"])
    if config_file or dests or options.get("frames-port"):
        device.config.save()
        device.apply_config()


class Loop:
    def __init__(self, device, ports, options):
        from modgate.console.shell import Console
        from modgate.ingest.tcp import TcpInput

        self.device = device
        self.ports = ports
        cfg = device.config
        host = ports["board"].get("network", {}).get("ip") or "0.0.0.0"
        net_up = ports.get("net_up")
        if net_up is not None:
            host = net_up() or host
        self.frames = TcpInput(
            device.acquirer,
            host,
            cfg.get("frames_port"),
            max_frame_bytes=cfg.get("frames_max_bytes"),
            idle_timeout_ms=cfg.get("frames_idle_timeout_ms"),
            # Larger reads mean fewer wake-ups per frame; the board data says what its RAM allows.
            chunk_bytes=ports["board"].get("frame_chunk_bytes", 4096),
        )
        self.uart_link = None
        if ports.get("frame_uart") is not None:
            from modgate.ingest.link import FrameLink
            from modgate.port.uart import open_serial

            self.uart_link = FrameLink(
                open_serial(ports["frame_uart"]),
                device.acquirer,
                "uart",
                close_on_idle=False,
                max_frame_bytes=cfg.get("frames_max_bytes"),
            )
        self.filedrop = None
        if cfg.get("filedrop_enabled"):
            from modgate.ingest.filedrop import FileDrop

            folder = cfg.get("filedrop_dir")
            if not folder.startswith("/"):
                folder = fs.join(device.state_dir, folder)
            fs.makedirs(folder)
            self.filedrop = FileDrop(device.acquirer, folder)
        self.console_in = ports.get("console_in")
        self.console = Console(device, ports["console_out"]) if self.console_in is not None else None
        self.watchdog = ports.get("watchdog")
        self.last_scan = ticks_ms()
        gc.collect()
        self.device.note_heap()
        free = self.device.heap_stats()["free"]
        log.info("app", "ready frames=tcp://%s:%d heap_free=%d" % (host, cfg.get("frames_port"), free))

    def run(self):
        if self.console is not None:
            self.console.start()
        busy = False
        while True:
            try:
                busy = self._turn(busy)
            except Exception as exc:  # noqa: BLE001 - the device must outlive any one failure
                # Everything accepted is already on flash; log, free what we can, keep serving.
                log.error("app", "loop: %s: %s" % (type(exc).__name__, exc))
                if isinstance(exc, MemoryError):
                    self.device.out_of_memory += 1
                gc.collect()
                self.device.note_heap()
                busy = False
            if self.watchdog is not None:
                self.watchdog.feed()
            if self.device.reboot_requested:
                self.device.shutdown()
                self.ports["reboot"]()
                return 0

    def _turn(self, busy):
        """One pass over every service; True when a delivery was made (so do not sleep)."""
        self.frames.step(0 if busy else self._wait_ms())
        if self.uart_link is not None:
            if self.uart_link.stream.readable(0):
                self.uart_link.on_readable()
            self.uart_link.step()
        self._serve_console()
        self._scan_filedrop()
        self.device.acquirer.tick()
        return self._deliver()

    def _wait_ms(self):
        due = self.device.forwarder.next_due_ms()
        if due is None or due > IDLE_WAIT_MS:
            return IDLE_WAIT_MS
        return due

    def _serve_console(self):
        if self.console is None:
            return
        data = self.console_in.read(CONSOLE_READ_BYTES)
        if data:
            try:
                self.console.feed(data)
            except ModgateError as exc:
                log.error("console", "line failed: " + str(exc))

    def _scan_filedrop(self):
        if self.filedrop is None or ticks_diff(ticks_ms(), self.last_scan) < FILEDROP_SCAN_MS:
            return
        self.last_scan = ticks_ms()
        try:
            self.filedrop.scan()
        except (ModgateError, OSError) as exc:
            log.error("ingest", "file drop scan failed: " + str(exc))

    def _deliver(self):
        try:
            worked = self.device.forwarder.step()
        except ModgateError as exc:
            log.error("spool", "delivery step failed: " + str(exc))
            return False
        if worked:
            gc.collect()
            self.device.note_heap()
            log.debug("app", "delivery step done, heap_free=%d" % self.device.heap_stats()["free"])
        return worked

