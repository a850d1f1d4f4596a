"""Commissioning report: one self-contained HTML page (pass/fail list, device facts, received objects)
and a contact sheet PNG of the received images (pillow)."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image, ImageDraw

THUMB = 192
COLUMNS = 4
CAPTION = 28


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


def to_8bit(ds: pydicom.Dataset) -> Image.Image:
    """The first frame of `ds` as an 8-bit PIL image, windowed to its own min..max."""
    pixels = np.asarray(ds.pixel_array)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    if samples == 3:
        if str(getattr(ds, "PhotometricInterpretation", "")).startswith("YBR"):
            from pydicom.pixels.processing import convert_color_space

            pixels = convert_color_space(pixels, str(ds.PhotometricInterpretation), "RGB")
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 255.0 - scaled
    return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")


def contact_sheet(
    paths: Sequence[Path], out_png: Path, thumb: int = THUMB, columns: int = COLUMNS
) -> Path | None:
    """A grid of thumbnails with the tail of each SOP Instance UID; None when nothing decodes."""
    tiles: list[tuple[Image.Image, str]] = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            image = to_8bit(ds)
            label = str(ds.SOPInstanceUID)[-24:]
        except Exception as exc:  # an undecodable object still gets a tile saying why
            image = Image.new("RGB", (thumb, thumb), (80, 0, 0))
            label = f"unreadable: {exc}"[:40]
        scale = thumb / max(image.width, image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
        tiles.append((image, label))
    if not tiles:
        return None
    rows = (len(tiles) + columns - 1) // columns
    cols = min(columns, len(tiles))
    sheet = Image.new("RGB", (cols * thumb, rows * (thumb + CAPTION)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(tiles):
        x, y = (i % columns) * thumb, (i // columns) * (thumb + CAPTION)
        sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        draw.text((x + 4, y + thumb + 6), label, fill=(230, 230, 230))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


def received_rows(received: Sequence[Any]) -> list[dict[str, Any]]:
    """Report rows for the receiver's `Received` records."""
    return [
        {
            "time": r.when,
            "from": r.calling_aet,
            "sop instance uid": r.sop_instance_uid,
            "bytes": r.size,
            "valid": "yes" if r.ok else "NO: " + "; ".join(r.problems[:2]),
        }
        for r in received
    ]


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def write_report(
    path: Path,
    device: str,
    checks: Sequence[Check],
    facts: dict[str, Any],
    received: Sequence[dict[str, Any]] = (),
    sheet: Path | None = None,
) -> Path:
    passed = all(c.ok for c in checks)
    verdict = "PASS" if passed else "FAIL"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    check_rows = "".join(
        f'<tr class="{"ok" if c.ok else "bad"}"><td>{"PASS" if c.ok else "FAIL"}</td>'
        f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td></tr>"
        for c in checks
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>modgate commissioning {html.escape(device)} {verdict}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}tr.ok td:first-child{color:#070}"
        "tr.bad td:first-child{color:#b00;font-weight:bold}.verdict{font-size:2em}</style></head><body>",
        f"<h1>modgate commissioning report</h1><p class='verdict'>{verdict}</p>",
        f"<p>Device console {html.escape(device)}, checked {when}.</p>",
        "<h2>Checks</h2><table><tr><th>result</th><th>check</th><th>detail</th></tr>"
        + check_rows
        + "</table>",
        "<h2>Device</h2>" + _table(sorted(facts.items()), ("fact", "value")),
    ]
    if received:
        head = list(received[0].keys())
        parts.append(
            "<h2>Received objects</h2>" + _table([[r.get(h, "") for h in head] for r in received], head)
        )
    if sheet is not None:
        rel = sheet.relative_to(path.parent) if sheet.is_relative_to(path.parent) else sheet
        parts.append(f"<h2>Contact sheet</h2><img src='{html.escape(str(rel))}' alt='received images'>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path
