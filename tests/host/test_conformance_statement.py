"""docs/conformance-statement.md must say what the firmware does.

Every table of the statement preceded by `<!-- check: NAME -->` is parsed here and compared with
the firmware's own declarations: the SOP classes (modgate.dicom.iods), the transfer syntaxes and
presentation contexts (modgate.net.scu), the status classification (modgate.net.status), the
implementation identifiers (modgate.dicom.part10), the configuration defaults (modgate.config),
the attribute mapping (modgate.contexts, modgate.dicom.vr) and, for every IOD, the module tables:
each element, VR, Presence of Value and constant against objects the real context provider and
writer make in several situations (nothing known, everything known, a worklist item selected,
...); the Modality Worklist SCU (modgate.net.find, modgate.dicom.mwl: contexts, keys, statuses,
character sets, and the Source MWL mapping against an object made from a selected item). When
the code changes, this test fails until the statement is updated.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pydicom
import pytest
from modgate import config, contexts
from modgate import worklist as wl
from modgate.dicom import attrs, charset, iods, mwl, part10, pixels, uids, vr
from modgate.dicom.writer import ObjectWriter
from modgate.net import VERIFICATION, find, items, scu, status, storage_classes
from pydicom.dataset import Dataset
from pydicom.uid import UID

STATEMENT = Path(__file__).resolve().parents[2] / "docs" / "conformance-statement.md"
MARKER = re.compile(r"^\s*<!--\s*check:\s*([^`]+?)\s*-->\s*$")
TAG = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")
CONSTANT = re.compile(r"^constant `([^`]*)`")

Row = dict[str, str]
Element = tuple[bytes, bytes]  # (VR, value bytes)
Objects = list[dict[int, Element]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> dict[str, list[Row]]:
    """{marker name: rows as dicts keyed by the header cells} for every marked table."""
    lines = text.splitlines()
    found: dict[str, list[Row]] = {}
    for i, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        assert j + 1 < len(lines) and lines[j].startswith("|"), f"no table after marker {match.group(1)!r}"
        header = _cells(lines[j])
        assert set(lines[j + 1].replace("|", "").strip()) <= set("-: "), f"{match.group(1)}: no separator"
        rows = []
        j += 2
        while j < len(lines) and lines[j].startswith("|"):
            cells = _cells(lines[j])
            assert len(cells) == len(header), f"{match.group(1)}: row has {len(cells)} cells: {lines[j]}"
            rows.append(dict(zip(header, cells, strict=True)))
            j += 1
        name = match.group(1)
        assert name not in found, f"marker {name!r} used twice"
        found[name] = rows
    return found


@pytest.fixture(scope="module")
def tables() -> dict[str, list[Row]]:
    return parse_tables(STATEMENT.read_text(encoding="utf-8"))


# ---- SOP classes, transfer syntaxes, presentation contexts -----------------------------------


def test_sop_class_table_lists_exactly_what_the_firmware_creates(tables: dict[str, list[Row]]) -> None:
    rows = tables["sop-classes"]
    storage = [(r["modgate name"], r["SOP Class UID"]) for r in rows if r["modgate name"] != "-"]
    assert storage == [(name, iods.IODS[name]["sop_class_uid"]) for name in iods.IODS]
    assert [uid for _, uid in storage] == list(iods.STORAGE_SOP_CLASSES)
    others = [r for r in rows if r["modgate name"] == "-"]
    assert [r["SOP Class UID"] for r in others] == [find.MODALITY_WORKLIST_FIND, VERIFICATION]
    for r in rows:
        assert (r["SCU"], r["SCP"]) == ("Yes", "No"), r
        if r["SOP Class UID"] != VERIFICATION:  # pydicom names it "Verification SOP Class"
            assert r["SOP Class"] == UID(r["SOP Class UID"]).name, "SOP class name must be the standard's"


def test_transfer_syntax_table_matches_the_proposal(tables: dict[str, list[Row]]) -> None:
    rows = tables["transfer-syntaxes"]
    assert [r["UID"] for r in rows] == list(scu.PROPOSED_TRANSFER_SYNTAXES)
    assert [int(r["Order of preference"]) for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        assert r["Transfer Syntax"] == UID(r["UID"]).name


def test_presentation_context_table_is_the_a_associate_rq(tables: dict[str, list[Row]]) -> None:
    rows = tables["presentation-contexts"]
    documented = [(int(r["ID"]), r["Abstract Syntax UID"], r["Transfer Syntax UID"]) for r in rows]
    proposed = [(cid, uid, syntaxes) for cid, uid, syntaxes in scu.proposal(storage_classes())]
    assert all(len(syntaxes) == 1 for _, _, syntaxes in proposed), "the table assumes one syntax per context"
    assert documented == [(cid, uid, syntaxes[0]) for cid, uid, syntaxes in proposed]
    for r in tables["presentation-contexts"]:
        assert (r["Role"], r["Extended negotiation"]) == ("SCU", "None")


def test_implementation_identifiers_and_fixed_parameters(tables: dict[str, list[Row]]) -> None:
    values = {r["Item"]: r["Value"] for r in tables["implementation"]}
    assert values == {
        "Application Context Name": items.APPLICATION_CONTEXT,
        "Implementation Class UID": part10.IMPLEMENTATION_CLASS_UID,
        "Implementation Version Name": part10.IMPLEMENTATION_VERSION_NAME,
        "Maximum PDU length received (default, `max_pdu`)": str(config.default("max_pdu")),
        "ARTIM timeout, ms (default, `artim_timeout_ms`)": str(config.default("artim_timeout_ms")),
        "Objects per association before an orderly release (default, `max_objects_per_association`)": str(
            config.default("max_objects_per_association")
        ),
    }
    # The session's own fallbacks must agree with the configuration defaults the statement cites.
    for key in (
        "max_pdu",
        "connect_timeout_ms",
        "acse_timeout_ms",
        "dimse_timeout_ms",
        "idle_timeout_ms",
        "artim_timeout_ms",
        "max_objects_per_association",
    ):
        assert scu.DEFAULTS[key] == config.default(key), key


# ---- status classification ------------------------------------------------------------------


def status_pattern(mask: int, value: int) -> str:
    """'A7xx' for (0xFF00, 0xA700): one hex digit per fully masked nibble, 'x' for a free one."""
    out = ""
    for shift in (12, 8, 4, 0):
        nibble = (mask >> shift) & 0xF
        assert nibble in (0x0, 0xF), f"mask {mask:04X} cannot be written as a pattern"
        out += f"{(value >> shift) & 0xF:X}" if nibble else "x"
    return out


B23_CODES = ["0000", "B000", "B006", "B007", "A7xx", "A9xx", "Cxxx"]  # PS3.4 Table B.2-1


def _example(pattern: str) -> int:
    return 0x1234 if pattern == "xxxx" else int(pattern.replace("x", "0"), 16)


def test_status_tables_are_the_classification_table(tables: dict[str, list[Row]]) -> None:
    """The first table holds what PS3.4 B.2.3 defines for C-STORE, the second every other code the
    firmware knows and its catch-all; together they are exactly STATUS_CLASSES."""
    b23 = [r for r in tables["status"] if r["Status"] != "see below"]
    assert [r["Status"] for r in b23] == B23_CODES
    other = tables["status-other"]
    documented = [(r["Status"], r["Class"]) for r in b23 + other]
    firmware = [(status_pattern(m, v), k) for m, v, k, _ in status.STATUS_CLASSES]
    assert sorted(documented) == sorted(firmware)
    assert other[-1]["Status"] == "xxxx" and status.STATUS_CLASSES[-1][0] == 0
    for pattern, klass in documented:
        assert status.classify(_example(pattern))[0] == klass, pattern
    for code in (0x0001, 0x0107, 0x0116):  # N-service statuses: not C-STORE answers
        assert status_pattern(0xFFFF, code) not in [p for p, _ in documented]
        assert status.classify(code)[0] == "transient"


# ---- configuration ------------------------------------------------------------------------------


def _default_text(key: str) -> str:
    value = config.default(key)
    return "(empty)" if value == "" else str(value)


def _check_setting_row(key: str, default: str, limits: str) -> None:
    entry = config.entry(key)  # ConfigError for a key the firmware does not have
    kind, limit = entry[1], entry[3]
    assert default == _default_text(key), f"{key}: default"
    if kind == "int":
        assert limits == f"{limit[0]}-{limit[1]}", f"{key}: range"
    elif kind == "choice":
        named = {c.strip() for c in re.split(r",| or ", limits) if c.strip()}
        wanted = {c for c in limit if c} | ({"empty"} if "" in limit else set())
        assert named == wanted, f"{key}: choices"
    elif kind != "date" and isinstance(limit, int):
        assert re.search(rf"\b{limit}\b", limits), f"{key}: length limit {limit} not in {limits!r}"


def test_configuration_table_matches_the_schema(tables: dict[str, list[Row]]) -> None:
    rows = tables["configuration"]
    for r in rows:
        _check_setting_row(r["Setting"], r["Default"], r["Range or choices"])
    keys = {r["Setting"] for r in rows}
    must = {
        "ae_title",
        "max_pdu",
        "connect_timeout_ms",
        "acse_timeout_ms",
        "dimse_timeout_ms",
        "idle_timeout_ms",
        "uid_root",
        "device_serial",
        "modality",
        "iod",
        "grouping",
        "retry_max_attempts",
        "dead_max_items",
    }
    assert must <= keys, f"settings the statement must document: {sorted(must - keys)}"
    iod_choices = set(config.entry("iod")[3])
    assert iod_choices <= set(iods.IODS), "every configurable IOD is one the encoder knows"


def test_timer_table_matches_the_schema(tables: dict[str, list[Row]]) -> None:
    for r in tables["timers"]:
        _check_setting_row(r["Setting"], r["Default"], r["Range"])



def test_number_of_associations_and_asynchronous_nature(tables: dict[str, list[Row]]) -> None:
    rows = {r["Number of associations as an association initiator"]: r["Maximum"]
            for r in tables["associations"]}
    # One open association per destination, and the configuration holds at most this many.
    most = str(config.entry("destinations")[3])
    assert rows == {"Simultaneous associations (one per destination)": most}
    assert [r["Maximum"] for r in tables["asynchronous"]][0].startswith("1 ")


# ---- where values come from ---------------------------------------------------------------

# A distinctive valid value per frame context member, and an IOD that writes it.
MAPPED = {
    "patient_name": ("MAPPING^TEST", "sc"), "patient_id": ("MAP-ID", "sc"),
    "patient_birth_date": ("19700704", "sc"), "patient_sex": ("O", "sc"), "accession_number": ("ACC9", "sc"),
    "referring_physician": ("REF^DOC", "sc"), "study_instance_uid": ("1.2.3.777", "sc"),
    "series_instance_uid": ("1.2.3.778", "sc"), "study_id": ("ST9", "sc"), "study_date": ("20200101", "sc"),
    "study_time": ("1200", "sc"), "study_description": ("MAP STUDY", "sc"),
    "series_description": ("MAP SERIES", "sc"), "institution_name": ("MAP HOSPITAL", "sc"),
    "station_name": ("MAPST", "sc"), "image_comments": ("MAP COMMENT", "sc"), "modality": ("ES", "sc"),
    "body_part": ("KNEE", "sc"), "laterality": ("L", "sc"), "patient_orientation": ("P\\H", "sc"),
    "burned_in_annotation": ("YES", "sc"), "conversion_type": ("DRW", "sc"),
    "pixel_spacing": ("0.5\\0.25", "sc"), "pixel_aspect_ratio": ("5\\4", "us"),
    "frame_time_ms": ("41.5", "mf-gray8"), "detector_type": ("FILM", "dx"),
    "pixel_intensity_relationship": ("LOG", "dx"),
}


def test_attribute_mapping_is_what_the_device_writes(tables: dict[str, list[Row]]) -> None:
    rows = tables["mapping"]
    members = [r["Frame context member"] for r in rows]
    assert sorted(members) == sorted(contexts.HEADER_CONTEXT_KEYS) == sorted(MAPPED)
    for r in rows:
        member = r["Frame context member"]
        assert r["VR"] == vr.field_vr(member), member
        field = r["Console `patient next`"]
        assert field == "-" or contexts.PATIENT_FIELD_KEYS[field] == member, member
        for key in r["Setting"].split(", "):
            assert key == "-" or config.entry(key), member
        value, iod = MAPPED[member]
        written = write_object(iod, "GRAY8", {**REQUIRED[iod], member: value}, frames=2)
        tag = _tag(r["Tag"])
        assert written[tag][1].rstrip(b" \x00") == value.encode(), f"{member} not written as {r['Tag']}"


def test_coerced_fields_name_real_attributes(tables: dict[str, list[Row]]) -> None:
    documented = {_tag(r["Tag"]): r["Attribute Name"]
                  for rows in module_tables(tables).values() for r in rows}
    for r in tables["coerced"]:
        for text in re.findall(r"\([0-9A-F]{4},[0-9A-F]{4}\)", r["Tag"]):
            tag = _tag(text)
            assert tag in documented, text
        names = [n.strip() for n in r["Attribute"].split(",")]
        if not r["Attribute"].startswith("dates"):
            assert set(names) <= set(documented.values()), names


# ---- IOD contents: the module tables against the writer ------------------------------------

MODULE = re.compile(r"^module (.+?) \| (.+)$")
TERMS = {"ALWAYS", "VNAP", "ANAP", "EMPTY"}
SOURCES = {"USER", "AUTO", "CONFIG", "MWL"}
TEXT_VRS = (b"AE", b"CS", b"DA", b"DS", b"IS", b"LO", b"LT", b"PN", b"SH", b"ST", b"TM", b"UI")
# The Type 1 facts each IOD needs (docs 6.2), and values a commissioned source would give.
FACTS = {"conversion_type": "DI", "burned_in_annotation": "NO", "pixel_spacing": "0.2\\0.2",
         "laterality": "U", "patient_orientation": "A\\F"}


def _required(name: str) -> dict[str, str]:
    keys = {"patient_orientation"} if name == "dx" else set()
    for table in iods.IODS[name]["tables"].split():
        keys |= {line[13:] for line in attrs._TABLES[table].split("\n") if line[12] == "!"}
    timing = {"frame_time_ms": "40"} if iods.IODS[name]["multi_frame"] else {}
    return {**{k: FACTS[k] for k in keys}, **timing}


REQUIRED = {name: _required(name) for name in iods.IODS}
# Everything optional given (frame context) and the settings that feed objects set.
FULL = {"patient_name": "Müller^Zoë", "patient_id": "P1", "patient_birth_date": "19800101",
        "patient_sex": "F",
        "accession_number": "A1", "referring_physician": "WHO^DOC", "study_id": "S1",
        "study_description": "study", "series_description": "series", "body_part": "KNEE", "laterality": "R",
        "image_comments": "comment", "detector_type": "DIRECT", "conversion_type": "DV",
        "burned_in_annotation": "YES", "pixel_spacing": "0.2\\0.2", "patient_orientation": "A\\F"}
SETTINGS_NONE = {"station_name": ""}
SETTINGS_FULL = {"institution_name": "General Hospital", "default_patient_name": "DEFAULT^NAME"}


class _Device:
    """What modgate.contexts.Contexts asks of the device facade, with a real configuration;
    with `worklist`, a real worklist cache on `folder` holding those identifiers, the first
    selected (as `worklist select 1` on the console)."""

    def __init__(self, folder: Path, settings: dict[str, str], worklist: list[bytes] | None = None) -> None:
        self.state_dir = str(folder)
        self.config = config.Config(str(folder / "config.json")).load()
        for key, value in settings.items():
            self.config.set(key, value)
        self.board = {"id": "test-board", "name": "Test Board"}
        self.serial = "77"
        self.uid_gen = uids.UidGenerator(None, "77", 1)
        self.online = True
        self._worklist = None
        if worklist:
            from test_worklist import fill

            self.config.set("worklist_scp", "RIS@127.0.0.1:104")
            self._worklist = wl.Worklist(self)
            fill(self._worklist, worklist)
            self._worklist.select(1)

    def note_clock_unset(self) -> None:
        pass

    def worklist(self) -> wl.Worklist | None:
        return self._worklist

    def study_started(self, context: dict[str, object], now: tuple[int, ...]) -> None:
        return None


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99MAP", meaning
    return item


def mwl_identifier() -> bytes:
    """A Modality Worklist match as an SCP answers it (Explicit VR LE, written by pydicom, not by
    our encoder), every return key of 3.2.6 with a distinctive value."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.AccessionNumber = "MAPACC"
    ds.ReferringPhysicianName = "MAP^REFERRER"
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", "1.2.3.99.2"
    ds.ReferencedStudySequence = [study]
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = "MAP^PATIENT", "MAP-PID", "MAP-ISSUER"
    ds.PatientBirthDate, ds.PatientSex = "19610203", "O"
    ds.StudyInstanceUID = "1.2.3.99.1"
    ds.RequestedProcedureDescription = "MAP PROCEDURE"
    ds.RequestedProcedureCodeSequence = [_code("RPC1", "Map procedure")]
    ds.RequestedProcedureID = "MAPRP"
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = "OT", "MODGATE"
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = "20260705", "0930"
    step.ScheduledPerformingPhysicianName = "MAP^TECH"
    step.ScheduledProcedureStepDescription = "MAP STEP"
    step.ScheduledProtocolCodeSequence = [_code("PRT1", "Map protocol")]
    step.ScheduledProcedureStepID = "MAPSPS"
    ds.ScheduledProcedureStepSequence = [step]
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def write_bytes(name: str, fmt: str, frame_context: dict[str, str], frames: int = 1,
                settings: dict[str, str] | None = None, worklist: list[bytes] | None = None) -> bytes:
    """A Part 10 object as the device writes it: the real context provider (settings, source
    facts, worklist selection, frame context) and the real writer."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        provider = contexts.Contexts(_Device(Path(tmp), settings or {}, worklist))
        ctx = provider.for_acquisition(frame_context, "tcp:1.2.3.4:5")
    ctx.setdefault("series_instance_uid", "1.2.3.4")
    multi = iods.IODS[name]["multi_frame"]
    frames = frames if multi else 1
    if multi and not ctx.get("frame_time_ms"):
        ctx["max_frames"] = frames
    lay = pixels.layout(fmt, 4, 2)
    out = io.BytesIO()
    w = ObjectWriter(out, name, lay, ctx, uids.UidGenerator(None, "1", 1))
    w.begin()
    for i in range(frames):
        w.write_pixels(bytes(lay.input_frame_bytes))
        w.end_frame(0 if i == 0 else 33)
    w.finish()
    return out.getvalue()


def write_object(name: str, fmt: str, frame_context: dict[str, str], frames: int = 1,
                 settings: dict[str, str] | None = None,
                 worklist: list[bytes] | None = None) -> dict[int, Element]:
    """{tag: (vr, value)} of write_bytes' object."""
    from test_dicom_writer import elements

    return elements(write_bytes(name, fmt, frame_context, frames, settings, worklist))


