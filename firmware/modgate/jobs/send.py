"""Job `send`: the device's C-STORE SCU on Part 10 files (host `modgate send`), flags as storescu's.

usage: main.py send [-aet OURS] [-aec THEIRS] [-pdu N] [--timeouts CONNECT,ACSE,DIMSE] [-v]
       [--max-objects N] [--files-from LIST] [--tls-ca FILE [--tls-cert FILE] [--tls-key FILE]]
       [--user NAME [--passcode TEXT]] HOST PORT [FILE|FOLDER...]
--tls-ca makes the association DICOM TLS (PS3.15 B.9), the server verified against that CA
bundle (storescu's +tls with +cf); --tls-cert/--tls-key add our certificate (mutual TLS).
--user/--passcode propose User Identity (PS3.7 D.3.3.7; the passcode only over TLS).
A FOLDER sends each file in it, in the folder's own order (as storescu's +sd); LIST is a text file
of paths, one per line (how the host hands over many files). Names are read one at a time, so a
large set costs no heap, where as many arguments would (200 paths in argv cost ~13 KB).
Prints one line per file: `OK|WARNING|FAILED <status|transient|permanent> <file> <message>`, then
a summary line: counts, and the rate of what was delivered (none when nothing was), and the heap
in use after a collection. Exit 0 when every file was delivered, 1 when any failed, 2 on usage
errors. Files share one association (as storescu's).
"""

import gc
import sys

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import DeliveryError, ModgateError
from modgate.port import fs

_VALUED = ("-aet", "-aec", "-pdu", "--timeouts", "--max-objects", "--files-from", "--tls-ca", "--tls-cert",
           "--tls-key", "--user", "--passcode")
# The jobs' PDU buffer (and the max PDU they advertise) without -pdu: storescu's 16 KB where the
# heap holds it, since a peer's 16 KB PDU then goes out in one write where a 4 KB buffer takes
# four (~2.5x the time); else 8 or 4 KB. Besides its buffer a send job needs ~6 KB per byte of
# a machine word (measured: ~45 KB on x86-64, ~24 KB on armhf, transients included).
JOB_BUFFER_SIZES = (16384, 8192, 4096)
JOB_NEED_PER_WORD_BYTE = 6 * 1024
# A TLS association's peak beside that (mbedTLS's record buffers and handshake, from the GC heap:
# ~32 KB on armhf, ~40 KB with 64-bit words; docs/benchmarks.md).
JOB_TLS_NEED = 40 * 1024


def parse(argv, defaults=None):
    """(options dict, positional list); ValueError on a usage error."""
    opts = dict(defaults or {})
    opts.setdefault("-aet", "MODGATE")
    opts.setdefault("-aec", "ANY-SCP")
    rest = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            if i + 1 >= len(argv):
                raise ValueError(arg + " needs a value")
            opts[arg] = argv[i + 1]
            i += 2
        elif arg in ("-v", "--verbose"):
            opts["-v"] = True
            i += 1
        elif arg.startswith("-") and len(arg) > 1:
            raise ValueError("unknown option " + arg)
        else:
            rest.append(arg)
            i += 1
    return opts, rest


def open_session(dest, settings, opts):
    """The job's StoreSession, its heap laid out as a board's: the log (to stderr, a small ring
    for a console's `log tail`), then the PDU buffer while the heap is one free block, then the
    passing peak of loading the SOP class list, then the network stack."""
    log.configure(ring_bytes=512, level="debug" if opts.get("-v") else "info")
    reserve_buffer(settings)
    from modgate.net import storage_classes

    storage_classes()
    from modgate.net.scu import StoreSession

    return StoreSession(dest, settings)


def reserve_buffer(settings):
    """The PDU buffer, taken before anything else while the heap is one free block: of -pdu's
    size, or the largest of JOB_BUFFER_SIZES the heap leaves room beside. The session adopts
    it; net.receive_buffer is the one formula of its size."""
    from modgate.net import receive_buffer

    if settings.get("max_pdu") is None:
        settings["max_pdu"] = _fitting_buffer_size(JOB_TLS_NEED if settings.get("tls_ca_file") else 0)
    settings["buffer"] = receive_buffer(settings["max_pdu"])


def _fitting_buffer_size(tls_need=0):
    free = getattr(gc, "mem_free", None)
    if free is None:
        return JOB_BUFFER_SIZES[0]  # CPython: no heap limit to respect
    gc.collect()
    room = free() - JOB_NEED_PER_WORD_BYTE * (8 if sys.maxsize > 1 << 32 else 4) - tls_need
    for size in JOB_BUFFER_SIZES:
        if size <= room:
            return size
    return JOB_BUFFER_SIZES[-1]


