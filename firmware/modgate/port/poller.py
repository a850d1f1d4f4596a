"""The device loop's single wait: every readable input (console, frame links, listeners) is
registered here with a callback, so the loop sleeps in one poll() with a bounded timeout."""

import select


class Poller:
    def __init__(self):
        self._poll = select.poll()
        self._callbacks = {}

    def register(self, stream, callback):
        """Call `callback()` whenever `stream` (socket, file, UART) has input or hung up."""
        self._poll.register(stream, select.POLLIN)
        self._callbacks[id(stream)] = (stream, callback)

    def unregister(self, stream):
        if self._callbacks.pop(id(stream), None) is not None:
            try:
                self._poll.unregister(stream)
            except (OSError, KeyError, ValueError):
                pass

    def wait(self, timeout_ms):
        """Wait up to `timeout_ms` and run the callbacks of every ready stream; return their count."""
        ready = self._poll.poll(timeout_ms)
        for entry in ready:
            stream = entry[0]
            item = self._lookup(stream)
            if item is not None:
                item[1]()
        return len(ready)

    def _lookup(self, stream):
        found = self._callbacks.get(id(stream))
        if found is not None:
            return found
        # CPython's poll reports file descriptors, not the registered objects.
        for item in self._callbacks.values():
            fileno = getattr(item[0], "fileno", None)
            if fileno is not None and fileno() == stream:
                return item
        return None