def variants(name: str) -> Objects:
    """Objects of `name` in every format: nothing optional known, everything known, an aspect ratio
    without spacing, a known unpaired body part, a worklist item selected, and for multi-frame
    IODs arrival times instead of a frame time, each with one and two frames."""
    req = REQUIRED[name]
    no_timing = {k: v for k, v in req.items() if k != "frame_time_ms"}
    cases = [(SETTINGS_NONE, req, None), (SETTINGS_FULL, {**FULL, **req, **FULL}, None),
             (SETTINGS_NONE, {**req, "pixel_aspect_ratio": "4\\3"}, None),
             (SETTINGS_NONE, {**req, "body_part": "CHEST", "laterality": "U"}, None),
             (SETTINGS_NONE, req, [mwl_identifier()])]
    if iods.IODS[name]["multi_frame"]:
        cases.append((SETTINGS_NONE, no_timing, None))
    out = []
    for fmt in iods.IODS[name]["formats"]:
        for settings, frame_context, worklist in cases:
            for frames in (1, 2):
                out.append(write_object(name, fmt, frame_context, frames, settings, worklist))
    return out


def module_tables(tables: dict[str, list[Row]]) -> dict[tuple[str, tuple[str, ...]], list[Row]]:
    out = {}
    for marker, rows in tables.items():
        match = MODULE.match(marker)
        if match:
            names = tuple(iods.IODS) if match.group(2) == "all" else tuple(match.group(2).split())
            assert set(names) <= set(iods.IODS), marker
            out[(match.group(1), names)] = rows
    return out


