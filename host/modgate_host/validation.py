"""Validate DICOM Part 10 files: pydicom structure checks plus dicom3tools' `dciodvfy` IOD checks.

Library for `modgate validate`, the host receiver and the tests. dciodvfy errors always fail a file;
its warnings fail it too unless an entry of the allow-list (dciodvfy_allow.txt: "text | reason")
matches them, so every accepted warning is written down with its reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

ALLOW_LIST = Path(__file__).with_name("dciodvfy_allow.txt")
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
KNOWN_TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


class ValidatorUnavailable(RuntimeError):
    """dciodvfy is not installed (apt-get install dicom3tools)."""


@dataclass(frozen=True)
class AllowEntry:
    text: str
    reason: str


@dataclass
class Verdict:
    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # not allowed: they fail the file
    allowed: list[str] = field(default_factory=list)  # matched an allow-list entry

    @property
    def ok(self) -> bool:
        return not self.errors and not self.warnings

    def lines(self) -> list[str]:
        head = f"{'PASS' if self.ok else 'FAIL'} {self.path}"
        body = [f"  error: {e}" for e in self.errors] + [f"  warning: {w}" for w in self.warnings]
        body += [f"  allowed warning: {a}" for a in self.allowed]
        return [head, *body]


def load_allow_list(path: Path = ALLOW_LIST) -> list[AllowEntry]:
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        text, sep, reason = line.partition("|")
        if not sep or not text.strip() or not reason.strip():
            raise ValueError(f"{path}:{number}: entry needs 'text | reason'")
        entries.append(AllowEntry(text.strip(), reason.strip()))
    return entries


def run_dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) reported by dciodvfy for `path`."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        raise ValidatorUnavailable("dciodvfy not found (apt-get install dicom3tools)")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, errors="replace", timeout=300)
    errors: list[str] = []
    warnings: list[str] = []
    for line in (proc.stderr + proc.stdout).splitlines():
        if line.startswith("Error"):
            errors.append(line)
        elif line.startswith("Warning"):
            warnings.append(line)
    if proc.returncode not in (0, 1) and not errors:
        errors.append(f"dciodvfy exited {proc.returncode}")
    return errors, warnings


def _expected_pixel_bytes(ds: pydicom.Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    per_pixel = int(ds.SamplesPerPixel) * int(ds.BitsAllocated) // 8
    if ds.PhotometricInterpretation in ("YBR_FULL_422", "YBR_PARTIAL_422"):
        per_pixel = 2  # PS3.3 C.7.6.3.1.2: two samples per pixel on average
    n = int(ds.Rows) * int(ds.Columns) * per_pixel * frames
    return n + (n & 1)


def _texts(ds: pydicom.Dataset) -> list[str]:
    out = []
    for elem in ds.iterall():
        if elem.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and elem.value is not None:
            values = elem.value if elem.VM > 1 else [elem.value]
            out += [str(v) for v in values]
    return out


def pydicom_checks(path: Path) -> list[str]:
    """Structure checks dciodvfy does not make: Part 10 framing, meta consistency, pixel length."""
    errors = []
    raw = path.read_bytes()[:132]
    if len(raw) < 132 or raw[128:132] != b"DICM":
        return ["no 128-byte preamble and DICM prefix (PS3.10 7.1)"]
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        return [f"pydicom cannot read it: {exc}"]
    meta = ds.file_meta
    if "FileMetaInformationGroupLength" not in meta:
        errors.append("file meta has no group length (0002,0000)")
    for key in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID",
                "ImplementationClassUID"):
        if not meta.get(key):
            errors.append(f"file meta has no {key}")
    if meta.get("TransferSyntaxUID") not in KNOWN_TRANSFER_SYNTAXES:
        errors.append(f"transfer syntax {meta.get('TransferSyntaxUID')} is not uncompressed little endian")
    if meta.get("MediaStorageSOPClassUID") != ds.get("SOPClassUID"):
        errors.append("Media Storage SOP Class UID differs from SOP Class UID")
    if meta.get("MediaStorageSOPInstanceUID") != ds.get("SOPInstanceUID"):
        errors.append("Media Storage SOP Instance UID differs from SOP Instance UID")
    for elem in [*meta.iterall(), *ds.iterall()]:
        if elem.VR == "UI" and elem.value:
            value = str(elem.value)
            if len(value) > 64 or not UID_RE.match(value):
                errors.append(f"{elem.keyword or elem.tag}: invalid UID {value!r} (PS3.5 9.1)")
    charset = str(ds.get("SpecificCharacterSet", ""))
    if any(not t.isascii() for t in _texts(ds)) and "ISO_IR 192" not in charset:
        errors.append("non-ASCII text without Specific Character Set ISO_IR 192")
    if "PixelData" in ds:
        expected = _expected_pixel_bytes(ds)
        if len(ds.PixelData) != expected:
            errors.append(f"Pixel Data has {len(ds.PixelData)} bytes, expected {expected}")
        else:
            try:
                ds.pixel_array  # noqa: B018 - decoding is the check
            except Exception as exc:  # pydicom raises many types here
                errors.append(f"pixel data does not decode: {exc}")
    return errors


def validate_file(path: Path, allow: list[AllowEntry] | None = None, dciodvfy: bool = True) -> Verdict:
    allow = load_allow_list() if allow is None else allow
    verdict = Verdict(Path(path))
    verdict.errors += pydicom_checks(verdict.path)
    if dciodvfy and verdict.path.exists():
        errors, warnings = run_dciodvfy(verdict.path)
        verdict.errors += errors
        for w in warnings:
            if any(entry.text in w for entry in allow):
                verdict.allowed.append(w)
            else:
                verdict.warnings.append(w)
    return verdict
