"""`modgate validate` and modgate_host.validation: good objects pass, each kind of defect fails with
a reason, unlisted dciodvfy warnings fail, and the allow-list needs a reason per entry."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from modgate_host.cli import main
from modgate_host.commands.encode import encode
from modgate_host.validation import load_allow_list, pydicom_checks, validate_file


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("validate") / "good.dcm"
    encode("sc", "RGB888", 13, 7, path)
    return path


def altered(good: Path, tmp_path: Path, change: str) -> Path:
    ds = pydicom.dcmread(good)
    if change == "no-conversion-type":
        del ds.ConversionType  # Type 1 in the SC Equipment Module (PS3.3 C.8.6.1)
    elif change == "short-pixels":
        ds.PixelData = ds.PixelData[:-6]
    elif change == "bad-uid":
        ds.SOPInstanceUID = "1.2.03.4"
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.03.4"
    elif change == "meta-mismatch":
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.4"
    elif change == "charset":
        ds.PatientName = "Müller^Zoë"
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.save_as(tmp_path / "tmp.dcm")
        ds = pydicom.dcmread(tmp_path / "tmp.dcm")
        del ds.SpecificCharacterSet
    out = tmp_path / f"{change}.dcm"
    ds.save_as(out)
    return out


def test_good_object_passes(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    verdict = validate_file(good)
    assert verdict.ok and not verdict.errors and verdict.allowed
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"PASS {good}")


@pytest.mark.parametrize(("change", "reason"), [
    ("no-conversion-type", "ConversionType"),
    ("short-pixels", "Pixel Data has"),
    ("bad-uid", "invalid UID"),
    ("meta-mismatch", "Media Storage SOP Class UID differs"),
    ("charset", "without Specific Character Set"),
])
def test_defects_fail(good: Path, tmp_path: Path, change: str, reason: str,
                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = altered(good, tmp_path, change)
    verdict = validate_file(bad)
    assert not verdict.ok
    assert any(reason in e for e in verdict.errors), verdict.errors
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {bad}" in out and "1 passed, 1 failed" in out


def test_not_dicom(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 300)
    assert pydicom_checks(junk) == ["no 128-byte preamble and DICM prefix (PS3.10 7.1)"]
    assert main(["validate", str(junk), str(tmp_path / "missing.dcm")]) == 1


def test_unlisted_warning_fails(good: Path, tmp_path: Path) -> None:
    empty = tmp_path / "allow.txt"
    empty.write_text("# nothing accepted\n")
    verdict = validate_file(good, load_allow_list(empty))
    assert not verdict.ok and verdict.warnings and not verdict.errors
    assert main(["validate", "--allow", str(empty), str(good)]) == 1


def test_allow_list_needs_reasons(tmp_path: Path) -> None:
    bad = tmp_path / "allow.txt"
    bad.write_text("attribute <Laterality>\n")
    with pytest.raises(ValueError, match="text | reason"):
        load_allow_list(bad)
    assert main(["validate", "--allow", str(bad), str(bad)]) == 2
    for entry in load_allow_list():
        assert len(entry.reason) > 40