def presence_for(cell: str, name: str) -> str:
    """The Presence of Value term for IOD `name` from a cell like "ALWAYS for mf-rgb dx; ANAP"."""
    default = None
    for clause in cell.split(";"):
        term, _, which = clause.strip().partition(" for ")
        assert term in TERMS, cell
        if which and name in which.split():
            return term
        if not which:
            default = term
    assert default, f"{cell!r} gives no presence for {name}"
    return default


def classify(objects: Objects, tag: int) -> str | None:
    present = [tag in o for o in objects]
    empty = [tag in o and (not o[tag][1] or (o[tag][0] in TEXT_VRS and not o[tag][1].strip(b" \x00")))
             for o in objects]
    if all(present):
        return "EMPTY" if all(empty) else ("VNAP" if any(empty) else "ALWAYS")
    return "ANAP" if any(present) else None


def _line_sources(name: str) -> dict[int, str]:
    """Tag -> its attrs table source for IOD `name`: "'" (a constant), "@" (computed) or the
    context key the line reads."""
    out = {}
    for table in [attrs._COMMON] + [attrs._TABLES[t] for t in iods.IODS[name]["tables"].split()]:
        for line in table.split("\n"):
            src = line[12:]
            out[int(line[:8], 16)] = src[0] if src[0] in "'@" else src.lstrip("?!").partition("=")[0]
    return out


