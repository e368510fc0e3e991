"""Small results tables, deterministic in both the forms nbval compares.

``table(rows, columns)`` returns a :class:`Table` that shows as an HTML table in Jupyter and in
the book (``text/html``) and as aligned text (``text/plain``, also its ``repr``/``str``). Numbers
are rounded to ``digits`` significant figures (:func:`genlib.viz.style.format_number`), so both
forms depend only on the values, never on dict order surprises or float noise past the shown
digits. No pandas needed.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Mapping, Sequence

from genlib.viz import style


def _is_number(v: Any) -> bool:
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Table:
    """A table of formatted cells. ``columns``: header names; ``cells``: rows of strings;
    ``rows``: the original values; ``numeric[j]``: column ``j`` holds only numbers (or blanks)
    and is right-aligned."""

    def __init__(self, rows: list[list[Any]], columns: list[str], *, digits: int = 3,
                 caption: str | None = None, formats: Mapping[str, Any] | None = None):
        self.rows = rows
        self.columns = columns
        self.caption = caption
        formats = dict(formats or {})
        unknown = sorted(set(formats) - set(columns))
        if unknown:
            raise ValueError(f"formats name {unknown}, which are not columns {columns}")
        fmts: list[Callable[[Any], str]] = []
        for name in columns:
            f = formats.get(name)
            if f is None:
                fmts.append(lambda v: style.format_number(v, digits))
            elif isinstance(f, str):
                fmts.append(lambda v, f=f: "-" if v is None else format(v, f))
            else:
                fmts.append(f)
        self.cells = [[fmts[j](v) for j, v in enumerate(row)] for row in rows]
        self.numeric = [all(row[j] is None or _is_number(row[j]) for row in rows) and
                        any(_is_number(row[j]) for row in rows) for j in range(len(columns))]

    def to_text(self) -> str:
        """Aligned plain text: header, a rule, one line per row; numbers right-aligned."""
        widths = [max([len(c)] + [len(r[j]) for r in self.cells])
                  for j, c in enumerate(self.columns)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if num else c.ljust(w)
                             for c, w, num in zip(cells, widths, self.numeric)).rstrip()

        out = [self.caption] if self.caption else []
        out += [line(self.columns), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in self.cells]
        return "\n".join(out)

    def to_html(self) -> str:
        """A plain ``<table class="genlib-table">`` (escaped text, no styles beyond alignment)."""
        def cell(tag: str, text: str, num: bool) -> str:
            align = "right" if num else "left"
            return f'<{tag} style="text-align: {align}">{html.escape(text)}</{tag}>'

        parts = ['<table class="genlib-table">']
        if self.caption:
            parts.append(f"<caption>{html.escape(self.caption)}</caption>")
        parts.append("<thead><tr>" + "".join(
            cell("th", c, n) for c, n in zip(self.columns, self.numeric)) + "</tr></thead>")
        parts.append("<tbody>")
        for r in self.cells:
            parts.append("<tr>" + "".join(cell("td", c, n) for c, n in zip(r, self.numeric))
                         + "</tr>")
        parts.append("</tbody>")
        parts.append("</table>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return self.to_text()

    __str__ = __repr__


def table(rows: Sequence[Any], columns: Sequence[str] | None = None, *, digits: int = 3,
          caption: str | None = None, formats: Mapping[str, Any] | None = None) -> Table:
    """A small results table that displays as HTML and prints as aligned text.

    Args:
        rows: a sequence of rows, each a sequence of cell values (with ``columns``) or a dict
            ``{column: value}`` (columns default to the keys of the first row, in order; a
            missing key is a blank cell).
        columns: the header names.
        digits: significant figures for floats; integers print exactly, ``None`` as ``-``.
        caption: a line above the table (e.g. "DDIM steps vs FID (profile=cpu, seed=0)").
        formats: per-column format, a format spec (``".1%"``) or a callable value -> str.
    """
    rows = list(rows)
    if rows and all(isinstance(r, Mapping) for r in rows):
        if columns is None:
            columns = list(rows[0].keys())
            for r in rows[1:]:
                columns += [k for k in r if k not in columns]
        extra = sorted({str(k) for r in rows for k in r} - {str(c) for c in columns})
        if extra:
            raise ValueError(f"rows have keys {extra} that are not columns {list(columns)}")
        values = [[r.get(c) for c in columns] for r in rows]
    else:
        if columns is None:
            raise ValueError("table needs columns=[...] when rows are sequences, not dicts")
        values = []
        for i, r in enumerate(rows):
            if isinstance(r, (str, bytes, Mapping)) or not hasattr(r, "__len__"):
                raise TypeError(f"row {i} must be a sequence of cells or a dict, got {r!r}")
            if len(r) != len(columns):
                raise ValueError(f"row {i} has {len(r)} cells for {len(columns)} columns")
            values.append(list(r))
    return Table(values, [str(c) for c in columns], digits=digits, caption=caption,
                 formats=formats)
