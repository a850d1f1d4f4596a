"""The host as a field engineer installs it: the wheel (built with `python -m build`, from the
sdist) installed into a fresh venv outside the checkout, run from another folder with the
checkout hidden (a tmpfs mounted over it in a private mount namespace), its images in a user cache.
It encodes, emulates a board, and a simulated modality's frames reach `modgate receive`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from modgate_host.runtimes import TOOLCHAIN
from modgate_host.validation import validate_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import peers  # noqa: E402

pytestmark = [pytest.mark.e2e]

CHECKOUT = Path(__file__).resolve().parents[2]


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.cache = root / "cache"
        self.work = root / "work"
        self.work.mkdir()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "MICROPYPATH", "MODGATE_TOOLCHAIN", "VIRTUAL_ENV")}
        env["XDG_CACHE_HOME"] = str(self.cache)
        env["PATH"] = str(self.venv / "bin") + os.pathsep + env.get("PATH", "")
        return env

    def argv(self, *args: str) -> list[str]:
        """`args` run with the checkout hidden behind an empty tmpfs: only the installed package
        can provide the firmware, boards and tools."""
        hide = 'mount -t tmpfs modgate-hidden "$0" && exec "$@"'
        return ["unshare", "-m", "sh", "-c", hide, str(CHECKOUT), *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env(), cwd=self.work, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), env=self.env(), cwd=self.work, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    dist = root / "dist"
    # sdist, then the wheel from the sdist (what `python -m build` does), offline: the build
    # backend is the one in our .venv.
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(CHECKOUT)],
                   check=True, capture_output=True, timeout=300)
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1 and list(dist.glob("*.tar.gz"))
    inst = Installed(root)
    subprocess.run([sys.executable, "-m", "venv", str(inst.venv)], check=True, timeout=120)
    # Dependencies resolved from the wheel's metadata against the wheels `make setup` downloaded
    # (this runs offline, in tools/netns): a dependency pyproject.toml forgets fails here.
    wheelhouse = TOOLCHAIN / "wheelhouse"
    assert wheelhouse.is_dir(), "no wheelhouse: run make setup"
    pip = str(inst.venv / "bin" / "pip")
    subprocess.run([pip, "install", "-q", "--no-index", "--find-links", str(wheelhouse), str(wheels[0])],
                   check=True, capture_output=True, timeout=600)
    # Reuse the checkout's unix image (stays fast); the installed package only takes it if the
    # sources it carries hash to the same digest (image.py), which the test checks below.
    seed = inst.cache / "modgate" / "images" / "unix"
    seed.mkdir(parents=True)
    for name in ("micropython", "sources.sha256"):
        shutil.copy2(TOOLCHAIN / "images" / "unix" / name, seed / name)
    yield inst


def test_the_installed_package_uses_its_own_data(installed: Installed) -> None:
    probe = ("import json, modgate_host, modgate_host.runtimes as r, modgate_host.image as i;"
             "print(json.dumps([modgate_host.__file__, str(r.FIRMWARE), str(r.TOOLCHAIN), r.CHECKOUT,"
             " i._digest('unix')]))")
    proc = installed.run("python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    package, firmware, toolchain, checkout, digest = json.loads(proc.stdout)
    assert package.startswith(str(installed.venv)) and firmware.startswith(str(installed.venv))
    assert toolchain == str(installed.cache / "modgate") and checkout is None
    # The wheel carries exactly the checkout's firmware, board and image tools.
    assert digest == (TOOLCHAIN / "images" / "unix" / "sources.sha256").read_text()


def test_encode_from_any_folder(installed: Installed) -> None:
    for runtime in ("cpython", "micropython"):
        out = installed.work / f"sc-{runtime}.dcm"
        proc = installed.run("modgate", "encode", "--iod", "sc", "--format", "GRAY8", "--size", "64x64",
                             "--out", str(out), "--runtime", runtime)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["runtime"] == runtime
        verdict = validate_file(out)
        assert verdict.ok, "\n".join(verdict.lines())


def test_emulate_and_simulate_into_receive(installed: Installed) -> None:
    peers.require_netns()
    port = peers.free_port()
    received = installed.work / "received"
    receiver = installed.popen("modgate", "receive", "--aet", "ARCHIVE", "--bind", "127.0.0.1", "--port",
                               str(port), "--out", str(received), "--count", "2", "--timeout", "120")
    board = installed.popen("modgate", "emulate", "--board", "unix", "--state", str(installed.work / "state"),
                            "--dest", f"ARCHIVE@127.0.0.1:{port}")
    firmware_pid = 0
    try:
        peers.wait_listening(port)
        assert board.stdout is not None
        line = board.stdout.readline()
        assert line, board.stderr.read() if board.stderr else ""
        info = json.loads(line)
        firmware_pid = int(info["pid"])
        frames = info["frames"]
        sim = installed.run("modgate", "simulate-modality", "--to", frames, "--frames", "2",
                            "--size", "64x64", "--format", "GRAY8")
        assert sim.returncode == 0, sim.stdout + sim.stderr
        assert receiver.wait(timeout=120) == 0
    finally:
        if firmware_pid:
            try:
                os.kill(firmware_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in (board, receiver):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    files = sorted(received.glob("*.dcm"))
    assert len(files) == 2
    for path in files:
        assert validate_file(path).ok
        assert pydicom.dcmread(path).Rows == 64
