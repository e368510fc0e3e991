"""Reproduction records: a chapter's table as measured in one run, saved as small JSON.

A chapter run with ``GENLIB_RECORD=1`` writes each reproduction table to
``chapters/records/<chapter>--<name>--<profile>.json`` (profile, device name, date, versions,
rows). The book shows the committed ``gpu`` record beside the live numbers, so a reader on a
laptop still sees the full-size result, labelled with the card and the date that made it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path

import torch

from . import config

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "chapters" / "records"
CHAPTERS = ROOT / "chapters"
_RECORD_CALL = re.compile(r"""records\.record\(\s*["']([^"']+)["']\s*,\s*["']([^"']+)["']""")


def _path(chapter: str, name: str, profile: str) -> Path:
    for part in (chapter, name):
        if not part or "/" in part or "--" in part:
            raise ValueError(f"record chapter and name must be non-empty, without '/' or '--', got {part!r}")
    return RECORDS / f"{chapter}--{name}--{profile}.json"


def device_name() -> str:
    dev = config.device()
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"


def record(chapter: str, name: str, columns: list[str], rows: list[list], note: str = "") -> Path | None:
    """Save a table when ``GENLIB_RECORD=1``; otherwise do nothing and return ``None``."""
    if os.environ.get("GENLIB_RECORD", "") in ("", "0"):
        return None
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"every row needs {len(columns)} values ({', '.join(columns)})")
    path = _path(chapter, name, config.profile())
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "chapter": chapter,
        "name": name,
        "profile": config.profile(),
        "device": device_name(),
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__,
        "columns": columns,
        "rows": rows,
        "note": note,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load(chapter: str, name: str, profile: str = "gpu") -> dict | None:
    """The committed record, or ``None`` when there is none yet."""
    path = _path(chapter, name, profile)
    return json.loads(path.read_text()) if path.exists() else None


def show(chapter: str, name: str, profile: str = "gpu"):
    """The committed record as a table labelled with its card and date, or a line saying there is
    none yet. Chapters put it beside their live numbers."""
    from .viz import table  # viz stands apart; records only borrows its table

    rec = load(chapter, name, profile)
    if rec is None:
        print(f"no {profile} record of '{name}' is committed yet")
        return None
    note = f", {rec['note']}" if rec.get("note") else ""
    return table(rec["rows"], rec["columns"], caption=f"recorded on {rec['device']}, {rec['date']}, profile {profile}{note}")


def expected() -> list[tuple[str, str]]:
    """Every ``(chapter, name)`` a chapter of the book records, in chapter order: read from the
    ``records.record("<chapter>", "<name>", ...)`` calls in ``chapters/*.md``."""
    found: dict[tuple[str, str], None] = {}
    for md in sorted(CHAPTERS.glob("*.md")):
        for chapter, name in _RECORD_CALL.findall(md.read_text()):
            found[chapter, name] = None
    return list(found)


def available(profile: str = "gpu") -> list[dict]:
    """Every saved record of ``profile`` under ``chapters/records/``, sorted by chapter and name."""
    out = [json.loads(p.read_text()) for p in RECORDS.glob(f"*--*--{profile}.json")] if RECORDS.exists() else []
    return sorted(out, key=lambda r: (r["chapter"], r["name"]))
