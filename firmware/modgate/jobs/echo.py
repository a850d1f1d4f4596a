"""Job `echo`: the device's C-ECHO SCU (host `modgate echo`), flags as dcmtk's echoscu.

usage: main.py echo [-aet OURS] [-aec THEIRS] [-pdu N] [--timeouts CONNECT,ACSE,DIMSE]
       [--tls-ca FILE [--tls-cert FILE] [--tls-key FILE]] [--user NAME [--passcode TEXT]] HOST PORT
Prints `OK <ms> ms` or `FAILED <transient|permanent> <reason>`; exit 0, 1 on failure, 2 on usage.
"""

import sys

from modgate.errors import DeliveryError, ModgateError
from modgate.jobs.send import open_session, parse, session_args


def main(argv):
    try:
        opts, rest = parse(argv)
        if len(rest) != 2:
            raise ValueError("need HOST PORT")
        dest, settings = session_args(opts, rest[0], rest[1])
    except ValueError as exc:
        sys.stderr.write("echo: " + str(exc) + "\n")
        return 2
    try:
        session = open_session(dest, settings, opts)
    except ModgateError as exc:
        sys.stderr.write("echo: " + str(exc) + "\n")
        return 2
    from modgate.port import aio

    return aio.run(_echo(session))


async def _echo(session):
    try:
        ms = await session.echo()
    except DeliveryError as exc:
        print("FAILED " + ("transient " if exc.transient else "permanent ") + str(exc))
        return 1
    except ModgateError as exc:
        sys.stderr.write("echo: " + str(exc) + "\n")
        return 2
    await session.release()
    print("OK %d ms" % ms)
    return 0
