"""`make demo`: the gateway's main job on embedded defaults, end to end, in under two minutes.

A receiving archive starts (the host's validating receiver, or Orthanc with --pacs orthanc) and a
hospital's Modality Worklist SCP (dcmtk wlmscpfs serving today's schedule, made by dump2dcm from
tests/worklist). The emulated device boots the real firmware under the smallest board's heap and
queries the worklist; a patient is selected on its console, as the operator at the modality
would, and a simulated legacy modality plays a short mixed session: single frames over TCP, a cine
loop that becomes one multi-frame object, and image files dropped on the device's card. When
everything has arrived the demo checks that every object carries the selected patient, accession
number and Study Instance UID, prints a summary and writes a contact sheet and an HTML
commissioning report into out/demo/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "host")]

import peers  # noqa: E402
import pydicom  # noqa: E402
from modgate_host.commands.device import show  # noqa: E402
from modgate_host.commands.simulate_modality import run_in_subprocess  # noqa: E402
from modgate_host.commands.worklist import all_rows, table_rows  # noqa: E402
from modgate_host.emulator import Emulator, board_heap, free_port  # noqa: E402
from modgate_host.receiver import Receiver  # noqa: E402
from modgate_host.report import Check, contact_sheet, received_rows, write_report  # noqa: E402
from modgate_host.transport import DeviceConsole  # noqa: E402
from modgate_host.validation import validate_file  # noqa: E402

OUT = ROOT / "out" / "demo"
ARCHIVE_AET = "ARCHIVE"
WORKLIST_AET = "RIS"
CHOSEN_ACCESSION = "A1001"  # tests/worklist/doe.dump: the item with every code the objects map
ORTHANC = "/usr/sbin/Orthanc"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def simulate(frames_url: str, name: str, frames: int, size: str, fmt: str, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = run_in_subprocess(frames_url, OUT / f"{name}.json", frames, size, fmt, *extra)
    print(data["output"].strip())
    return data


def write_pgm(path: Path, width: int, height: int) -> None:
    """A 16-bit PGM (P5) with a diagonal gradient, as an X-ray digitiser's card might hold."""
    rows = bytearray()
    for y in range(height):
        for x in range(width):
            rows += ((x * 4096 // width + y * 4096 // height) & 0xFFF).to_bytes(2, "big")
    tmp = path.with_suffix(".part")
    tmp.write_bytes(b"P5\n%d %d\n4095\n" % (width, height) + bytes(rows))
    tmp.rename(path)  # appear complete, as a card reader's copy would


def write_bmp(path: Path, width: int, height: int) -> None:
    """A 24-bit BMP (bottom-up BGR rows padded to 4 bytes) with colour bars."""
    from PIL import Image

    img = Image.new("RGB", (width, height))
    bars = [
        (255, 255, 255),
        (255, 255, 0),
        (0, 255, 255),
        (0, 255, 0),
        (255, 0, 255),
        (255, 0, 0),
        (0, 0, 255),
    ]
    for x in range(width):
        colour = bars[x * len(bars) // width]
        for y in range(height):
            img.putpixel((x, y), colour if y < height * 3 // 4 else (x * 255 // width,) * 3)
    tmp = path.with_suffix(".part")
    img.save(tmp, format="BMP")
    tmp.rename(path)


@contextmanager
def orthanc_archive(port: int, http_port: int):  # type: ignore[no-untyped-def]
    """Orthanc from a throw-away configuration, reachable on loopback only (run inside tools/netns)."""
    work = Path(tempfile.mkdtemp(prefix="demo-orthanc-"))
    config = {
        "Name": "modgate-demo",
        "StorageDirectory": str(work / "db"),
        "IndexDirectory": str(work / "db"),
        "DicomAet": ARCHIVE_AET,
        "DicomPort": port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    log = open(OUT / "orthanc.log", "wb")
    proc = subprocess.Popen([ORTHANC, str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        until = time.monotonic() + 30
        while time.monotonic() < until:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=1)
                break
            except OSError:
                time.sleep(0.2)

        def rest(path: str, raw: bool = False) -> Any:
            body = urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=30).read()
            return body if raw else json.loads(body)

        yield rest
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def fetch_from_orthanc(rest, folder: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """Every instance Orthanc holds, as Part 10 files (its REST API: /instances/{id}/file)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for instance in rest("/instances"):
        path = folder / f"{instance}.dcm"
        path.write_bytes(rest(f"/instances/{instance}/file", raw=True))
        paths.append(path)
    return paths


def worklist_session(console: DeviceConsole) -> dict[str, Any]:
    """What the operator does at the modality: refresh the worklist, read it, select the patient."""
    print("modgate> worklist refresh")
    show(console.call("worklist", "refresh", timeout_s=60), False)
    print("modgate> worklist list")
    rows = all_rows(console)
    show(table_rows(rows), False)
    chosen = [r for r in rows if r["accession"] == CHOSEN_ACCESSION]
    if not chosen:
        raise SystemExit(f"demo: the worklist has no item with accession {CHOSEN_ACCESSION}")
    print(f"modgate> worklist select {chosen[0]['n']}")
    selected: dict[str, Any] = console.call("worklist", "select", chosen[0]["n"])
    show(selected, False)
    selected["items"] = len(rows)
    return selected


def who(path: Path) -> dict[str, str]:
    """An object's patient and study, as the report's columns name them."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    steps = [str(r.get("ScheduledProcedureStepID", "")) for r in ds.get("RequestAttributesSequence", [])]
    return {
        "patient": str(ds.get("PatientName", "")),
        "patient id": str(ds.get("PatientID", "")),
        "accession": str(ds.get("AccessionNumber", "")),
        "scheduled step": ",".join(steps),
        "study instance uid": str(ds.get("StudyInstanceUID", "")),
    }


def differences(seen: dict[str, str], selected: dict[str, Any]) -> list[str]:
    """How an object (`who`) differs from the selected worklist item: empty when it carries it."""
    wanted = {
        "patient": selected["patient_name"],
        "patient id": selected["patient_id"],
        "accession": selected["accession_number"],
        "scheduled step": selected["scheduled_step_id"],
        "study instance uid": selected["study_instance_uid"],
    }
    return [f"{key} {seen[key]!r} != {value!r}" for key, value in wanted.items() if seen[key] != value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pacs", choices=("receiver", "orthanc"), default="receiver")
    parser.add_argument("--board", choices=("unix", "qemu-armhf"), default="unix")
    args = parser.parse_args()

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    archive_dir = OUT / "archive"
    flash = OUT / "flash"
    port = free_port()
    started = time.monotonic()
    # Today for the device: its clock is the host's, its timezone setting the default +0000.
    today = time.strftime("%Y%m%d", time.gmtime())
    with ExitStack() as stack:
        step(f"archive: {args.pacs} as {ARCHIVE_AET} on 127.0.0.1:{port}")
        receiver = None
        orthanc_rest = None
        if args.pacs == "receiver":
            receiver = stack.enter_context(Receiver(ARCHIVE_AET, port, archive_dir, validate=True))
        else:
            orthanc_rest = stack.enter_context(orthanc_archive(port, free_port()))

        wl = peers.make_worklist_files(OUT / "worklist" / WORKLIST_AET, day=today)
        ris = stack.enter_context(peers.wlmscpfs(OUT / "worklist", aet=WORKLIST_AET))
        step(
            f"worklist: dcmtk wlmscpfs as {WORKLIST_AET} on 127.0.0.1:{ris.port}, {len(wl)} scheduled steps"
            f" (tests/worklist, moved to {today}): 2 for this station today, 1 for another room, 1 tomorrow"
        )

        step(f"device: emulated board '{args.board}' booting the firmware (flash: {flash})")
        config = OUT / "device-config.json"
        config.write_text(
            json.dumps(
                {
                    "filedrop_enabled": True,
                    "station_name": "DEMO-US-1",
                    "institution_name": "modgate demo hospital",
                    "idle_timeout_ms": 1000,
                    "worklist_scp": f"{WORKLIST_AET}@127.0.0.1:{ris.port}",
                    "worklist_refresh_s": 0,  # the demo asks on the console, as the operator would
                }
            )
        )
        device = stack.enter_context(
            Emulator(args.board, flash, config=config, dests=[f"{ARCHIVE_AET}@127.0.0.1:{port}"])
        )
        print(json.dumps(device.ready_line()))

        step("console: the operator takes the patient from the worklist")
        with DeviceConsole(device.console_path, timeout_s=30) as console:
            selected = worklist_session(console)

        step("modality: 6 single frames, 512x512 GRAY16")
        singles = simulate(device.frames_url, "singles", 6, "512x512", "GRAY16", "--bits", "12")
        step("modality: a cine loop of 24 frames, 256x192 RGB888, into one multi-frame object")
        cine = simulate(device.frames_url, "cine", 24, "256x192", "RGB888", "--series", "24", "--rate", "60")
        step("card reader: a 16-bit PGM and a 24-bit BMP dropped on the device's card")
        drop = flash / "drop"
        drop.mkdir(parents=True, exist_ok=True)
        write_pgm(drop / "xray-0001.pgm", 320, 240)
        write_bmp(drop / "endoscope-0001.bmp", 160, 120)

        acked = {a["sop_instance_uid"] for a in singles["acked"] + cine["acked"]}
        expected = len(acked) + 2
        step(f"waiting for {expected} objects at the archive")
        delivered = 0
        until = time.monotonic() + 90
        while time.monotonic() < until:
            if receiver is not None:
                delivered = len(receiver.received)
                done = delivered >= expected and all(r.checked for r in receiver.received)
            else:
                assert orthanc_rest is not None
                delivered = int(orthanc_rest("/statistics")["CountInstances"])
                done = delivered >= expected
            print(f"\r   delivered {delivered}/{expected}", end="", flush=True)
            if done:
                break
            time.sleep(0.25)
        print()
        elapsed = time.monotonic() - started
        sent = 6 + 24 + 2
        if receiver is not None:
            paths = [r.path for r in receiver.received]
            rows = received_rows(receiver.received)
            valid = sum(1 for r in receiver.received if r.ok)
        else:
            assert orthanc_rest is not None
            paths = fetch_from_orthanc(orthanc_rest, archive_dir)
            rows = [{"file": p.name, "bytes": p.stat().st_size} for p in paths]
            valid = sum(1 for p in paths if validate_file(p).ok)
        seen = [who(p) for p in paths]
        rows = [dict(row, **object_) for row, object_ in zip(rows, seen, strict=True)]
        differ = {p.name: differences(o, selected) for p, o in zip(paths, seen, strict=True)}
        differ = {name: wrong for name, wrong in differ.items() if wrong}
        # The device's own account of its heap, over its console as a field engineer would ask.
        with DeviceConsole(device.console_path, timeout_s=30) as console:
            heap = console.call("status")["heap"]
        summary = {
            "frames_sent": sent,
            "frames_acknowledged": len(singles["acked"]) + len(cine["acked"]) + 2,
            "objects_expected": expected,
            "objects_delivered": delivered,
            "objects_validated": valid,
            "seconds": round(elapsed, 1),
            "pacs": args.pacs,
            "board": args.board,
            "throughput_objects_per_s": round(delivered / elapsed, 2) if elapsed else None,
            "device_heap_bytes": int(board_heap(args.board)),
            "device_heap_least_free_after_gc": heap["free_min"],
            "device_out_of_memory": heap["out_of_memory"],
            "worklist_items_for_this_station": selected["items"],
            "worklist_patient": f"{selected['patient_name']} ({selected['patient_id']})",
            "worklist_accession_number": selected["accession_number"],
            "worklist_scheduled_step_id": selected["scheduled_step_id"],
            "worklist_study_instance_uid": selected["study_instance_uid"],
            "objects_carrying_the_worklist_item": len(paths) - len(differ),
        }
        step("summary")
        for key, value in summary.items():
            print(f"   {key:34} {value}")
        (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        checks = [
            Check(
                "the device acknowledged every frame",
                summary["frames_acknowledged"] == sent,
                f"{summary['frames_acknowledged']} of {sent}",
            ),
            Check(
                "every acknowledged frame reached the archive",
                delivered >= expected,
                f"{delivered} of {expected} objects",
            ),
            Check("every object passes pydicom and dciodvfy", valid == delivered, f"{valid} of {delivered}"),
            Check(
                "every object carries the patient, accession number and study selected from the worklist",
                bool(paths) and not differ,
                f"{len(paths) - len(differ)} of {len(paths)} carry {selected['patient_name']},"
                f" {selected['accession_number']}, step {selected['scheduled_step_id']},"
                f" study {selected['study_instance_uid']}"
                + "".join(f"; {name}: {', '.join(wrong)}" for name, wrong in sorted(differ.items())[:3]),
            ),
            Check(
                "the device never ran out of its heap",
                heap["out_of_memory"] == 0,
                f"{heap['out_of_memory']} out-of-memory errors caught by the loop; least free after a"
                f" collection {heap['free_min']} bytes of {board_heap(args.board)}",
            ),
        ]
        sheet = contact_sheet(paths, OUT / "contact-sheet.png")
        html = write_report(OUT / "report.html", f"emulated board {args.board}", checks, summary, rows, sheet)
        print(f"   contact sheet: {sheet}\n   report: {html}")
        ok = all(c.ok for c in checks)
    print("\ndemo " + ("PASSED" if ok else "FAILED") + f" in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
