"""Helpers shared by the firmware unit tests, on CPython and MicroPython alike."""

import os

from modgate.port import aio, fs

_counter = [0]


def scratch_dir(name):
    """A fresh, empty folder for one test (removed by the caller's cleanup via remove_tree)."""
    root = os.getenv("MODGATE_TEST_TMP") or "/tmp"
    _counter[0] += 1
    path = fs.join(
        root, "mg-" + name + "-" + str(os.getpid() if hasattr(os, "getpid") else 0) + "-" + str(_counter[0])
    )
    remove_tree(path)
    fs.makedirs(path)
    return path


def remove_tree(path):
    if not fs.exists(path):
        return
    if fs.isdir(path):
        for name in fs.listdir(path):
            remove_tree(fs.join(path, name))
        os.rmdir(path)
    else:
        fs.remove(path)


def settings(keys, **values):
    """A layer's settings view: the schema's defaults (modgate.config.view) with `values` put in
    as they are, so a test may go below the product's limits (a spool budget of a few KB)."""
    from modgate import config

    out = config.view(keys)
    for key in values:
        if key not in out:
            raise KeyError(key)
        out[key] = values[key]
    return out


class Contexts:
    """The device's context provider (modgate.contexts), reduced to what the acquirer asks."""

    def __init__(self, uid_gen):
        self.uid_gen = uid_gen
        self.study = uid_gen.new()

    def for_acquisition(self, header_context, source=""):
        # The facts a source must state for the SC objects (issue 16: nothing is made up).
        context = {"patient_name": "TEST^ACQ", "patient_id": "A1", "study_instance_uid": self.study,
                   "conversion_type": "DI", "burned_in_annotation": "NO"}
        if header_context:
            context.update(header_context)
        context["now"] = (2026, 11, 27, 12, 0, 0)
        return context


def run(awaitable):
    """Run one coroutine of the device core to its end (a fresh event loop each time)."""
    return aio.run(awaitable)


def listener(host="127.0.0.1"):
    """(sockets.Listener, port) on a random free port: MicroPython's sockets cannot say which
    port binding 0 gave, and runs on several runtimes at once must not collide."""
    from modgate.port import entropy, sockets

    for _ in range(20):
        port = 20000 + int.from_bytes(entropy.random_bytes(2), "little") % 40000
        try:
            return sockets.Listener(host, port), port
        except OSError:
            continue
    raise OSError("no free port")
