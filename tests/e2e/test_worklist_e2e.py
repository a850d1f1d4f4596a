"""The Modality Worklist end to end on both emulated boards (issue 17): the device's C-FIND SCU
against dcmtk's wlmscpfs (worklist files made by dump2dcm from tests/worklist/*.dump), Orthanc's
ModalityWorklists plugin and a scripted pynetdicom SCP; a selected or named item reaching the
archive in the object; the cache kept across a failed, aborted or stalled query and a reboot;
C-CANCEL past the maximum; character sets; 200 matches in the 96 KB heap of qemu-armhf."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peers
import pydicom
import pytest
from device_harness import simulate, wait_for_files
from modgate_host.emulator import Emulator
from modgate_host.transport import DeviceConsole, OperationFailed
from modgate_host.validation import validate_file

BOARDS = ["unix", "qemu-armhf"]
DAY = "20260705"


def config_file(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "device-config.json"
    base: dict[str, object] = {"grouping": "frame", "worklist_date": DAY, "worklist_refresh_s": 0}
    base.update(values)
    path.write_text(json.dumps(base))
    return path


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def refresh(console: DeviceConsole) -> dict[str, Any]:
    data: dict[str, Any] = console.call("worklist", "refresh", timeout_s=60)
    return data


def listed(console: DeviceConsole) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = console.call("worklist", "list", len(rows) + 1)
        rows += page
        if len(page) < 20:
            return rows


def one_frame(
    device: Emulator,
    tmp_path: Path,
    name: str,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    extra = ("--context", json.dumps(context)) if context else ()
    return simulate(device.frames_url, tmp_path / f"{name}.json", 1, "32x32", "GRAY8", *extra)


def test_dcmtk_wlmscpfs_worklist_to_the_archive_on_both_boards(tmp_path: Path) -> None:
    wl = folder(tmp_path / "wl")
    peers.make_worklist_files(wl / "MWL")
    with (
        peers.wlmscpfs(wl, aet="MWL") as scp,
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), aet="ARCHIVE") as archive,
    ):
        for board in BOARDS:
            state = tmp_path / board
            config = config_file(tmp_path, worklist_scp=f"MWL@127.0.0.1:{scp.port}", grouping="series")
            with Emulator(board, state, config=config, dests=[f"ARCHIVE@127.0.0.1:{archive.port}"]) as device:
                with DeviceConsole(device.console_path, timeout_s=60) as console:
                    result = refresh(console)
                    assert result["items"] == 2 and not result["cancelled_at_max"], result
                    rows = listed(console)
                    # The query asked for station MODGATE on 20260705: not tomorrow's, not CT1's.
                    assert {r["accession"] for r in rows} == {"A1001", "A1002"}, rows
                    muller = [r for r in rows if r["accession"] == "A1002"][0]
                    assert muller["patient_name"] == "Müller^Zoë"
                    doe = [r for r in rows if r["accession"] == "A1001"][0]
                    chosen = console.call("worklist", "select", doe["n"])
                    assert chosen["patient_id"] == "MG-1001"
                    status = console.call("status")["worklist"]
                    assert status["items"] == 2 and status["stale"] is False and status["age_s"] is not None
                    assert status["selected"]["accession_number"] == "A1001"
                report = one_frame(device, tmp_path, board)
                assert len(report["acked"]) == 1, report["output"]
                # A frame that names the other item by its step takes that one for itself.
                report = one_frame(device, tmp_path, board + "-named", {"scheduled_step_id": "SPS1002"})
                assert len(report["acked"]) == 1, report["output"]
                report = one_frame(device, tmp_path, board + "-nak", {"accession_number": "A404"})
                assert report["nacked"] and report["nacked"][0]["reason"] == "WORKLIST", report
                # A cine series goes on with the selected item: one multi-frame object.
                report = simulate(device.frames_url, tmp_path / f"{board}-cine.json", 3, "32x32", "GRAY8",
                                  "--series", "3")
                assert len(report["acked"]) == 3, report["output"]
                files = wait_for_files(tmp_path / "archive", 3 * (BOARDS.index(board) + 1), timeout=120)
    objects = [pydicom.dcmread(f) for f in files]
    assert len(objects) == 6
    assert sorted(int(getattr(ds, "NumberOfFrames", 1)) for ds in objects) == [1, 1, 1, 1, 3, 3]
    for ds in objects:
        assert validate_file(ds.filename).ok, validate_file(ds.filename)
    doe_objects = [ds for ds in objects if ds.AccessionNumber == "A1001"]
    assert len(doe_objects) == 4
    for ds in doe_objects:
        assert (str(ds.PatientName), ds.PatientID, ds.IssuerOfPatientID) == (
            "DOE^JANE",
            "MG-1001",
            "HOSPITAL-A",
        )
        assert (ds.PatientBirthDate, ds.PatientSex) == ("19800704", "F")
        assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.10.1.77.1"
        assert (ds.StudyDescription, ds.StudyID, str(ds.ReferringPhysicianName)) == (
            "XR CHEST 2 VIEWS",
            "RP1001",
            "HOUSE^GREGORY",
        )
        request = ds.RequestAttributesSequence[0]
        assert (request.RequestedProcedureID, request.ScheduledProcedureStepID) == ("RP1001", "SPS1001")
        assert request.ScheduledProtocolCodeSequence[0].CodeValue == "PRT-PA"
        assert ds.ProcedureCodeSequence[0].CodeMeaning == "Chest two views"
        assert ds.PerformedProtocolCodeSequence[0].CodeValue == "PRT-PA"
        assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.10.1.77.1001"
        assert "SpecificCharacterSet" not in ds  # all ASCII
    muller_objects = [ds for ds in objects if ds.AccessionNumber == "A1002"]
    assert len(muller_objects) == 2
    for ds in muller_objects:
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == "Müller^Zoë"
        assert ds.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS1002"


def test_orthanc_modality_worklists_plugin_then_store_to_orthanc(tmp_path: Path) -> None:
    """Orthanc serves the worklist (its plugin, the files dump2dcm made) and is the archive too:
    frames that name their item by accession number arrive as that patient's study."""
    wl = peers.make_worklist_files(folder(tmp_path / "wl"))
    assert wl
    with peers.orthanc(aet="ORTHANC", worklists=tmp_path / "wl") as pacs:
        for board in BOARDS:
            config = config_file(tmp_path, worklist_scp=f"ORTHANC@127.0.0.1:{pacs.port}")
            with Emulator(
                board, tmp_path / board, config=config, dests=[f"ORTHANC@127.0.0.1:{pacs.port}"]
            ) as device:
                with DeviceConsole(device.console_path, timeout_s=60) as console:
                    result = refresh(console)
                    rows = listed(console)
                    assert result["items"] == 2, (result, rows)
                    by_accession = {r["accession"]: r for r in rows}
                    assert by_accession["A1002"]["patient_name"] == "Müller^Zoë", rows
                    item = console.call("worklist", "show", by_accession["A1001"]["n"])
                    assert item["scheduled_protocol_codes"] == [["PRT-PA", "99LOCAL", "", "Chest PA"]]
                    # Orthanc answers in its default encoding, Latin-1, whatever the file held.
                    assert (
                        console.call("worklist", "show", by_accession["A1002"]["n"])["charset"]
                        == "ISO_IR 100"
                    )
                for accession in ("A1001", "A1002"):
                    report = one_frame(
                        device, tmp_path, f"{board}-{accession}", {"accession_number": accession}
                    )
                    assert len(report["acked"]) == 1, report["output"]
                deadline = time.monotonic() + 60
                while (
                    len(pacs.rest("/instances")) < 2 * (BOARDS.index(board) + 1)
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.2)
        studies = {}
        for study in pacs.rest("/studies"):
            tags = pacs.rest(f"/studies/{study}")
            studies[tags["MainDicomTags"]["StudyInstanceUID"]] = tags
        assert set(studies) == {"1.2.826.0.1.3680043.10.1.77.1", "1.2.826.0.1.3680043.10.1.77.2"}
        for study in studies.values():
            assert len(pacs.rest(f"/studies/{study['ID']}/instances")) == 2  # one per board
        muller = studies["1.2.826.0.1.3680043.10.1.77.2"]
        assert muller["PatientMainDicomTags"]["PatientName"] == "Müller^Zoë"
        assert muller["MainDicomTags"]["AccessionNumber"] == "A1002"


