"""The bare-metal board (qemu-mps2): the firmware frozen into MicroPython's qemu port by the
port's own make and the board's manifest, booted in qemu-system-arm with a 96 KB heap, driven
over its console UART with mpremote's raw REPL. The encoder and the frame protocol (a simulated
modality on the frame UART, the device's FrameReceiver, Acquirer and Spool on littlefs in RAM)
run on it, and the objects they leave on the board's file system are read back and validated."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from device_harness import expected_frame
from modgate_host import baremetal, image
from modgate_host.build import load_board
from modgate_host.transport import DeviceConsole
from modgate_host.validation import validate_file

pytestmark = [pytest.mark.e2e]

MODGATE = [sys.executable, "-m", "modgate_host.cli"]
HEAP = int(str(load_board("qemu-mps2")["emulated_heap_bytes"]))


@pytest.fixture(scope="module")
def board() -> Iterator[baremetal.QemuBoard]:
    with baremetal.QemuBoard("qemu-mps2") as running:
        yield running


def assert_valid(path: Path) -> None:
    verdict = validate_file(path)
    assert verdict.ok, "\n".join(verdict.lines())


def test_the_image_is_the_manifest_built_by_the_port(board: baremetal.QemuBoard) -> None:
    elf = image.image("qemu-mps2")
    info = board.exec("import sys\nimpl = sys.implementation\nprint(sys.platform, impl._build, impl.version)")
    assert info.split()[:2] == ["qemu", "MODGATE_QEMU_MPS2"]
    assert "(1, 25, 0" in info
    # Frozen, not on the file system: the modules import with nothing but settings on the board.
    where = board.exec_json(
        "import json, board, os\nboard.start([])\nimport modgate.app, asyncio\n"
        "print(json.dumps([modgate.app.__file__, asyncio.__name__, os.listdir('/')]))")
    assert where[0].startswith(".frozen/") or where[0] == "modgate/app.py", where
    assert all(not name.endswith((".py", ".mpy")) for name in where[2]), where[2]
    assert elf.stat().st_size > 200_000  # the firmware's bytecode is in the image


def test_the_heap_is_the_pico_w_floor_and_the_firmware_fits(board: baremetal.QemuBoard) -> None:
    heap = board.heap()
    assert heap["free"] + heap["alloc"] <= HEAP
    assert heap["free"] + heap["alloc"] > HEAP - 4096  # the whole static heap, less the GC's tables


def test_encode_on_the_board(board: baremetal.QemuBoard, tmp_path: Path) -> None:
    out = board.exec(baremetal.job_code("encode", "--iod", "sc", "--format", "GRAY16", "--size", "64x48",
                                        "--bits-stored", "12", "--out", "/encode-sc.dcm"))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["frames"] == 1 and result["heap_used"] < HEAP // 2
    local = tmp_path / "encode-sc.dcm"
    local.write_bytes(board.read_file("/encode-sc.dcm"))
    assert local.stat().st_size == result["bytes"]
    assert_valid(local)
    ds = pydicom.dcmread(local)
    assert ds.SOPInstanceUID == result["sop_instance_uid"]
    assert (ds.Rows, ds.Columns, ds.BitsStored) == (48, 64, 12)


def test_frames_over_the_uart_into_the_spool(board: baremetal.QemuBoard, tmp_path: Path) -> None:
    frames = 3
    sim = subprocess.Popen([*MODGATE, "simulate-modality", "--to", board.frames_url, "--frames", str(frames),
                            "--size", "64x64", "--format", "GRAY8", "--report", str(tmp_path / "sim.json")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        session = board.exec_json(baremetal.frame_session_code(frames, idle_ms=30000))
        out, err = sim.communicate(timeout=60)
    finally:
        if sim.poll() is None:
            sim.kill()
    assert sim.returncode == 0, out + err
    report = json.loads((tmp_path / "sim.json").read_text())
    assert len(report["acked"]) == frames and not report["nacked"]
    assert session["committed"] == frames == session["frames_acked"]
    # The heap while serving, for docs/benchmarks.md: printed, and bounded.
    print("qemu-mps2 heap:", {k: v for k, v in session.items() if k.startswith("heap")})
    assert session["heap_least_free"] > HEAP // 4
    for i, entry in enumerate(session["entries"]):
        local = tmp_path / f"spooled-{i}.dcm"
        local.write_bytes(board.read_file(entry["path"]))
        assert_valid(local)
        ds = pydicom.dcmread(local)
        assert ds.SOPInstanceUID == entry["uid"]
        assert np.array_equal(ds.pixel_array, expected_frame("GRAY8", 64, 64, i))


def test_deploy_writes_settings_and_removes_old_code(board: baremetal.QemuBoard, tmp_path: Path) -> None:
    # The qemu port mounts no file system at boot (a board's port does): the board module does.
    board.exec("import board\nboard.start([])\nimport os\nos.mkdir('/modgate')\n"
               "for p in ('/modgate/app.mpy', '/board.mpy', '/main.py'):\n"
               "    f = open(p, 'wb')\n    f.write(b'left by an old .mpy deploy')\n    f.close()\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"device_serial": "MPS27"}))
    board.release()
    try:
        proc = subprocess.run([*MODGATE, "deploy", board.console_path, "--board", "qemu-mps2", "--config",
                               str(config), "--no-reset", "--out", str(tmp_path / "build")],
                              capture_output=True, text=True, timeout=300)
    finally:
        board.attach()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "settings" in proc.stdout
    listing = "import os, json\nprint(json.dumps([os.listdir('/'), os.listdir('/state')]))"
    root, state = board.exec_json(listing)
    assert not [name for name in root if name.endswith((".py", ".mpy")) or name == "modgate"], root
    assert "config.json" in state
    serial = board.exec_json("import board, json\nports = board.start([])\n"
                             "from modgate.device import Device\n"
                             "print(json.dumps(Device(ports).config.get('device_serial')))")
    assert serial == "MPS27"


def test_the_run_core_boots_offline_and_serves_console_and_frames(tmp_path: Path) -> None:
    """The device's asyncio core (the run job) on the board, no network: its console on UART2
    answers the host companion, frames on UART1 are acknowledged and spooled."""
    with baremetal.QemuBoard("qemu-mps2") as fresh:
        log = fresh.start_job("run")
        assert "network=down" in log
        with DeviceConsole(fresh.device_console_path, timeout_s=30) as dev:
            before = dev.call("status")
            assert before["frames_acked"] == 0
            sim = subprocess.run([*MODGATE, "simulate-modality", "--to", fresh.frames_url, "--frames", "2",
                                  "--size", "64x64", "--format", "GRAY8"],
                                 capture_output=True, text=True, timeout=120)
            assert sim.returncode == 0, sim.stdout + sim.stderr
            after = dev.call("status")
        assert after["frames_acked"] == 2 and after["objects_committed"] == 2
        assert after["queue"]["depth"] == 2 and after["queue"]["dead"] == 0  # kept for the archive
        print("qemu-mps2 run core heap:", after["heap"])
        assert after["heap"]["out_of_memory"] == 0