def documented(tables: dict[str, list[Row]], name: str) -> list[tuple[str, Row]]:
    return [(module, r) for (module, names), rows in module_tables(tables).items() if name in names
            for r in rows]


def _tag(text: str) -> int:
    match = TAG.match(text)
    assert match, f"tag {text!r} is not (GGGG,EEEE)"
    return int(match.group(1) + match.group(2), 16)


@pytest.fixture(scope="module")
def written() -> dict[str, Objects]:
    return {name: variants(name) for name in iods.IODS}


def test_every_iod_has_its_modules_listed(tables: dict[str, list[Row]]) -> None:
    listed = {r["IOD"]: {m.strip() for k, v in r.items() if k != "IOD" for m in v.split(",")}
              for r in tables["iod-modules"]}
    assert set(listed) == set(iods.IODS)
    for name in iods.IODS:
        modules = {module.split(":")[0] for module, _ in documented(tables, name)}
        assert modules <= listed[name], f"{name}: module tables {sorted(modules - listed[name])} not listed"


@pytest.mark.parametrize("name", list(iods.IODS))
def test_module_tables_list_every_element_the_device_writes(
        tables: dict[str, list[Row]], written: dict[str, Objects], name: str) -> None:
    rows = documented(tables, name)
    tags = [_tag(r["Tag"]) for _, r in rows]
    assert len(set(tags)) == len(tags), f"a tag is listed twice for {name}"
    objects = written[name]
    seen: dict[int, set[str]] = {}
    for o in objects:
        for tag, (element_vr, _) in o.items():
            seen.setdefault(tag, set()).add(element_vr.decode())
    missing = sorted(f"{t:08X}" for t in set(seen) - set(tags))
    extra = sorted(f"{t:08X}" for t in set(tags) - set(seen))
    assert not missing and not extra, f"{name}: not documented {missing}, never written {extra}"
    for _, r in rows:
        tag = _tag(r["Tag"])
        assert seen[tag] <= set(r["VR"].split(" or ")), f"{name} {r['Tag']}: VR {seen[tag]} written"