# ---- a scripted pynetdicom SCP: pending, cancel, failures, abort, stall, character sets --------

JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"  # PS3.5 Annex H, ISO 2022 IR 87


def mwl_item(i: int, name: str = "", charset: str | list[str] = "") -> pydicom.Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.AccessionNumber = f"ACC{i:04d}"
    ds.PatientName = name or f"PATIENT^{i:04d}"
    ds.PatientID = f"PID{i:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "MFO"[i % 3]
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1.88.{i}"
    ds.RequestedProcedureID = f"RP{i:04d}"
    ds.RequestedProcedureDescription = f"Requested procedure {i}"
    sps = Dataset()
    sps.Modality = "OT"
    sps.ScheduledStationAETitle = "MODGATE"
    sps.ScheduledProcedureStepStartDate = DAY
    sps.ScheduledProcedureStepStartTime = f"{8 + i // 60 % 10:02d}{i % 60:02d}00"
    sps.ScheduledProcedureStepID = f"SPS{i:04d}"
    sps.ScheduledProcedureStepDescription = f"Step {i}"
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def set_config(console: DeviceConsole, **values: object) -> None:
    for key, value in values.items():
        console.call("config", "set", key, value)
    console.call("config", "save")


def failing_refresh(console: DeviceConsole) -> str:
    with pytest.raises(OperationFailed) as caught:
        refresh(console)
    return caught.value.message


