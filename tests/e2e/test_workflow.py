"""Storage Commitment and MPPS on both emulated boards against pynetdicom peers (issue 18): an
object stays on flash until the archive committed it, on the request's association or on a new
one to the device's listener; a failed reference is sent again; a kill -9 between the N-ACTION
and the report loses nothing and resumes; MPPS N-CREATE at the first object, N-SET COMPLETED
with the Performed Series Sequence at `study end`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from device_harness import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import peers  # noqa: E402
from modgate_host.emulator import Emulator  # noqa: E402
from modgate_host.transport import DeviceConsole  # noqa: E402

BOARDS = ["unix", "qemu-armhf"]
DEVICE_AET = "MODGATE"
PIN = "3141"


def config_file(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "device-config.json"
    values.setdefault("ae_title", DEVICE_AET)
    values.setdefault("grouping", "frame")
    values.setdefault("commit_timeout_s", 10)
    path.write_text(json.dumps(values))
    return path


def until(what: Callable[[], Any], timeout: float, why: str) -> Any:
    """`what()` once it is truthy, polled; AssertionError naming `why` past `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {why}")


def committing(device: Emulator) -> list[dict[str, Any]]:
    with DeviceConsole(device.console_path, timeout_s=60) as console:
        return list(console.call("queue", "commit"))


def status(device: Emulator) -> dict[str, Any]:
    with DeviceConsole(device.console_path, timeout_s=60) as console:
        return dict(console.call("status"))


def add_archive(device: Emulator, peer: Any) -> None:
    with DeviceConsole(device.console_path, timeout_s=60) as console:
        # Only this archive: the board's default destination would keep every object owed.
        if any(d["name"] == "archive" for d in console.call("dest", "list")):
            console.call("dest", "remove", "archive")
        if console.call("status")["privileged"] == "open":
            console.call("config", "set", "pin", PIN)  # commissioning: a PIN before a destination
        console.call("dest", "add", "pacs", peer.aet, "127.0.0.1", peer.port, "commit=required")


def spooled(device: Emulator) -> int:
    return int(status(device)["queue"]["depth"])


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("report", ["same", "new"])
def test_objects_are_deleted_only_once_the_archive_committed_them(board: str, report: str,
                                                                   tmp_path: Path) -> None:
    listen = peers.free_port()
    count = 4
    config = config_file(tmp_path, listen_port=listen, commit_report_wait_ms=3000 if report == "same" else 0)
    with (
        peers.commitment_scp("none", device=(DEVICE_AET, listen)) as archive,
        Emulator(board, tmp_path / "flash", config=config) as device,
    ):
        add_archive(device, archive)
        sent = simulate(device.frames_url, tmp_path / "r.json", count, "32x32", "GRAY8")
        assert len(sent["acked"]) == count, sent["output"]
        until(lambda: len(archive.stored) >= count and len(archive.actions) >= 1, 90, "stored and asked")
        # Stored, asked, no result: everything stays on flash, listed as awaiting commitment.
        time.sleep(2)
        waiting = committing(device)
        assert len(waiting) == count, waiting
        assert spooled(device) == count
        # The archive now reports (on the same association or a new one) when asked again:
        # only then are the objects deleted.
        # No result within commit_timeout_s: the device asks again, in a new transaction, and
        # this time the archive reports (on the same association or a new one): only then are
        # the objects deleted.
        archive.report = report
        until(lambda: len(archive.actions) >= 2, 60, "the request repeated after the timeout")
        assert archive.actions[1].TransactionUID != archive.actions[0].TransactionUID
        until(lambda: archive.reports, 60, "a report was sent")
        until(lambda: spooled(device) == 0, 60, "the committed objects left the flash")
        assert committing(device) == []
        st = status(device)
        assert st["commitment"]["committed"] >= count, st["commitment"]
        assert not archive.errors, archive.errors
        if report == "new":
            assert st["commitment"]["listener"]["associations"] >= 1, st["commitment"]
        # Listener and SCU within the board's heap (96 KB on qemu-armhf): no allocation failed.
        assert st["heap"]["out_of_memory"] == 0, st["heap"]
        print(f"\nheap {board} {report}: {st['heap']}")


@pytest.mark.parametrize("board", BOARDS)
def test_a_failed_reference_is_sent_again_and_then_committed(board: str, tmp_path: Path) -> None:
    listen = peers.free_port()
    config = config_file(tmp_path, listen_port=listen, commit_report_wait_ms=3000)
    with (
        peers.commitment_scp("same", device=(DEVICE_AET, listen)) as archive,
        Emulator(board, tmp_path / "flash", config=config) as device,
    ):
        # The first reference asked about comes back failed (set before any frame: the device
        # may store and ask within milliseconds); the device sends that object again, and the
        # next report commits it.
        archive.fail_once = 1
        add_archive(device, archive)
        sent = simulate(device.frames_url, tmp_path / "r.json", 2, "32x32", "GRAY8")
        assert len(sent["acked"]) == 2, sent["output"]
        until(lambda: any(r[1] == 2 for r in archive.reports), 90, "a failure report")
        victim = archive.failed_once[0]
        until(lambda: [str(d.SOPInstanceUID) for d in archive.received].count(victim) >= 2, 90,
              "the failed object sent again")
        until(lambda: spooled(device) == 0, 120, "both committed and deleted")
        assert not archive.errors, archive.errors


@pytest.mark.parametrize("board", BOARDS)
def test_kill_between_n_action_and_report_resumes_and_deletes_nothing_early(board: str,
                                                                             tmp_path: Path) -> None:
    listen = peers.free_port()
    count = 3
    config = config_file(tmp_path, listen_port=listen, commit_report_wait_ms=0)
    flash = tmp_path / "flash"
    with peers.commitment_scp("none", device=(DEVICE_AET, listen)) as archive:
        with Emulator(board, flash, config=config) as device:
            add_archive(device, archive)
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                console.call("unlock", PIN)
                console.call("config", "save")
            sent = simulate(device.frames_url, tmp_path / "r.json", count, "32x32", "GRAY8")
            assert len(sent["acked"]) == count, sent["output"]
            until(lambda: len(archive.actions) >= 1, 90, "an N-ACTION")
            device.kill()  # SIGKILL: no clean shutdown, between the N-ACTION and any report
        asked = [str(r.ReferencedSOPInstanceUID) for r in archive.actions[0].ReferencedSOPSequence]
        assert asked
        with Emulator(board, flash, config=config) as device:
            # After the restart the transaction is pending on flash; nothing was deleted.
            assert len(committing(device)) == count
            # The archive's report for the transaction asked before the kill arrives on a new
            # association; later requests are reported that way too.
            archive.report = "new"
            until(lambda: _report_old(archive, listen), 60, "the old transaction reported")
            until(lambda: len(committing(device)) == count - len(asked), 60, "the old transaction taken")
            until(lambda: spooled(device) == 0, 120, "all committed and deleted")
        assert not archive.errors, archive.errors


@contextmanager
def mpps_session(board: str, tmp_path: Path, frames: int, **scp: Any) -> Iterator[tuple[Any, Any, Emulator]]:
    """An archive, an MPPS SCP answering as `scp` says (peers.mpps_scp), and a board reporting
    to it with quick retries, `frames` frames already acknowledged: (store, mpps, device)."""
    with (
        peers.pynetdicom_scp(aet="ARCHIVE") as store,
        peers.mpps_scp(**scp) as mpps,
    ):
        config = config_file(tmp_path, mpps_scp=f"{mpps.aet}@127.0.0.1:{mpps.port}", retry_base_ms=200,
                             retry_max_ms=1000)
        with Emulator(board, tmp_path / "flash", config=config,
                      dests=[f"ARCHIVE@127.0.0.1:{store.port}"]) as device:
            sent = simulate(device.frames_url, tmp_path / "r.json", frames, "32x32", "GRAY8")
            assert len(sent["acked"]) == frames, sent["output"]
            yield store, mpps, device


def performed(ds: Any) -> list[str]:
    """The SOP Instance UIDs an N-SET's Performed Series Sequence lists."""
    return [str(i.ReferencedSOPInstanceUID) for s in ds.PerformedSeriesSequence
            for i in s.ReferencedImageSequence]


def _report_old(archive: Any, listen: int) -> bool:
    """Send the report of the first N-ACTION (made before the kill) on a new association."""
    if getattr(archive, "_old_sent", False):
        return True
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role
    from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

    info = archive.actions[0]
    out = Dataset()
    out.TransactionUID = info.TransactionUID
    out.ReferencedSOPSequence = []
    for ref in info.ReferencedSOPSequence:
        item = Dataset()
        item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
        item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
        out.ReferencedSOPSequence.append(item)
    ae = AE(ae_title=archive.aet)
    ae.add_requested_context(StorageCommitmentPushModel, [peers.EXPLICIT, peers.IMPLICIT])
    assoc = ae.associate("127.0.0.1", listen, ae_title=DEVICE_AET,
                         ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)])
    if not assoc.is_established:
        return False
    st, _ = assoc.send_n_event_report(out, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
    assoc.release()
    ok = int(getattr(st, "Status", -1)) == 0
    archive._old_sent = ok
    return ok


@pytest.mark.parametrize("board", BOARDS)
def test_mpps_in_progress_at_the_first_object_and_completed_at_study_end(board: str, tmp_path: Path) -> None:
    with (
        peers.pynetdicom_scp(aet="ARCHIVE") as store,
        peers.mpps_scp() as mpps,
    ):
        config = config_file(tmp_path, mpps_scp=f"{mpps.aet}@127.0.0.1:{mpps.port}")
        with Emulator(board, tmp_path / "flash", config=config,
                      dests=[f"ARCHIVE@127.0.0.1:{store.port}"]) as device:
            sent = simulate(device.frames_url, tmp_path / "r.json", 3, "32x32", "GRAY8")
            assert len(sent["acked"]) == 3, sent["output"]
            until(lambda: mpps.creates, 60, "an N-CREATE")
            uid, created = mpps.creates[0]
            assert created.PerformedProcedureStepStatus == "IN PROGRESS"
            st = status(device)["mpps"]
            assert st["in_progress"] == 1, st
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                queued = console.call("queue", "mpps")
            assert len(queued) == 1, queued
            until(lambda: len(store.received) >= 3, 60, "stored")
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                console.call("study", "end")
            until(lambda: mpps.sets, 60, "an N-SET")
            set_uid, done = mpps.sets[-1]
            assert set_uid == uid
            assert done.PerformedProcedureStepStatus == "COMPLETED"
            assert sorted(performed(done)) == sorted(str(d.SOPInstanceUID) for d in store.received)
            until(lambda: status(device)["mpps"]["done"] == 1, 30, "the step done")
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                assert console.call("queue", "mpps") == []


@pytest.mark.parametrize("board", BOARDS)
def test_no_result_after_the_last_request_flags_the_objects_and_keeps_them(board: str,
                                                                          tmp_path: Path) -> None:
    config = config_file(tmp_path, listen_port=peers.free_port(), commit_report_wait_ms=0,
                         commit_max_requests=2)
    with (
        peers.commitment_scp("none") as archive,
        Emulator(board, tmp_path / "flash", config=config) as device,
    ):
        add_archive(device, archive)
        sent = simulate(device.frames_url, tmp_path / "r.json", 2, "32x32", "GRAY8")
        assert len(sent["acked"]) == 2, sent["output"]
        # Two requests 10 s apart, no result: flagged (status, queue commit, the log), kept.
        until(lambda: status(device)["queue"]["destinations"]["pacs"]["uncommitted"] == 2, 90, "flagged")
        assert len(archive.actions) == 2
        assert spooled(device) == 2 and len(committing(device)) == 2
        log = device.log_path.read_text()
        assert log.count("not confirmed by pacs") == 2, device.log_tail()
        time.sleep(12)  # flagged objects are asked about no more
        assert len(archive.actions) == 2


@pytest.mark.parametrize("board", BOARDS)
def test_the_listener_takes_only_destinations_and_answers_c_echo(board: str, tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    listen = peers.free_port()
    config = config_file(tmp_path, listen_port=listen)
    with (
        peers.commitment_scp("none") as archive,
        Emulator(board, tmp_path / "flash", config=config) as device,
    ):
        add_archive(device, archive)

        def echo(calling: str, called: str = DEVICE_AET) -> Any:
            ae = AE(ae_title=calling)
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", listen, ae_title=called)
            if not assoc.is_established:
                return None
            st = assoc.send_c_echo()
            assoc.release()
            return int(st.Status)

        assert until(lambda: echo(archive.aet) is not None, 30, "the listener up") is not None
        assert echo(archive.aet) == 0
        assert echo("STRANGER") is None  # calling AE title no destination's: rejected
        assert echo(archive.aet, "NOTUS") is None  # called AE title not ours: rejected
        # A storage context is not accepted there: only Verification and Storage Commitment.
        ae = AE(ae_title=archive.aet)
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7")
        assoc = ae.associate("127.0.0.1", listen, ae_title=DEVICE_AET)
        assert not assoc.is_established
        listener = status(device)["commitment"]["listener"]
        assert listener["refused"] >= 3, listener


@pytest.mark.parametrize("board", BOARDS)
def test_mpps_failure_retried_and_discontinued_with_reason(board: str, tmp_path: Path) -> None:
    with mpps_session(board, tmp_path, 2, create=[0x0110, 0x0000]) as (store, mpps, device):
        # 0110 processing failure: the same N-CREATE again, then success.
        until(lambda: len(mpps.creates) >= 2, 60, "the N-CREATE repeated after a failure")
        assert mpps.creates[0][0] == mpps.creates[1][0]
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            console.call("study", "discontinue", "equipment", "tube failed")
        until(lambda: mpps.sets, 60, "an N-SET")
        uid, ds = mpps.sets[-1]
        assert uid == mpps.creates[0][0]
        assert ds.PerformedProcedureStepStatus == "DISCONTINUED"
        code = ds.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == ("110501", "DCM")
        assert ds.CommentsOnThePerformedProcedureStep == "tube failed"
        until(lambda: status(device)["mpps"]["done"] == 1, 30, "the step done")
        st = status(device)["mpps"]
        assert st["pending"] == 0 and st["refused"] == 0, st


@pytest.mark.parametrize("board", BOARDS)
def test_kill_between_n_create_and_n_set_completes_the_step_after_restart(board: str, tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with (
        peers.pynetdicom_scp(aet="ARCHIVE") as store,
        peers.mpps_scp() as mpps,
    ):
        config = config_file(tmp_path, mpps_scp=f"{mpps.aet}@127.0.0.1:{mpps.port}")
        dests = [f"ARCHIVE@127.0.0.1:{store.port}"]
        with Emulator(board, flash, config=config, dests=dests) as device:
            sent = simulate(device.frames_url, tmp_path / "r.json", 3, "32x32", "GRAY8")
            assert len(sent["acked"]) == 3, sent["output"]
            until(lambda: mpps.creates and len(store.received) >= 3, 60, "created and stored")
            device.kill()
        with Emulator(board, flash, config=config, dests=dests) as device:
            with DeviceConsole(device.console_path, timeout_s=60) as console:
                ended = console.call("study", "end")
            assert ended["mpps"], ended
            until(lambda: mpps.sets, 60, "the N-SET after the restart")
        # The kill may fall after the SCP took the N-CREATE and before the device noted its
        # answer: then it goes again under the same UID, the SCP says 0111, and that is done.
        assert {uid for uid, _ in mpps.creates} == mpps.created and len(mpps.created) == 1
        assert len(mpps.sets) == 1
        uid, done = mpps.sets[0]
        assert uid == mpps.creates[0][0] and done.PerformedProcedureStepStatus == "COMPLETED"
        assert sorted(performed(done)) == sorted(str(d.SOPInstanceUID) for d in store.received)


@pytest.mark.parametrize("board", BOARDS)
def test_orthanc_commits_on_a_new_association_to_the_listener(board: str, tmp_path: Path) -> None:
    """Orthanc (Storage Commitment SCP since 1.6) answers the N-ACTION and reports on a new
    association to the modality its DicomModalities names for our AE title."""
    listen = peers.free_port()
    count = 3
    config = config_file(tmp_path, listen_port=listen, commit_report_wait_ms=2000)
    modalities = {"DicomModalities": {"modgate": [DEVICE_AET, "127.0.0.1", listen]}}
    with (
        peers.orthanc(extra=modalities) as archive,
        Emulator(board, tmp_path / "flash", config=config) as device,
    ):
        add_archive(device, archive)
        sent = simulate(device.frames_url, tmp_path / "r.json", count, "32x32", "GRAY8")
        assert len(sent["acked"]) == count, sent["output"]
        until(lambda: spooled(device) == 0, 120, "committed by Orthanc and deleted")
        assert len(archive.rest("/instances")) == count
        st = status(device)
        assert st["commitment"]["committed"] == count, st["commitment"]
        assert st["commitment"]["listener"]["associations"] >= 1, st["commitment"]


@pytest.mark.parametrize("board", BOARDS)
def test_mpps_refused_step_is_kept_until_an_operator_retries_it(board: str, tmp_path: Path) -> None:
    with mpps_session(board, tmp_path, 1, create=[0x0120, 0x0000]) as (store, mpps, device):
        until(lambda: status(device)["mpps"]["refused"] == 1, 60, "the step flagged")
        time.sleep(2)
        assert len(mpps.creates) == 1  # not sent again by itself
        assert "0x0120" in (status(device)["mpps"]["last_error"] or "")
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            console.call("queue", "retry", "mpps")
            console.call("study", "end")
        until(lambda: mpps.sets, 60, "created on the retry, then set")
        assert len(mpps.creates) == 2 and mpps.sets[0][1].PerformedProcedureStepStatus == "COMPLETED"


@pytest.mark.parametrize("board", BOARDS)
def test_mpps_n_set_failures_transient_repeated_permanent_kept(board: str, tmp_path: Path) -> None:
    """N-SET answered 0110 (processing failure) goes again by itself; answered 0120 (missing
    attribute) the step is flagged and kept until an operator retries it: never dropped."""
    with mpps_session(board, tmp_path, 1, sets=[0x0110, 0x0120, 0x0000]) as (store, mpps, device):
        until(lambda: mpps.creates and store.received, 60, "created and stored")
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            console.call("study", "end")
        until(lambda: status(device)["mpps"]["refused"] == 1, 60, "the step flagged after 0110, 0120")
        assert len(mpps.sets) == 2 and mpps.sets[0][0] == mpps.sets[1][0]
        time.sleep(2)
        assert len(mpps.sets) == 2  # a refused step is not sent again by itself
        st = status(device)["mpps"]
        assert "0x0120" in (st["last_error"] or "") and st["done"] == 0, st
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            console.call("queue", "retry", "mpps")
        until(lambda: status(device)["mpps"]["done"] == 1, 60, "completed on the operator's retry")
        assert len(mpps.creates) == 1 and len(mpps.sets) == 3
        assert mpps.sets[-1][1].PerformedProcedureStepStatus == "COMPLETED"


@pytest.mark.parametrize("board", BOARDS)
def test_a_repeated_n_create_answered_duplicate_counts_as_created(board: str, tmp_path: Path) -> None:
    """The SCP created the step but its answer never came back as success: the device sends the
    same N-CREATE again, the SCP answers 0111 (it holds that UID), and the step goes on."""
    with mpps_session(board, tmp_path, 1, create=[0x0110], answer_lost=True) as (store, mpps, device):
        until(lambda: len(mpps.creates) >= 2 and store.received, 60, "the N-CREATE sent again")
        with DeviceConsole(device.console_path, timeout_s=60) as console:
            console.call("study", "end")
        until(lambda: mpps.sets, 60, "the N-SET after the duplicate answer")
        until(lambda: status(device)["mpps"]["done"] == 1, 30, "the step done")
        st = status(device)["mpps"]
        assert st["refused"] == 0 and st["pending"] == 0, st
        assert len(mpps.creates) == 2 and mpps.creates[0][0] == mpps.creates[1][0] == mpps.sets[0][0]
        assert mpps.sets[0][1].PerformedProcedureStepStatus == "COMPLETED"
