"""Reproduction records: a chapter's table as measured in one run, saved as small JSON.

A chapter run with ``GENLIB_RECORD=1`` writes each reproduction table to
``chapters/records/<chapter>--<name>--<profile>.json`` (profile, device name, date, versions,
rows). The book shows the committed ``gpu`` record beside the live numbers, so a reader on a
laptop still sees the full-size result, labelled with the card and the date that made it.

A record file is one JSON object (schema version :data:`SCHEMA`) with the keys in
:data:`REQUIRED`. Its chapter, name and profile must agree with its file name. JSON has no
NaN or infinity, so a non-finite number in a row is stored as the string ``"NaN"``,
``"Infinity"`` or ``"-Infinity"`` and read back as the float; those three strings are reserved
and cannot be saved as text cells. A blank cell (``None``) is ``null``, and stays ``None``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import warnings
from pathlib import Path

import torch

from . import config

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "chapters" / "records"
CHAPTERS = ROOT / "chapters"
_RECORD_CALL = re.compile(r"""records\.record\(\s*["']([^"']+)["']\s*,\s*["']([^"']+)["']""")

SCHEMA = 1
"""The version of the record format that :func:`record` writes and :func:`load` reads."""
REQUIRED = {"schema": int, "chapter": str, "name": str, "profile": str, "device": str, "date": str,
            "torch": str, "columns": list, "rows": list, "note": str}
"""Every key of a record, with the JSON type of its value."""
SWITCH = ("", "0", "1")
"""The values ``GENLIB_RECORD`` may take: unset, empty or ``0`` (off), ``1`` (on)."""
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class RecordError(ValueError):
    """A record file that cannot be read, or that is not a record of this schema; the message
    names the file."""


def _path(chapter: str, name: str, profile: str) -> Path:
    for part in (chapter, name):
        if not part or "/" in part or "--" in part:
            raise ValueError(f"record chapter and name must be non-empty, without '/' or '--', got {part!r}")
    return RECORDS / f"{chapter}--{name}--{profile}.json"


def device_name() -> str:
    dev = config.device()
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"


def recording() -> bool:
    """Whether chapters save their tables: ``GENLIB_RECORD=1``. Unset, empty or ``0`` is off;
    any other value is an error rather than a guess."""
    value = os.environ.get("GENLIB_RECORD", "").strip()
    if value not in SWITCH:
        raise ValueError(f"GENLIB_RECORD={value!r} is not a switch; expected one of "
                         f"{', '.join(repr(v) for v in SWITCH)} (unset, '' or '0' is off, '1' is on)")
    return value == "1"


def _encode_cell(value, path: Path, i: int, column: str):
    """One cell as JSON can hold it: a non-finite float as its reserved string."""
    where = f"record {path}: row {i}, column {column!r}"
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        if value in _NON_FINITE:
            raise ValueError(f"{where} holds the text {value!r}, which is reserved for the "
                             f"non-finite number {_NON_FINITE[value]}; pass the float, or other text")
        return value
    raise TypeError(f"{where} holds a {type(value).__module__}.{type(value).__qualname__}; expected "
                    f"None, bool, int, float or str (e.g. float(x) for a tensor or NumPy number)")


def record(chapter: str, name: str, columns: list[str], rows: list[list], note: str = "") -> Path | None:
    """Save a table when ``GENLIB_RECORD=1``; otherwise do nothing and return ``None``."""
    if not recording():
        return None
    if not all(isinstance(c, str) for c in columns):
        raise TypeError(f"record columns must be strings (the table's header), got {list(columns)!r}")
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"every row needs {len(columns)} values ({', '.join(columns)})")
    path = _path(chapter, name, config.profile())
    data = {
        "schema": SCHEMA,
        "chapter": chapter,
        "name": name,
        "profile": config.profile(),
        "device": device_name(),
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__,
        "columns": columns,
        "rows": [[_encode_cell(v, path, i, c) for v, c in zip(r, columns)] for i, r in enumerate(rows)],
        "note": note,
    }
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    config.write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _read(path: Path) -> dict:
    """The record in ``path``, checked against the schema and the file name; a
    :class:`RecordError` naming the file otherwise."""
    def refuse(why: str) -> RecordError:
        return RecordError(f"record {path}: {why}")

    def bare(token: str):
        raise refuse(f"holds a bare {token}, which is not JSON")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=bare)
    except RecordError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise refuse(f"cannot be read ({e})") from e
    except json.JSONDecodeError as e:
        raise refuse(f"is not valid JSON ({e}); a torn or hand-edited file?") from e
    if not isinstance(data, dict):
        raise refuse(f"holds a JSON {type(data).__name__}; expected a JSON object")
    if "schema" not in data:
        raise refuse(f"has no 'schema' field; expected 'schema': {SCHEMA} (a record from before "
                     f"versioning: add the field, or run its chapter again with GENLIB_RECORD=1)")
    if data["schema"] != SCHEMA or isinstance(data["schema"], bool):
        raise refuse(f"is schema {data['schema']!r}; expected {SCHEMA}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise refuse(f"lacks {', '.join(repr(k) for k in missing)}; a record has {', '.join(REQUIRED)}")
    for key, kind in REQUIRED.items():
        if not isinstance(data[key], kind):
            raise refuse(f"its {key!r} is a {type(data[key]).__name__}; expected a {kind.__name__}")
    if not all(isinstance(c, str) for c in data["columns"]):
        raise refuse(f"its 'columns' must be strings, got {data['columns']!r}")
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, list) or len(row) != len(data["columns"]):
            got = f"{len(row)} value(s)" if isinstance(row, list) else f"a {type(row).__name__}"
            raise refuse(f"row {i} has {got}; expected a list of {len(data['columns'])} "
                         f"({', '.join(data['columns'])})")
    parts = path.name.removesuffix(".json").split("--")
    if len(parts) != 3 or not all(parts):
        raise refuse("its file name is not <chapter>--<name>--<profile>.json")
    for key, from_name in zip(("chapter", "name", "profile"), parts):
        if data[key] != from_name:
            raise refuse(f"holds {key} {data[key]!r}, but its file name says {from_name!r}")
    data["rows"] = [[_NON_FINITE.get(v, v) if isinstance(v, str) else v for v in row] for row in data["rows"]]
    return data


def load(chapter: str, name: str, profile: str = "gpu") -> dict | None:
    """The committed record, or ``None`` when there is none yet. A file that is there but is not
    a valid record raises :class:`RecordError`."""
    path = _path(chapter, name, profile)
    return _read(path) if path.exists() else None


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
    """Every saved record of ``profile`` under ``chapters/records/``, sorted by chapter and name.
    A file that is not a valid record is skipped with a warning naming it, so one torn file
    does not hide the others."""
    out = []
    for path in sorted(RECORDS.glob(f"*--*--{profile}.json")) if RECORDS.exists() else []:
        try:
            out.append(_read(path))
        except RecordError as e:
            warnings.warn(f"skipping {e}", stacklevel=2)
    return sorted(out, key=lambda r: (r["chapter"], r["name"]))