def cached(console: DeviceConsole) -> list[str]:
    return [r["accession"] for r in listed(console)]


def script(*steps: tuple[str, Any]) -> Any:
    """A pynetdicom C-FIND handler playing `steps`: ("match", n) pending matches, ("status", code),
    ("abort", None), ("stall", seconds)."""

    def play(event: Any, peer: peers.WorklistSCP) -> Iterator[tuple[int, Any]]:
        i = 0
        for kind, arg in steps:
            if kind == "match":
                for _ in range(arg):
                    i += 1
                    yield 0xFF00, mwl_item(i)
            elif kind == "status":
                yield arg, None
                return
            elif kind == "abort":
                event.assoc.abort()
                return
            elif kind == "stall":
                peer.release.wait(arg)
                return

    return play


@pytest.mark.parametrize("board", BOARDS)
def test_pending_cancel_failure_abort_stall_and_character_sets(board: str, tmp_path: Path) -> None:
    items = [
        mwl_item(1, "Grüße^Hans", ["ISO 2022 IR 6", "ISO 2022 IR 100"]),
        mwl_item(2, "Müller^Zoë", "ISO_IR 192"),
        mwl_item(3, "Déjà^Vu", "ISO_IR 100"),
        mwl_item(4, JAPANESE, ["", "ISO 2022 IR 87"]),
    ] + [mwl_item(i) for i in range(5, 41)]
    with (
        peers.pynetdicom_worklist(items, aet="PYWL", hold_after=10) as good,
        peers.pynetdicom_worklist(script=script(("match", 2), ("status", 0xA700)), aet="PYWL") as busy,
        peers.pynetdicom_worklist(script=script(("match", 3), ("abort", None)), aet="PYWL") as aborts,
        peers.pynetdicom_worklist(script=script(("match", 1), ("stall", 30)), aet="PYWL") as stalls,
        peers.pynetdicom_worklist(script=script(("match", 80), ("status", 0)), aet="PYWL") as deaf,
    ):
        config = config_file(
            tmp_path, worklist_scp=f"PYWL@127.0.0.1:{good.port}", worklist_max_items=10, dimse_timeout_ms=3000
        )
        with (
            Emulator(board, tmp_path / "flash", config=config) as device,
            DeviceConsole(device.console_path, timeout_s=60) as console,
        ):
            # Pending matches until the maximum, then C-CANCEL: the SCP saw it and stopped.
            result = refresh(console)
            assert result == {**result, "items": 10, "cancelled_at_max": True}, result
            assert good.yielded == [10] and good.cancelled == 1  # C-CANCEL seen before the 11th
            rows = listed(console)
            assert [r["accession"] for r in rows] == [f"ACC{i:04d}" for i in range(1, 11)]
            names = [r["patient_name"] for r in rows[:4]]
            assert names[:3] == ["Grüße^Hans", "Müller^Zoë", "Déjà^Vu"], names
            # ISO 2022 IR 87 is not decoded: shown escaped, never selected.
            assert "\\x1b" in names[3] and rows[3]["note"] == "escaped", rows[3]
            with pytest.raises(OperationFailed) as caught:
                console.call("worklist", "select", 4)
            assert "ISO 2022 IR 87" in caught.value.message
            query = good.queries[0]
            assert query.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "MODGATE"
            assert query.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == DAY
            assert "RequestAttributesSequence" not in query and "AccessionNumber" in query
            before = cached(console)
            # A failure status, an abort, a stall past the DIMSE timeout, and an SCP that ignores
            # C-CANCEL: each fails the refresh, with its reason, and the cached list stays.
            for scp, why in (
                (busy, "0xA700"),
                (aborts, "aborted"),
                (stalls, "within the timeout"),
                (deaf, "after C-CANCEL"),
            ):
                set_config(console, worklist_scp=f"PYWL@127.0.0.1:{scp.port}")
                message = failing_refresh(console)
                assert why in message and "10 cached items kept" in message, message
                assert cached(console) == before
                status = console.call("status")
                assert why in status["worklist"]["last_error"], status["worklist"]
            assert stalls.queries and deaf.queries
            assert status["heap"]["out_of_memory"] == 0