@pytest.mark.parametrize("name", list(iods.IODS))
def test_presence_source_and_constants_match_the_device(
        tables: dict[str, list[Row]], written: dict[str, Objects], name: str) -> None:
    objects = written[name]
    lines = _line_sources(name)
    for module, r in documented(tables, name):
        tag = _tag(r["Tag"])
        want = presence_for(r["Presence of Value"], name)
        got = classify(objects, tag)
        assert got == want, f"{name} {module} {r['Tag']}: {got}, not {want}"
        sources = set(r["Source"].split(", "))
        assert sources and sources <= SOURCES, r["Source"]
        kind = lines.get(tag)
        if kind == "'":
            assert "AUTO" in sources, f"{r['Tag']}: a constant is AUTO"
        elif kind in contexts.HEADER_CONTEXT_KEYS:
            assert "USER" in sources, f"{r['Tag']}: the frame context gives it (USER)"
        constant = CONSTANT.match(r["Value"])
        if constant:
            for o in objects:
                assert o[tag][1].rstrip(b" \x00").decode() == constant.group(1), f"{name} {r['Tag']} value"


def test_implementation_uid_is_a_valid_uid() -> None:
    assert uids.valid(part10.IMPLEMENTATION_CLASS_UID)
    assert len(part10.IMPLEMENTATION_VERSION_NAME) <= 16


