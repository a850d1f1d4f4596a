"""The frame-protocol TCP input: a listener on a configured port serving several sources at once."""

from modgate import log
from modgate.ingest.link import FrameLink
from modgate.port import sockets


class TcpInput:
    """Accepts up to `max_clients` sources; each connection is a FrameLink with its own receiver.

    `link_options` are FrameLink keyword arguments (max_frame_bytes, frame_timeout_ms,
    idle_timeout_ms, chunk_bytes, ...). Drive it with `step(timeout_ms)` from the app loop.
    """

    def __init__(self, sink, host="0.0.0.0", port=4100, max_clients=4, **link_options):
        self.sink = sink
        self.listener = sockets.Listener(host, port)
        self.port = port
        self.max_clients = max_clients
        self.link_options = link_options
        self.recent = []  # shared duplicate-suppression memory of every link
        self.links = []
        self._poller = sockets.Poller()
        self._owners = {}  # poll result key -> link (or None for the listener)
        self._watch(self.listener.sock, None)
        log.info("ingest", "frame input listening on " + host + ":" + str(port))

    def step(self, timeout_ms=0):
        """Wait up to `timeout_ms` for activity, then serve it and apply timeouts."""
        for key, _events in self._poller.poll(timeout_ms):
            if key not in self._owners:
                continue
            link = self._owners[key]
            if link is None:
                self._accept()
            elif not link.on_readable():
                self._drop(link)
        for link in self.links[:]:
            if not link.step():
                self._drop(link)

    def _accept(self):
        conn = self.listener.accept(0)
        if conn is None:
            return
        if len(self.links) >= self.max_clients:
            log.warn("ingest", "refusing " + conn.peer + ": " + str(self.max_clients) + " sources connected")
            conn.close()
            return
        link = FrameLink(conn, self.sink, "tcp:" + conn.peer, recent=self.recent, **self.link_options)
        self.links.append(link)
        self._watch(link.pollable(), link)
        log.info("ingest", "source connected: " + conn.peer)

    def _watch(self, obj, link):
        # CPython's poll reports file descriptors, MicroPython's the registered object: map both.
        self._poller.register(obj)
        self._owners[obj] = link
        fileno = getattr(obj, "fileno", None)
        if fileno is not None:
            self._owners[fileno()] = link

    def _drop(self, link):
        for key in [k for k in self._owners if self._owners[k] is link]:
            del self._owners[key]
            try:
                self._poller.unregister(key)
            except (OSError, KeyError, ValueError, TypeError):
                pass
        if link in self.links:
            self.links.remove(link)

    def close(self):
        for link in self.links[:]:
            link.close()
            self._drop(link)
        self.listener.close()
