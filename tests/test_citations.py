"""Citations: every page of the book cites its sources, and the bibliography holds exactly what is cited.

Pure text parsing of ``_toc.yml``, ``_config.yml``, the pages' MyST text and ``book/references.bib``
(no Sphinx, no torch): a page's citations are the ``{cite:p}`` / ``{cite:t}`` (any ``{cite:...}``)
roles in its markdown, outside code cells and front matter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
REFERENCES = "book/references"  # the page that holds the bibliography

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
ENTRY = re.compile(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
NOT_ENTRIES = {"comment", "string", "preamble"}


def toc_files(toc: dict) -> list[str]:
    """Every file of a Jupyter Book table of contents, root first, in book order."""
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def markdown_text(text: str) -> str:
    """The page's markdown: the front matter and every ```{code-cell} block removed."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        lines = lines[end + 1:]
    kept, fence = [], None
    for line in lines:
        s = line.strip()
        if fence is None and s.startswith("```{code-cell}"):
            fence = s[: len(s) - len(s.lstrip("`"))]
        elif fence is not None:
            if s.startswith("`") and set(s) == {"`"} and len(s) >= len(fence):
                fence = None
        else:
            kept.append(line)
    return "\n".join(kept)


def cited_keys(text: str) -> list[str]:
    """The keys of every citation role in ``text`` (``{cite:p}`a,b``` gives ``a`` and ``b``)."""
    return [k.strip() for group in CITE.findall(text) for k in group.split(",") if k.strip()]


def bib_entries(text: str) -> dict[str, str]:
    """``{key: entry type}`` of a BibTeX file; a key defined twice raises ``ValueError``."""
    entries: dict[str, str] = {}
    for kind, key in ENTRY.findall(text):
        if kind.lower() in NOT_ENTRIES:
            continue
        if key in entries:
            raise ValueError(f"bib key {key!r} is defined twice")
        entries[key] = kind.lower()
    return entries


def bib_fields(text: str, key: str) -> set[str]:
    """The field names of one entry (the text from its ``@type{key,`` to the next entry)."""
    start = re.search(r"^@\w+\s*\{\s*" + re.escape(key) + r"\s*,", text, re.MULTILINE).end()
    following = ENTRY.search(text, start)
    body = text[start: following.start() if following else len(text)]
    return {f.lower() for f in re.findall(r"^\s*(\w+)\s*=", body, re.MULTILINE)}


def pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return toc_files(toc)


def page_text(page: str) -> str:
    return markdown_text((ROOT / f"{page}.md").read_text(encoding="utf-8"))


def all_citations() -> dict[str, list[str]]:
    return {p: cited_keys(page_text(p)) for p in pages()}


# --- the helpers themselves -------------------------------------------------------------------


def test_the_parsers_read_roles_entries_and_cells():
    text = ("---\nkernelspec: {}\n---\nSee {cite:p}`a2020,b2021` and {cite:t}`c2022`.\n"
            "```{code-cell} ipython3\nprint('{cite:p}`in_code`')\n```\nAfter {cite}`d2023`.\n")
    assert cited_keys(markdown_text(text)) == ["a2020", "b2021", "c2022", "d2023"]
    bib = "@comment{x,}\n@article{a2020,\n  title = {T},\n  year = {2020},\n}\n@misc{b2021, title={U}}\n"
    assert bib_entries(bib) == {"a2020": "article", "b2021": "misc"}
    assert bib_fields(bib, "a2020") == {"title", "year"}
    with pytest.raises(ValueError, match="defined twice"):
        bib_entries(bib + "@misc{a2020, title={V}}\n")
    toc = {"root": "r", "parts": [{"chapters": [{"file": "a", "sections": [{"file": "b"}]}, {"file": "c"}]}]}
    assert toc_files(toc) == ["r", "a", "b", "c"]


# --- the book ---------------------------------------------------------------------------------


def test_the_bibliography_is_configured_and_has_its_page():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert "book/references.bib" in config.get("bibtex_bibfiles", []), "_config.yml: bibtex_bibfiles"
    assert REFERENCES in pages(), f"{REFERENCES} is not in _toc.yml"
    text = page_text(REFERENCES)
    assert re.search(r"^(```|:::)\{bibliography\}", text, re.MULTILINE), f"{REFERENCES}.md has no bibliography"


@pytest.mark.parametrize("page", [p for p in pages() if p != REFERENCES])
def test_every_page_cites_its_sources(page):
    keys = cited_keys(page_text(page))
    assert keys, f"{page}.md cites nothing: cite the survey and the papers it rebuilds with {{cite:p}}"


def test_every_cited_key_is_in_the_bib():
    known = set(bib_entries(BIB.read_text(encoding="utf-8")))
    unknown = {f"{page}: {key}" for page, keys in all_citations().items() for key in keys if key not in known}
    assert not unknown, f"cited but not in {BIB.name}: {sorted(unknown)}"


def test_every_bib_entry_is_cited():
    cited = {key for keys in all_citations().values() for key in keys}
    unused = set(bib_entries(BIB.read_text(encoding="utf-8"))) - cited
    assert not unused, f"in {BIB.name} but cited by no page of _toc.yml: {sorted(unused)}"


def test_every_bib_entry_names_its_authors_title_year_and_venue():
    text = BIB.read_text(encoding="utf-8")
    venue = {"article": "journal", "inproceedings": "booktitle", "mastersthesis": "school",
             "techreport": "institution", "misc": "howpublished", "book": "publisher"}
    for key, kind in bib_entries(text).items():
        fields = bib_fields(text, key)
        missing = {"author", "title", "year", venue.get(kind, "title")} - fields
        assert not missing, f"{key} (@{kind}) lacks {sorted(missing)}"


def test_the_survey_is_cited():
    cited = {key for keys in all_citations().values() for key in keys}
    assert "domnenko2025survey" in bib_entries(BIB.read_text(encoding="utf-8")), "the survey's entry is missing"
    assert "domnenko2025survey" in cited, "no page cites the survey the book follows"