# ---- the Modality Worklist SCU --------------------------------------------------------------


def test_worklist_contexts_are_the_find_proposal(tables: dict[str, list[Row]]) -> None:
    rows = [(int(r["ID"]), r["Abstract Syntax UID"], (r["Transfer Syntax UID"],))
            for r in tables["mwl-contexts"]]
    assert rows == list(find.CONTEXTS)
    for r in tables["mwl-contexts"]:
        assert r["Abstract Syntax"] == UID(r["Abstract Syntax UID"]).name
        assert (r["Role"], r["Extended negotiation"]) == ("SCU", "None")


def test_worklist_keys_are_the_query_identifier(tables: dict[str, list[Row]]) -> None:
    from pydicom.datadict import dictionary_description, dictionary_VR

    rows = tables["mwl-keys"]
    assert [(_tag(r["Tag"]), r["VR"], int(r["Level"])) for r in rows] == [
        (tag, field_vr, level) for _, tag, field_vr, level in mwl.FIELDS]
    matching = {0x00080060: "worklist_modality", 0x00400001: "worklist_station_aet",
                0x00400002: "worklist_date"}
    # What the identifier says for each key: a value only in the three matching keys.
    keys = mwl.query_keys("STATION", "OT", "20260705")
    step = {t: v for t, _, v in [e for e in keys if e[0] == mwl.SPS_SEQUENCE][0][2][0]}
    top = {t: v for t, _, v in keys}
    for r in rows:
        tag = _tag(r["Tag"])
        assert r["Attribute Name"] == dictionary_description(tag) and r["VR"] == dictionary_VR(tag), r
        asked = (step if r["Level"] == "1" else top)[tag]
        if tag in matching:
            assert r["Matching"] != "return" and asked, r
            assert config.entry(matching[tag])
        else:
            assert r["Matching"] == "return" and asked in ("", []), r


