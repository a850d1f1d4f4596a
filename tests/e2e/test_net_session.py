"""StoreSession as the forwarder uses it (CPython, in-process) against a pynetdicom SCP:
association reuse, the per-association object bound, idle expiry, and a peer that drops an idle
association between two objects."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from modgate.errors import ConfigError, DeliveryError
from modgate.net.scu import StoreSession
from peers import make_sc, pynetdicom_scp


def run(coro: Any) -> Any:
    """The session's coroutines, one event loop each (the device runs them in its core)."""
    return asyncio.run(coro)


def session(port: int, **settings: Any) -> StoreSession:
    base = {"calling_aet": "MODGATE", "max_pdu": 16384, "idle_timeout_ms": 300, "dimse_timeout_ms": 5000}
    base.update(settings)
    return StoreSession({"aet": "PYSCP", "host": "127.0.0.1", "port": port}, base)


def test_objects_share_an_association_up_to_the_bound(tmp_path: Path) -> None:
    files = [make_sc(tmp_path / f"{i}.dcm", seed=i) for i in range(5)]
    with pynetdicom_scp() as peer:
        s = session(peer.port, max_objects_per_association=2)
        assocs = []
        for f in files:
            assert run(s.store(str(f))) == (0, "success", "stored")
            assocs.append(s.assoc)
        run(s.release())
    assert len(peer.received) == 5
    # Released (orderly) after every second object; the next object opens a new association.
    assert [a is None for a in assocs] == [False, True, False, True, False]
    assert len({id(a) for a in assocs if a is not None}) == 3


def test_idle_expiry_and_echo(tmp_path: Path) -> None:
    with pynetdicom_scp() as peer:
        s = session(peer.port)
        ms = run(s.echo())
        assert 0 <= ms < 5000
        assert not s.idle_expired()
        time.sleep(0.4)
        assert s.idle_expired()
        run(s.release())
        assert s.assoc is None and not s.idle_expired()
        assert run(s.store(str(make_sc(tmp_path / "a.dcm"))))[1] == "success"
        run(s.release())


def test_peer_dropping_an_idle_association_is_survived(tmp_path: Path) -> None:
    src = make_sc(tmp_path / "a.dcm")
    with pynetdicom_scp() as peer:
        s = session(peer.port, idle_timeout_ms=60000)
        run(s.store(str(src)))
        old = s.assoc
        # The archive releases the idle association on its side (its release() waits for our RP).
        releasing = [threading.Thread(target=a.release) for a in peer_associations(peer)]
        assert len(releasing) == 1
        releasing[0].start()
        time.sleep(0.3)
        started = time.monotonic()
        assert run(s.store(str(src)))[1] == "success"
        assert time.monotonic() - started < 5
        assert s.assoc is not old
        releasing[0].join(5)
        assert not releasing[0].is_alive()
        run(s.release())


def peer_associations(peer: Any) -> list[Any]:
    import gc

    from pynetdicom.association import Association

    return [o for o in gc.get_objects() if isinstance(o, Association) and o.is_established
            and o.mode == "acceptor"]


def test_bad_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        StoreSession({"aet": "A\\B", "host": "127.0.0.1", "port": 104}, {"calling_aet": "MODGATE"})
    with pytest.raises(ConfigError):
        StoreSession({"aet": "PYSCP", "host": "127.0.0.1", "port": 104}, {"calling_aet": "    "})
    with pytest.raises(ConfigError):
        StoreSession({"aet": "PYSCP", "host": "127.0.0.1", "port": 104}, {"calling_aet": "M", "max_pdu": 100})


def test_missing_file_is_permanent(tmp_path: Path) -> None:
    s = session(1)
    with pytest.raises(DeliveryError) as info:
        run(s.store(str(tmp_path / "missing.dcm")))
    assert not info.value.transient