def explicit_identifier(ds: pydicom.Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def hostile_worklist(conn: Any, peer: peers.HostilePeer) -> None:
    """A raw worklist SCP: each association plays the next of its answers to one C-FIND."""
    pdu_type, rq = peers.read_pdu(conn)
    if pdu_type != 1:
        return
    conn.sendall(peers.associate_ac(rq))
    query = peers.receive_message(conn)
    peer.events.append(("query", len(query.data)))
    turn = len([e for e in peer.events if e[0] == "query"])
    mid, cid = query.message_id, query.context_id
    good = explicit_identifier(mwl_item(turn))
    if turn == 1:
        # A match whose identifier breaks PS3.5 (a length past its end) between two good ones.
        broken = good[:8] + b"\xff\x00" + good[10:]
        conn.sendall(
            peers.find_rsp(mid, cid, 0xFF00, good)
            + peers.find_rsp(mid, cid, 0xFF00, broken[:40])
            + peers.find_rsp(mid, cid, 0xFF01, explicit_identifier(mwl_item(7)))
        )
        conn.sendall(peers.find_rsp(mid, cid, 0x0000))
    elif turn == 2:
        conn.sendall(peers.find_rsp(mid + 1, cid, 0xFF00, good))  # answers another message
    elif turn == 3:
        conn.sendall(peers.find_rsp(mid, cid, 0xFF00, good)[:-20])  # cut inside the identifier
        peer.stop.wait(8)  # ... and say no more
        return
    elif turn == 4:
        conn.sendall(b"\x09\x00\x00\x00\x00\x02\x00\x00")  # not a PDU type at all
    peer.wait_closed(conn, 10)


@pytest.mark.parametrize("board", BOARDS)
def test_malformed_responses_are_bounded_and_keep_the_cache(board: str, tmp_path: Path) -> None:
    with peers.HostilePeer(hostile_worklist) as scp:
        config = config_file(tmp_path, worklist_scp=f"HOSTILE@127.0.0.1:{scp.port}", dimse_timeout_ms=3000)
        with (
            Emulator(board, tmp_path / "flash", config=config) as device,
            DeviceConsole(device.console_path, timeout_s=60) as console,
        ):
            result = refresh(console)
            assert (result["items"], result["skipped"]) == (2, 1), result
            assert cached(console) == ["ACC0001", "ACC0007"]
            for why in ("expected C-FIND-RSP to message", "within the timeout", "invalid PDU"):
                message = failing_refresh(console)
                assert why in message and "2 cached items kept" in message, message
                assert cached(console) == ["ACC0001", "ACC0007"]
            assert console.call("status")["worklist"]["skipped"] == 1
    assert not scp.errors, scp.errors


def test_200_matches_in_the_96_kb_heap_of_qemu_armhf(tmp_path: Path) -> None:
    """1000 scheduled steps at the SCP: the board keeps the 200 it is allowed (C-CANCEL beyond),
    each streamed to flash as it arrives, with the heap of the smallest board."""
    items = [mwl_item(i, f"Name {i}^Given^Middle") for i in range(1, 1001)]
    with (
        peers.pynetdicom_worklist(items, aet="PYWL", hold_after=200) as scp,
        peers.dcmtk_storescp(["+xa"], out_dir=folder(tmp_path / "archive"), aet="ARCHIVE") as archive,
    ):
        config = config_file(tmp_path, worklist_scp=f"PYWL@127.0.0.1:{scp.port}")
        with Emulator(
            "qemu-armhf", tmp_path / "flash", config=config, dests=[f"ARCHIVE@127.0.0.1:{archive.port}"]
        ) as device:
            assert device.heap == str(96 * 1024)
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                result = refresh(console)
                assert (result["items"], result["cancelled_at_max"]) == (200, True), result
                rows = listed(console)
                assert [r["n"] for r in rows] == list(range(1, 201))
                assert rows[199]["accession"] == "ACC0200"
                console.call("worklist", "select", 137)
                status = console.call("status")
            # The board goes on acquiring and delivering with that list on flash.
            report = one_frame(device, tmp_path, "after")
            assert len(report["acked"]) == 1, report["output"]
            ds = pydicom.dcmread(wait_for_files(tmp_path / "archive", 1)[0])
    assert scp.cancelled == 1 and scp.yielded == [200]
    assert ds.AccessionNumber == "ACC0137" and str(ds.PatientName) == "Name 137^Given^Middle"
    heap = status["heap"]
    assert heap["out_of_memory"] == 0, heap
    # The least free heap seen after a collection since boot, the refresh included.
    assert heap["free_min"] >= 16 * 1024, heap
    print(f"qemu-armhf 96k: 200 matches, heap free {heap['free']}, least free {heap['free_min']}")


@pytest.mark.parametrize("board", BOARDS)
def test_the_cache_survives_a_reboot_and_serves_offline(board: str, tmp_path: Path) -> None:
    with peers.pynetdicom_worklist([mwl_item(i) for i in range(1, 6)], aet="PYWL") as scp:
        config = config_file(tmp_path, worklist_scp=f"PYWL@127.0.0.1:{scp.port}", worklist_refresh_s=1)
        with Emulator(board, tmp_path / "flash", config=config) as device:
            # The task refreshes by itself (period 1 s) once the link is up.
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                deadline = time.monotonic() + 60
                while console.call("status")["worklist"]["items"] != 5 and time.monotonic() < deadline:
                    time.sleep(0.5)
                console.call("worklist", "select", 3)
                assert "worklist" in console.call("status")["tasks"]
    device = Emulator(board, tmp_path / "flash", config=config, frames_serial=True)
    device.set_link(False)  # reboot with the network cable pulled: frames come by the UART
    with device, DeviceConsole(device.console_path, timeout_s=60) as console:
        status = console.call("status")
        assert status["network"] == "down"
        assert status["worklist"]["items"] == 5 and status["worklist"]["selected"]["n"] == 3
        assert cached(console) == [f"ACC{i:04d}" for i in range(1, 6)]
        with pytest.raises(OperationFailed) as caught:
            refresh(console)
        assert "network down" in caught.value.message
        report = simulate(f"serial://{device.frames_tty}", tmp_path / "offline.json", 1, "32x32", "GRAY8")
        assert len(report["acked"]) == 1, report["output"]
        queued = console.call("queue", "list")
        assert len(queued) == 1  # on flash, waiting for the network, with the selected patient


def test_host_cli_table_and_json(tmp_path: Path) -> None:
    import subprocess
    import sys

    with peers.pynetdicom_worklist([mwl_item(i) for i in range(1, 26)], aet="PYWL") as scp:
        config = config_file(tmp_path, worklist_scp=f"PYWL@127.0.0.1:{scp.port}")
        with Emulator("unix", tmp_path / "flash", config=config) as device:

            def cli(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "modgate_host.cli", "worklist", device.console_path, *args],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )

            done = cli("refresh")
            assert done.returncode == 0 and "items" in done.stdout, done
            table = cli("list")
            lines = table.stdout.splitlines()
            assert lines[0].split()[:4] == ["n", "selected", "patient_name", "patient_id"], lines[0]
            assert len(lines) == 26 and "ACC0025" in lines[-1]  # both pages of the device
            data = json.loads(cli("list", "--json").stdout)
            assert [r["n"] for r in data] == list(range(1, 26))
            assert cli("select", "2").returncode == 0
            shown = json.loads(cli("show", "2", "--json").stdout)
            assert shown["scheduled_step_id"] == "SPS0002"
            assert "*" in cli("list").stdout.splitlines()[2]
            bad = cli("select", "99")
            assert bad.returncode == 1 and "no worklist item 99" in bad.stderr, bad
            assert cli("show").returncode == 2
            assert json.loads(cli("clear", "--json").stdout) == {"cleared": True}