def test_worklist_status_table_is_the_classification(tables: dict[str, list[Row]]) -> None:
    rows = {r["Status"]: r for r in tables["mwl-status"]}
    for mask, value, _transient, meaning in find.FAILURES:
        code = "xxxx" if mask == 0 else f"{value:04X}" if mask == 0xFFFF else f"{value >> 12:X}xxx"
        assert code in rows, f"{code} ({meaning}) not in the statement"
        assert rows[code]["Meaning"] == meaning, code
        assert "failed refresh" in rows[code]["Behaviour"], code
    assert "FF00, FF01" in rows and "0000" in rows


def test_worklist_character_sets_as_documented(tables: dict[str, list[Row]]) -> None:
    samples = {"ISO_IR 100": "Müller".encode("latin-1"), "ISO_IR 192": "Müller".encode(),
               "ISO 2022 IR 100": b"M\x1b-A\xfcller", "ISO 2022 IR 6": b"Muller", "ISO_IR 6": b"Muller"}
    for r in tables["charsets"]:
        names = [n.strip() for n in r["Specific Character Set"].split(",")]
        if r["Decoded"].startswith("Yes"):
            for name in names:
                term = "" if name == "(absent)" else name
                text, exact = charset.decode(samples.get(term, b"Muller"), [term] if term else [])
                assert exact and text in ("Müller", "Muller"), (name, text)
        else:
            for name in names[:-1]:  # the last names "..."
                text, exact = charset.decode(b"M\x1b$B\x30\x21ller", [name])
                assert not exact and "\\x" in text, (name, text)


