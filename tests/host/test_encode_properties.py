"""Hypothesis: the device writer (in-process on CPython) makes valid objects for any size, odd
dimensions, any chunking of the input and any odd- or even-length text values."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modgate.dicom import iods, pixels, uids, vr
from modgate.dicom.writer import ObjectWriter
from modgate.errors import EncodeError
from modgate.testpattern import Pattern
from modgate_host.validation import load_allow_list, pydicom_checks, validate_file

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
ALLOW = load_allow_list()
# Letters (some not ASCII), digits, a little punctuation and the backslash a value may not hold.
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-' éüñÅßø\\",
               max_size=20)
# Person names with two or three components: dciodvfy warns on a single-component PN (retired form).
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-' éüñÅßø", max_size=20)


def write(path: Path, iod: str, fmt: str, width: int, height: int, frames: int, chunk: int,
          ctx: dict[str, object], bits: int | None = None, increments: list[int] | None = None) -> Pattern:
    lay = pixels.layout(fmt, width, height, bits)
    pattern = Pattern(fmt, width, height, bits)
    base = {"study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "now": (2026, 1, 2, 3, 4, 5),
            "patient_orientation": "A\\F", "conversion_type": "SYN", "burned_in_annotation": "NO",
            "frame_time_ms": "40", "pixel_spacing": "0.5\\0.5", "laterality": "U"}
    with path.open("wb") as f:
        w = ObjectWriter(f, iod, lay, {**base, **ctx}, uids.UidGenerator(None, "5", 9))
        w.begin()
        for frame in range(frames):
            data = b"".join(pattern.row(y, frame) for y in range(height))
            for i in range(0, len(data), chunk):
                w.write_pixels(data[i:i + chunk])
            w.end_frame(increments[frame] if increments else None)
        w.finish()
    return pattern


@SETTINGS
@given(iod=st.sampled_from(sorted(iods.IODS)), width=st.integers(1, 70), height=st.integers(1, 40),
       frames=st.integers(1, 3), chunk=st.integers(1, 500), data=st.data())
def test_any_size_and_chunking(tmp_path: Path, iod: str, width: int, height: int, frames: int, chunk: int,
                               data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(iods.IODS[iod]["formats"]))
    if fmt == "YUYV":
        width += width & 1
    bits = data.draw(st.sampled_from(pixels.GRAY16_BITS)) if fmt == "GRAY16" else None
    frames = frames if iods.IODS[iod]["multi_frame"] else 1
    path = tmp_path / "x.dcm"
    pattern = write(path, iod, fmt, width, height, frames, chunk, {}, bits)
    verdict = validate_file(path, ALLOW)
    assert verdict.ok, "\n".join(verdict.lines())
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (height, width)
    if fmt in ("GRAY8", "GRAY16", "RGB888"):
        want = b"".join(pattern.row(y, f) for f in range(frames) for y in range(height))
        assert ds.PixelData[: len(want)] == want


@SETTINGS
@given(name=st.lists(NAME.map(str.strip).filter(bool), min_size=2, max_size=3), pid=WORD, desc=WORD,
       inst=WORD, station=WORD)
def test_any_text_values(tmp_path: Path, name: list[str], pid: str, desc: str, inst: str,
                         station: str) -> None:
    """A text value is written exactly as given, or the object is refused naming it: never cut,
    upper-cased or cleaned (the check is modgate.dicom.vr's)."""
    ctx = {"patient_name": "^".join(name), "patient_id": pid, "series_description": desc,
           "institution_name": inst, "station_name": station}
    bad = [why for key, value in ctx.items() if (why := vr.field_problem(key, value))]
    path = tmp_path / "t.dcm"
    if bad:
        with pytest.raises(EncodeError) as caught:
            write(path, "sc", "GRAY8", 3, 3, 1, 9, ctx)
        assert str(caught.value) in bad
        return
    write(path, "sc", "GRAY8", 3, 3, 1, 9, ctx)
    assert pydicom_checks(path) == []
    assert validate_file(path, ALLOW).ok
    ds = pydicom.dcmread(path)
    assert str(ds.PatientID) == pid.rstrip()  # as given; pydicom drops the trailing pad
    assert str(ds.PatientName) == "^".join(name).rstrip()
    if desc:
        assert ds.SeriesDescription == desc.rstrip()
    if station:
        assert ds.StationName == station.rstrip()
    raw = path.read_bytes()
    assert len(raw) % 2 == 0
    text = "".join([pid, desc, inst, station, *name])
    assert ("SpecificCharacterSet" in ds) == (not text.isascii())


@SETTINGS
@given(frames=st.integers(1, 8), spare=st.integers(0, 5), gaps=st.lists(st.integers(0, 9999999), min_size=8,
                                                                         max_size=8))
def test_frame_time_vector_any_arrivals(tmp_path: Path, frames: int, spare: int, gaps: list[int]) -> None:
    """Arrival times in a Frame Time Vector reserved for more frames than came: valid, exact."""
    path = tmp_path / "v.dcm"
    ctx = {"frame_time_ms": None, "max_frames": frames + spare}
    write(path, "mf-gray8", "GRAY8", 5, 3, frames, 7, ctx, increments=gaps)
    verdict = validate_file(path, ALLOW)
    assert verdict.ok, "\n".join(verdict.lines())
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == frames
    if frames == 1:
        assert "FrameTimeVector" not in ds and "FrameIncrementPointer" not in ds
    else:
        assert [int(v) for v in ds.FrameTimeVector] == [0, *gaps[1:frames]]
        assert ds.FrameIncrementPointer == 0x00181065
