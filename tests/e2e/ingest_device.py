"""Device side of the ingest end-to-end tests: the real frame input (TCP listener or serial line)
on real MicroPython, in front of a small file sink defined here (the app's acquire/spool are not
part of these tests). One JSON line per sink event on stdout.

usage: micropython ingest_device.py tcp PORT DIR [OPTIONS] | serial PATH DIR [OPTIONS]
options: --frame-timeout-ms N --idle-timeout-ms N --max-frame N --chunk N --busy-first N --run-ms N
The process stops after --run-ms, or when the file DIR/stop appears.
"""

import json
import sys

from modgate import log
from modgate.compat import deadline, remaining_ms
from modgate.port import aio, fs


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    try:
        sys.stdout.flush()
    except AttributeError:
        pass


class Target:
    def __init__(self, header, path):
        self.header = header
        self.path = path
        self.file = fs.open_file(path, "wb")
        self.size = 0

    def write(self, chunk):
        self.file.write(chunk)
        self.size += len(chunk)


class FileSink:
    """Each frame into DIR/<uid>-<index>.raw, written to a temporary name and renamed on commit.
    Series frames share the UID of their series (as the multi-frame object would)."""

    def __init__(self, folder, busy_first=0):
        self.folder = folder
        self.count = 0
        self.series = {}
        self.busy_left = busy_first

    def busy(self):
        if self.busy_left:
            self.busy_left -= 1
            return 50
        return 0

    def begin_frame(self, header):
        self.count += 1
        return Target(header, fs.join(self.folder, "incoming-" + str(self.count) + ".tmp"))

    def commit_frame(self, target):
        h = target.header
        target.file.flush()
        fs.sync_file(target.file)
        target.file.close()
        if h["kind"] == "single":
            uid = "2.25.1000" + str(self.count)
        else:
            uid = self.series.get(h["series_id"])
            if uid is None:
                uid = "2.25.2000" + str(h["series_id"])
                self.series[h["series_id"]] = uid
            if h["kind"] == "series_end":
                del self.series[h["series_id"]]
        fs.rename(target.path, fs.join(self.folder, uid + "-" + str(h["frame_index"]) + ".raw"))
        emit(event="commit", uid=uid, sequence=h["sequence"], kind=h["kind"], series_id=h["series_id"],
             frame_index=h["frame_index"], bytes=target.size, source=h["source"], context=h["context"])
        return uid

    def abort_frame(self, target):
        target.file.close()
        fs.remove(target.path)
        emit(event="abort", sequence=target.header["sequence"])

    def source_lost(self, source_id):
        emit(event="source_lost", source=source_id, open_series=sorted(self.series))


def option(argv, name, default):
    return int(argv[argv.index(name) + 1]) if name in argv else default


def main(argv):
    mode, where, folder = argv[0], argv[1], argv[2]
    log.configure(stream=sys.stderr, level="debug")
    sink = FileSink(folder, option(argv, "--busy-first", 0))
    link_options = {
        "frame_timeout_ms": option(argv, "--frame-timeout-ms", 2000),
        "idle_timeout_ms": option(argv, "--idle-timeout-ms", 60000),
        "max_frame_bytes": option(argv, "--max-frame", 8 << 20),
        "chunk_bytes": option(argv, "--chunk", 4096),
    }
    until = deadline(option(argv, "--run-ms", 60000))
    stop_file = fs.join(folder, "stop")

    def stop():
        return remaining_ms(until) == 0 or fs.exists(stop_file)

    if mode == "tcp":
        from modgate.ingest.tcp import TcpInput

        source = TcpInput(sink, "127.0.0.1", int(where), **link_options)
        emit(event="ready")
        aio.run(source.serve(stop=stop))
    else:
        from modgate.ingest.link import FrameLink
        from modgate.port.uart import open_serial

        link_options["close_on_idle"] = False
        link = FrameLink(open_serial(where), sink, "uart:" + where, **link_options)
        emit(event="ready")
        aio.run(link.run(lambda: None, stop))
        link.close()
    emit(event="stopped")
    return 0


sys.exit(main(sys.argv[1:]))
