"""The frame-protocol TCP input: a listener on a configured port serving several sources at once."""

from modgate import log
from modgate.ingest.link import FrameLink
from modgate.port import aio, sockets

ACCEPT_POLL_MS = 500
FRAMES_PORT = 5555  # the frames_port setting's default (tests/unit/test_config.py)


class TcpInput:
    """Accepts up to `max_clients` sources; each connection is a FrameLink served by a task of
    its own, so a slow or stalled source holds up nobody else.

    `spawn(name, body)` starts a link's task (the device core supervises them; without it the
    links run as plain tasks). `link_options` are FrameLink keyword arguments (max_frame_bytes,
    frame_timeout_ms, idle_timeout_ms, chunk_bytes, ...).
    """

    def __init__(self, sink, host="0.0.0.0", port=FRAMES_PORT, max_clients=4, spawn=None, **link_options):
        self.sink = sink
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

    def close(self):
        for link in self.links:
            link.close()
        self.links = []
        self.listener.close()


def _no_beat():
    pass
