"""`modgate status|config|provision|queue|logs|set-time|dest` against the real firmware console
(CPython, FakeDevice) reached through pyserial's socket:// URL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_server import ConsoleServer
from modgate_host.cli import main


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ConsoleServer]:
    srv = ConsoleServer(tmp_path)
    yield srv
    srv.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json_and_text(server: ConsoleServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", server.url, "--json")
    assert code == 0
    assert json.loads(out)["queue_depth"] == 1
    code, out, _ = run(capsys, "status", server.url)
    assert code == 0 and "queue_depth" in out


def test_config_get_set_and_refusals(server: ConsoleServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "config", server.url, "get", "ae_title")[1].strip() == "MODGATE"
    code, out, _ = run(capsys, "config", server.url, "set", "ae_title", "CT_ROOM_2")
    assert code == 0 and "(saved)" in out
    saved = json.loads(Path(server.device.config.path).read_text())
    assert saved["ae_title"] == "CT_ROOM_2"
    code, _, err = run(capsys, "config", server.url, "set", "frames_port", "70000")
    assert code == 1 and "frames_port" in err and err.count("\n") == 1
    server.device.config.set("pin", "1357")
    code, _, err = run(capsys, "config", server.url, "set", "ae_title", "X")
    assert code == 1 and "PIN" in err
    code, _, _ = run(capsys, "config", server.url, "set", "ae_title", "X", "--pin", "1357")
    assert code == 0
    assert server.device.config.get("ae_title") == "X"


def test_unreachable_port_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status", str(tmp_path / "ttyNONE"))
    assert code == 2 and err.startswith("modgate: cannot open")


def test_provision_diff_apply_verify(
    server: ConsoleServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = {
        "ae_title": "US_ROOM1",
        "institution_name": "St. Elsewhere",
        "filedrop_enabled": True,
        "destinations": [{"name": "pacs", "aet": "PACS", "host": "10.2.3.4", "port": 2762, "tls": True}],
        "user_passcode": "not-shown-1",
        "pin": "24680",
    }
    path = tmp_path / "site.json"
    path.write_text(json.dumps(wanted))
    code, out, _ = run(capsys, "provision", server.url, str(path), "--dry-run")
    assert code == 0 and "ae_title: MODGATE -> US_ROOM1" in out
    assert server.device.config.get("ae_title") == "MODGATE"
    code, out, err = run(capsys, "provision", server.url, str(path))
    assert code == 0, err
    assert "provisioned: 6 setting(s)" in out
    conf = server.device.config
    assert conf.get("filedrop_enabled") is True and conf.check_pin("24680") and not conf.dirty
    assert conf.get("user_passcode") == "not-shown-1" and conf.get("destinations")[0]["tls"] is True
    assert "24680" not in out + err and "not-shown-1" not in out + err
    # second run: the PIN now guards it
    code, _, err = run(capsys, "provision", server.url, str(path))
    assert code == 1 and "PIN" in err
    code, _, err = run(capsys, "provision", server.url, str(path), "--pin", "24680")
    assert code == 0, err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"uid_root": "1.02"}))
    code, _, err = run(capsys, "provision", server.url, str(bad), "--pin", "24680")
    assert code == 1 and "uid_root" in err


def test_queue_logs_time_dest(server: ConsoleServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "queue", server.url, "list")
    assert code == 0 and "2.25.1" in out
    code, out, _ = run(capsys, "queue", server.url, "purge", "dead", "--json")
    assert code == 0 and json.loads(out) == {"purged": 1}
    code, out, _ = run(capsys, "logs", server.url, "-n", "3")
    assert code == 0 and out.splitlines() == server.device.log[-3:]
    code, out, _ = run(capsys, "set-time", server.url)
    assert code == 0
    year = dt.datetime.now(dt.UTC).year
    assert server.device.clock[0] == year
    code, _, err = run(capsys, "dest", server.url, "add", "pacs2", "PACS2", "127.0.0.1", "11113")
    assert code == 1 and "PIN first" in err  # no destination without a PIN (issue 19)
    server.device.config.set("pin", "2468")
    code, out, _ = run(capsys, "dest", server.url, "add", "pacs2", "PACS2", "127.0.0.1", "11113",
                       "--pin", "2468")
    assert code == 0
    code, out, _ = run(capsys, "dest", server.url, "echo")
    assert code == 0 and "pacs2" in out
    server.device.unreachable.add("pacs2")
    code, out, _ = run(capsys, "dest", server.url, "echo", "--json")
    assert code == 1
    assert [r["ok"] for r in json.loads(out)] == [True, False]
    code, _, _ = run(capsys, "dest", server.url, "remove", "pacs2", "--pin", "2468")
    assert code == 0 and len(server.device.destinations()) == 1
