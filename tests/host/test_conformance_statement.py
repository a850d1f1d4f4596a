"""docs/conformance-statement.md must say what the firmware does.

Every table of the statement preceded by `<!-- check: NAME -->` is parsed here and compared with
the firmware's own declarations: the SOP classes (modgate.dicom.iods), the transfer syntaxes and
presentation contexts (modgate.net.scu), the status classification (modgate.net.status), the
implementation identifiers (modgate.dicom.part10), the configuration defaults (modgate.config)
and the elements the encoder writes for every IOD (modgate.dicom.iods.attributes). When the code
changes, this test fails until the statement is updated.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from modgate import config
from modgate.dicom import iods, part10, pixels
from modgate.net import VERIFICATION, items, scu, status, storage_classes
from pydicom.uid import UID

STATEMENT = Path(__file__).resolve().parents[2] / "docs" / "conformance-statement.md"
MARKER = re.compile(r"^\s*<!--\s*check:\s*([^`]+?)\s*-->\s*$")
TAG = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")
CONSTANT = re.compile(r"^constant `([^`]*)`")

Row = dict[str, str]


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
    assert [r["SOP Class UID"] for r in others] == [VERIFICATION]
    for r in rows:
        assert (r["SCU"], r["SCP"]) == ("Yes", "No"), r
        if r["modgate name"] != "-":
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


def test_status_table_is_the_classification_table_in_order(tables: dict[str, list[Row]]) -> None:
    rows = tables["status"]
    assert [int(r["Order"]) for r in rows] == list(range(1, len(rows) + 1))
    documented = [(r["Status"], r["Class"]) for r in rows]
    assert documented == [(status_pattern(m, v), k) for m, v, k, _ in status.STATUS_CLASSES]


@pytest.mark.parametrize(
    "code, klass",
    [
        (0x0000, "success"),
        (0xB000, "warning"),
        (0xA701, "transient"),
        (0xA900, "permanent"),
        (0xC123, "permanent"),
        (0x0122, "permanent"),
        (0xFF01, "transient"),
        (0x1234, "transient"),
    ],
)
def test_documented_examples_classify_as_stated(tables: dict[str, list[Row]], code: int, klass: str) -> None:
    """The first documented row that matches a code names the class the firmware gives it."""
    for r in tables["status"]:
        digits = zip(r["Status"], (12, 8, 4, 0), strict=True)
        if all(p == "x" or int(p, 16) == (code >> s) & 0xF for p, s in digits):
            assert r["Class"] == klass == status.classify(code)[0]
            return
    pytest.fail(f"no documented row matches {code:04X}")


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


# ---- IOD contents -----------------------------------------------------------------------------

MINIMAL = {"study_instance_uid": "1.2.3", "series_instance_uid": "1.2.4", "patient_orientation": "A\\F"}
FULL = dict(
    MINIMAL,
    institution_name="General Hospital",
    station_name="CATH1",
    study_description="study",
    series_description="series",
    body_part="CHEST",
    referring_physician="WHO^DOC",
    accession_number="A1",
)


def generated(name: str, fmt: str, context: dict[str, str]) -> dict[int, tuple[str, object]]:
    lay = pixels.layout(fmt, 4, 2)
    out: dict[int, tuple[str, object]] = {}
    for tag, vr, value in iods.attributes(name, lay, dict(context), "1.2.5"):
        out[tag] = (vr, value)
    return out


def documented(tables: dict[str, list[Row]], name: str) -> list[Row]:
    own = [rows for marker, rows in tables.items() if marker.split()[0] == "iod" and name in marker.split()]
    assert len(own) == 1, f"IOD {name} needs exactly one table, found {len(own)}"
    return tables["iod-common"] + own[0]


def _tag(text: str) -> int:
    match = TAG.match(text)
    assert match, f"tag {text!r} is not (GGGG,EEEE)"
    return int(match.group(1) + match.group(2), 16)


def test_every_iod_has_a_table(tables: dict[str, list[Row]]) -> None:
    named = set()
    for marker in tables:
        if marker.startswith("iod "):
            named.update(marker.split()[1:])
    assert named == set(iods.IODS)


@pytest.mark.parametrize("name", list(iods.IODS))
def test_iod_table_lists_every_element_the_encoder_writes(tables: dict[str, list[Row]], name: str) -> None:
    rows = documented(tables, name)
    tags = [_tag(r["Tag"]) for r in rows]
    assert len(set(tags)) == len(tags), "a tag is listed twice for " + name
    has_colour = any(pixels.layout(f, 4, 2).samples_per_pixel == 3 for f in iods.IODS[name]["formats"])
    # A "colour" element of the common table is not written by an IOD that takes no colour format.
    doc_vrs = {
        _tag(r["Tag"]): set(r["VR"].split(" or ")) for r in rows if r["Presence"] != "colour" or has_colour
    }
    want: dict[int, set[str]] = {0x00080005: {"CS"}, 0x7FE00010: set()}
    for fmt in iods.IODS[name]["formats"]:
        lay = pixels.layout(fmt, 4, 2)
        want[0x7FE00010].add("OB" if lay.bits_allocated == 8 else "OW")
        for tag, (vr, _) in generated(name, fmt, FULL).items():
            want.setdefault(tag, set()).add(vr)
    if want[0x7FE00010] == {"OB"} or want[0x7FE00010] == {"OW"}:
        want[0x7FE00010] = {"OB", "OW"}  # the common table covers both sample sizes
    missing = sorted(f"{t:08X}" for t in set(want) - set(doc_vrs))
    extra = sorted(f"{t:08X}" for t in set(doc_vrs) - set(want))
    assert not missing and not extra, f"{name}: not documented {missing}, documented but not written {extra}"
    for tag, vrs in want.items():
        assert doc_vrs[tag] == vrs, f"{name} {tag:08X}: VR {doc_vrs[tag]} documented, {vrs} written"


@pytest.mark.parametrize("name", list(iods.IODS))
def test_iod_presence_and_constants_match_the_encoder(tables: dict[str, list[Row]], name: str) -> None:
    for fmt in iods.IODS[name]["formats"]:
        minimal = generated(name, fmt, MINIMAL)
        full = generated(name, fmt, FULL)
        colour = pixels.layout(fmt, 4, 2).samples_per_pixel == 3
        for r in documented(tables, name):
            tag, presence = _tag(r["Tag"]), r["Presence"]
            if tag in (0x00080005, 0x7FE00010):
                continue  # written by the writer, not the attribute tables
            if presence in ("always", "dropped at 1 frame"):
                assert tag in minimal, f"{name}/{fmt} {r['Tag']} documented '{presence}' but needs a value"
            elif presence == "if given":
                assert tag not in minimal and tag in full, f"{name}/{fmt} {r['Tag']} is not Type 3 here"
            elif presence == "colour":
                assert (tag in minimal) == colour, f"{name}/{fmt} {r['Tag']} presence"
            else:
                pytest.fail(f"{r['Tag']}: unknown presence {presence!r}")
            constant = CONSTANT.match(r["Value and source"])
            if constant and tag in minimal:
                assert str(minimal[tag][1]) == constant.group(1), f"{name}/{fmt} {r['Tag']} value"


def test_implementation_uid_is_a_valid_uid() -> None:
    from modgate.dicom import uids

    assert uids.valid(part10.IMPLEMENTATION_CLASS_UID)
    assert len(part10.IMPLEMENTATION_VERSION_NAME) <= 16
