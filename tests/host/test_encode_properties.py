"""Hypothesis: the device writer (in-process on CPython) makes valid objects for any size, odd
dimensions, any chunking of the input and any odd- or even-length text values."""

from __future__ import annotations

from pathlib import Path

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modgate.dicom import iods, pixels, uids
from modgate.dicom.writer import ObjectWriter
from modgate.testpattern import Pattern
from modgate_host.validation import load_allow_list, pydicom_checks, validate_file

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
ALLOW = load_allow_list()
# Letters (some not ASCII), digits and a little punctuation: what a console or config may hold.
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-' éüñÅßø",
               max_size=20)
# Person names with two or three components: dciodvfy warns on a single-component PN (retired form).
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-' éüñÅßø", max_size=20)


def write(path: Path, iod: str, fmt: str, width: int, height: int, frames: int, chunk: int,
          ctx: dict[str, object], bits: int | None = None) -> Pattern:
    lay = pixels.layout(fmt, width, height, bits)
    pattern = Pattern(fmt, width, height, bits)
    base = {"study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "now": (2026, 1, 2, 3, 4, 5),
            "patient_orientation": "A\\F"}
    with path.open("wb") as f:
        w = ObjectWriter(f, iod, lay, {**base, **ctx}, uids.UidGenerator(None, "5", 9))
        w.begin()
        for frame in range(frames):
            data = b"".join(pattern.row(y, frame) for y in range(height))
            for i in range(0, len(data), chunk):
                w.write_pixels(data[i:i + chunk])
            w.end_frame()
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
    ctx = {"patient_name": "^".join(name), "patient_id": pid, "series_description": desc,
           "institution_name": inst, "station_name": station}
    path = tmp_path / "t.dcm"
    write(path, "sc", "GRAY8", 3, 3, 1, 9, ctx)
    assert pydicom_checks(path) == []
    assert validate_file(path, ALLOW).ok
    ds = pydicom.dcmread(path)

    def cut(text: str, limit: int) -> str:
        return text[:limit].encode()[:limit].decode(errors="ignore").strip()

    assert str(ds.PatientID) == cut(pid, 64)
    assert str(ds.PatientName) == cut("^".join(name), 64)
    if desc.strip():
        assert ds.SeriesDescription == cut(desc, 64)
    if station.strip():
        assert ds.StationName == cut(station, 16)
    raw = path.read_bytes()
    assert len(raw) % 2 == 0
    text = "".join([pid, desc, inst, station, *name])
    assert ("SpecificCharacterSet" in ds) == (not text.isascii())
