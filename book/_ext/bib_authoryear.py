"""The references page labels each work the way the pages cite it: "Ho et al., 2020".

sphinxcontrib-bibtex cites in the text with author-year references (``bibtex_reference_style:
author_year``), but its bibliography labels entries with a formatting style's label style, and
pybtex ships only numbers and alpha codes ("[HJA20]"). This extension registers
``genlib_authoryear``: pybtex's ``unsrt`` formatting, sorted by author, year and title, with
labels built from the authors' surnames ("A", "A and B", "A et al.") and the year; works of the
same label get a, b, ... in list order. Select it with ``bibtex_default_style: genlib_authoryear``.
"""

from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


def author_year_label(entry) -> str:
    """``"Kingma and Welling, 2014"`` / ``"Ho et al., 2020"`` for one pybtex entry."""
    people = [p for p in entry.persons.get("author", entry.persons.get("editor", []))]
    more = any(str(p) == "others" for p in people)
    people = [p for p in people if str(p) != "others"]
    if not people:
        names = entry.fields.get("organization", entry.key)
    elif len(people) == 1 and not more:
        names = _surname(people[0])
    elif len(people) == 2 and not more:
        names = f"{_surname(people[0])} and {_surname(people[1])}"
    else:
        names = f"{_surname(people[0])} et al."
    year = entry.fields.get("year", "")
    return f"{names}, {year}" if year else names


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [author_year_label(e) for e in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.formatting", "genlib_authoryear", AuthorYearStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
