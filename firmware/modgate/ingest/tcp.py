"""The frame-protocol TCP input: a listener on a configured port serving several sources at once,
each checked against an allow-list of source addresses first."""

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.ingest.link import FrameLink
from modgate.port import aio, sockets

ACCEPT_POLL_MS = 500
FRAMES_PORT = 5555  # the frames_port setting's default (tests/unit/test_config.py)
REFUSED_LOG_MS = 60000  # a refused address is logged once a minute, however often it knocks
_REFUSED_KEPT = 8


class TcpInput:
    """Accepts up to `max_clients` sources; each connection is a FrameLink served by a task of
    its own, so a slow or stalled source holds up nobody else.

    `spawn(name, body)` starts a link's task (the device core supervises them; without it the
    links run as plain tasks). `allow` is a list of IPv4 addresses and A.B.C.D/N networks a
    source may connect from (config.allowed); a source outside it is closed at once and logged.
    None lets every source in (tools and tests; the device always passes its `frames_allow`).
    `link_options` are FrameLink keyword arguments (max_frame_bytes, frame_timeout_ms,
    idle_timeout_ms, chunk_bytes, ...).
    """

    def __init__(self, sink, host="0.0.0.0", port=FRAMES_PORT, max_clients=4, spawn=None, allow=None,
                 **link_options):
        self.sink = sink
        self.allow = allow
        self.refused = 0  # connections refused by the allow-list since boot
        self._refused_at = {}  # address -> ticks of its last log line
        self.listener = sockets.Listener(host, port)
        self.port = port
        self.max_clients = max_clients
        self.spawn = spawn
        self.link_options = link_options
        self.recent = []  # shared duplicate-suppression memory of every link
        self.links = []
        # Receive buffers outlive their links: one is taken now, while the heap is whole, and a
        # closed link's goes back here, so a modality that reconnects never needs a fresh block
        # of chunk_bytes (a busy heap has none: the connection would be refused).
        self._spare = [bytearray(link_options.get("chunk_bytes", 4096))]
        log.info("ingest", "frame input listening on " + host + ":" + str(port))

    async def serve(self, beat=None, stop=None):
        """Accept sources until `stop()` returns true (or for ever)."""
        while not (stop and stop()):
            if beat is not None:
                beat()
            conn = await self.listener.accept(ACCEPT_POLL_MS)
            if conn is not None:
                self._accept(conn)
        self.close()

    def _accept(self, conn):
        if not self._allowed(conn):
            return
        for link in self.links:
            if link.closed:
                self._spare.append(link.buf)
        self.links = [link for link in self.links if not link.closed]
        if len(self.links) >= self.max_clients:
            log.warn("ingest", "refusing " + conn.peer + ": " + str(self.max_clients) + " sources connected")
            conn.close()
            return
        try:
            buf = self._spare.pop() if self._spare else None
            link = FrameLink(conn, self.sink, "tcp:" + conn.peer, recent=self.recent, buf=buf,
                             **self.link_options)
        except MemoryError:
            # No block for its receive buffer: refuse it now (the source reconnects and resends)
            # rather than hold a connection nobody serves.
            log.error("ingest", "refusing " + conn.peer + ": no memory for its receive buffer")
            conn.close()
            return
        self.links.append(link)
        log.info("ingest", "source connected: " + conn.peer)
        if self.spawn is not None:
            self.spawn("frames:" + conn.peer, link.run)
        else:
            aio.create_task(link.run(_no_beat))

    def _allowed(self, conn):
        if self.allow is None:
            return True
        from modgate import config

        address = conn.peer.rpartition(":")[0]
        if config.allowed(self.allow, address):
            return True
        conn.close()
        self.refused += 1
        now = ticks_ms()
        last = self._refused_at.get(address)
        if last is None or ticks_diff(now, last) >= REFUSED_LOG_MS:
            if last is None and len(self._refused_at) >= _REFUSED_KEPT:
                self._refused_at = {}
            self._refused_at[address] = now
            log.warn("ingest", "refused frame source %s: not in frames_allow (%s); %d refused since boot"
                     % (conn.peer, " ".join(self.allow) or "empty: TCP frames are off", self.refused))
        return False

    def close(self):
        for link in self.links:
            link.close()
        self.links = []
        self.listener.close()


def _no_beat():
    pass