def session_args(opts, host, port):
    """(dest, settings) for StoreSession from parsed options."""
    settings = {"calling_aet": opts["-aet"], "max_pdu": int(opts["-pdu"]) if "-pdu" in opts else None}
    if "--max-objects" in opts:
        settings["max_objects_per_association"] = int(opts["--max-objects"])
    if "--timeouts" in opts:
        parts = opts["--timeouts"].split(",")
        for key, value in zip(("connect_timeout_ms", "acse_timeout_ms", "dimse_timeout_ms"), parts):
            if value:
                settings[key] = int(value)
    dest = {"aet": opts["-aec"], "host": host, "port": int(port)}
    if "--tls-ca" in opts:
        dest["tls"] = True
        settings["tls_ca_file"] = opts["--tls-ca"]
        settings["tls_cert_file"] = opts.get("--tls-cert", "")
        settings["tls_key_file"] = opts.get("--tls-key", "")
    elif "--tls-cert" in opts or "--tls-key" in opts:
        raise ValueError("--tls-cert and --tls-key need --tls-ca")
    settings["user_identity"] = opts.get("--user", "")
    settings["user_passcode"] = opts.get("--passcode", "")
    return dest, settings


def _heap():
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def main(argv):
    try:
        opts, rest = parse(argv)
        if len(rest) < 2 or (len(rest) < 3 and "--files-from" not in opts):
            raise ValueError("need HOST PORT FILE... (or --files-from LIST)")
        dest, settings = session_args(opts, rest[0], rest[1])
    except ValueError as exc:
        sys.stderr.write("send: " + str(exc) + "\n")
        sys.stderr.write("usage: send [-aet OURS] [-aec THEIRS] [-pdu N] [--files-from LIST] HOST PORT "
                         "[FILE|FOLDER...]\n")
        return 2
    # Files of SOP classes the device never makes are proposed when met (storescu proposes
    # what its files need, too); a pre-scan would read every file's meta twice.
    settings["auto_propose"] = True
    try:
        session = open_session(dest, settings, opts)
    except ModgateError as exc:
        sys.stderr.write("send: " + str(exc) + "\n")
        return 2
    from modgate.port import aio

    return aio.run(_send_all(session, rest[2:], opts.get("--files-from")))


async def _send_all(session, paths, files_from):
    failed = 0
    sent = 0
    sent_bytes = 0
    start = ticks_ms()
    for path in _files(paths, files_from):
        try:
            code, klass, message = await session.store(path)
            if klass == "duplicate":
                # A host tool cannot tell whether the archive's copy is this file: not delivered.
                failed += 1
                print("FAILED permanent " + path + " 0x%04X " % code + message)
                continue
            print(("OK " if klass == "success" else "WARNING ") + "0x%04X " % code + path + " " + message)
        except DeliveryError as exc:
            failed += 1
            print("FAILED " + ("transient " if exc.transient else "permanent ") + path + " " + str(exc))
            continue
        except ModgateError as exc:
            failed += 1
            print("FAILED permanent " + path + " " + str(exc))
            continue
        sent += 1
        try:
            sent_bytes += fs.size(path)
        except OSError:
            pass
    await session.release()
    elapsed = ticks_diff(ticks_ms(), start) or 1
    gc.collect()
    line = "SUMMARY %d sent, %d failed, %d ms" % (sent, failed, elapsed)
    if sent:
        # Rates of what was delivered only: a failed file moved no data worth a rate.
        line += ", %.1f objects/s, %.2f MB/s" % (sent * 1000.0 / elapsed, sent_bytes / 1000.0 / elapsed)
    print(line + ", heap in use %d" % _heap())
    return 1 if failed else 0


def _files(paths, files_from=None):
    """Each FILE argument and each file in each FOLDER argument, then the same for each line
    of LIST."""
    for path in paths:
        for inner in _expand(path):
            yield inner
    if files_from:
        with fs.open_file(files_from, "r") as listing:
            while True:
                line = listing.readline()
                if not line:
                    return
                line = line.strip()
                if line:
                    for inner in _expand(line):
                        yield inner


def _expand(path):
    """A file itself, or the files of a folder, one name at a time (as storescu's +sd)."""
    if not fs.isdir(path):
        yield path
        return
    for name in fs.iterdir(path):
        inner = fs.join(path, name)
        if not fs.isdir(inner):
            yield inner
