"""Host transport: pyserial serial_for_url (socket://) to the real firmware console; typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_server import ConsoleServer
from modgate_host import transport
from modgate_host.transport import DeviceConsole


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConsoleServer]:
    srv = ConsoleServer(tmp_path)
    yield srv
    srv.close()


def test_call_returns_data_and_leaves_human_mode_after(server: ConsoleServer) -> None:
    with DeviceConsole(server.url, timeout_s=5) as dev:
        assert dev.call("status")["queue_depth"] == 1
        assert dev.call("config", "get", "ae_title") == {"key": "ae_title", "value": "MODGATE"}
        data = dev.call("config", "set", "institution_name", "General Hospital \"East\"")
        assert data["value"] == 'General Hospital "East"'
        assert server.device.config.get("institution_name") == 'General Hospital "East"'
    assert server.received.endswith(b"lock\rjson off\r")


def test_typed_errors(server: ConsoleServer) -> None:
    with DeviceConsole(server.url, timeout_s=5) as dev:
        with pytest.raises(transport.CommandRejected) as rejected:
            dev.call("frobnicate")
        assert rejected.value.code == "unknown"
        with pytest.raises(transport.InvalidValue, match="ae_title"):
            dev.call("config", "set", "ae_title", "A\\B")
        dev.call("config", "set", "pin", "4321")
        dev.lock()
        with pytest.raises(transport.PermissionDenied, match="unlock"):
            dev.call("config", "save")
        with pytest.raises(transport.PermissionDenied) as denied:
            dev.unlock("0000")
        assert denied.value.code == "denied"
        with pytest.raises(transport.PermissionDenied) as locked:
            dev.unlock("4321")
        assert locked.value.code == "locked"
        server.device.unreachable.add("archive")
        with pytest.raises(transport.OperationFailed, match="refused"):
            dev.call("dest", "echo", "archive")


def test_unreachable_port_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(transport.TransportError, match="cannot open"):
        DeviceConsole(str(tmp_path / "no-such-tty")).open()


def test_silent_peer_times_out(tmp_path: Path) -> None:
    with pytest.raises(transport.TransportError, match="no reply"):
        DeviceConsole("loop://", timeout_s=0.5).open()  # loop:// echoes our own line back: no reply


@pytest.mark.parametrize("value", ["plain", "two words", 'q"uote', "", "back\\slash", "it's"])
def test_quote_matches_firmware_split(value: str) -> None:
    from modgate.console.tokens import split

    assert split("x " + transport.quote(value)) == ["x", value]


class _ShortOfMemory:
    """Runs out of heap the first `times` calls of a device method, as a busy board may."""

    def __init__(self, method: Any, times: int) -> None:
        self.method = method
        self.left = times
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise MemoryError("memory allocation failed")
        return self.method(*args)


def test_a_read_or_a_repeatable_change_is_asked_again_when_the_device_had_no_heap(
        server: ConsoleServer) -> None:
    status = _ShortOfMemory(server.device.status, 1)
    add = _ShortOfMemory(server.device.add_destination, 1)
    remove = _ShortOfMemory(server.device.remove_destination, 1)
    server.device.status = status
    server.device.add_destination = add
    server.device.remove_destination = remove
    with DeviceConsole(server.url, timeout_s=5) as dev:
        assert dev.call("status")["queue_depth"] == 1
        assert status.calls == 2
        dev.call("config", "set", "pin", "4321")  # a destination needs a PIN first (commissioning)
        # Adding the same destination twice ends where adding it once does.
        dev.call("dest", "add", "pacs", "PACS", "127.0.0.1", "104")
        assert add.calls == 2
        assert [d["name"] for d in dev.call("dest", "list")].count("pacs") == 1
        with pytest.raises(transport.OperationFailed, match="out of memory"):
            dev.call("dest", "remove", "pacs")
        assert remove.calls == 1  # it may have run before its reply failed: never twice


def test_the_worklist_reads_are_read_only_and_its_changes_are_not() -> None:
    assert transport._repeatable(("worklist", "list", 21)) and transport._repeatable(("worklist", "show", 3))
    for words in (("worklist", "refresh"), ("worklist", "select", 3), ("worklist", "clear")):
        assert not transport._repeatable(words), words


def test_the_session_commands_that_change_nothing_twice_are_asked_again() -> None:
    # `json on` opens every session: on a busy board a refusal for heap must not end it.
    assert transport._repeatable(("json", "on")) and transport._repeatable(("lock",))
    assert transport._repeatable(("config", "set", "pin", "1234"))
    assert transport._repeatable(("config", "save"))
    # A wrong PIN counts against the lockout each time it is tried; the rest act once each.
    for words in (("unlock", "1234"), ("reboot",), ("dest", "remove", "pacs"), ("queue", "retry")):
        assert not transport._repeatable(words), words