def _flat(value: object) -> object:
    if isinstance(value, pydicom.Sequence):
        return [{e.tag: _flat(e.value) for e in item} for item in value]
    return str(value)


def test_the_source_mwl_mapping_is_what_an_object_carries(tables: dict[str, list[Row]]) -> None:
    """An object made with a selected worklist item carries each worklist value where the
    statement says (pydicom reads both sides)."""
    identifier = mwl_identifier()
    match = pydicom.dcmread(pydicom.filebase.DicomBytesIO(identifier), force=True)
    step = match.ScheduledProcedureStepSequence[0]
    obj = pydicom.dcmread(io.BytesIO(write_bytes("sc", "GRAY8", {}, worklist=[identifier])))
    request = obj.RequestAttributesSequence
    assert len(request) == 1
    prefix = "Request Attributes Sequence > "
    documented = set()
    for r in tables["mwl-mapping"]:
        source_tag, target_tag = _tag(r["Worklist tag"]), _tag(r["Object tag"])
        source = step if source_tag in step else match
        assert r["Worklist attribute"] == source[source_tag].name, r
        holder = request[0] if r["Object attribute"].startswith(prefix) else obj
        assert r["Object attribute"].removeprefix(prefix) == holder[target_tag].name, r
        assert _flat(holder[target_tag].value) == _flat(source[source_tag].value), r
        documented.add((holder is obj, target_tag))
        if holder is not obj:
            documented.add((True, 0x00400275))  # the sequence itself
    # Every element of the request item and every element the item added to the object is listed.
    assert {(False, e.tag) for e in request[0]} <= documented
    plain = pydicom.dcmread(io.BytesIO(write_bytes("sc", "GRAY8", {})))
    own = {0x00080012, 0x00080013, 0x00080018, 0x00080020, 0x00080023, 0x00080030, 0x00080033,
           0x0020000E}  # the object's clock, its own UIDs
    added = {e.tag for e in obj if e.tag not in own and (e.tag not in plain or plain[e.tag].value != e.value)}
    assert {(True, t) for t in added} <= documented, sorted(f"{t:08X}" for t in added)
