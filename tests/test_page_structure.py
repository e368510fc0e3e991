"""Every chapter page reads as part of one book: it opens with a map, closes with a recap, and
names other pages by link.

Pure text parsing of ``chapters/*.md`` and ``book/intro.md`` (no torch, no execution):

* the map is a MyST admonition titled "On this page", after the page's title and intro and before
  its first code cell and first section, linking the pages it needs;
* the recap is a section "## What you can now do" just before "## Exercises" (or last), with 3-6
  bullet points and a link to where the idea goes next;
* markdown text never mentions "chapter 08" or "Appendix D" as plain text: such mentions are
  ``{doc}`` links (code cells and their outputs are left alone);
* every ``{doc}`` target exists, is in the table of contents, and is the page its text names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
PAGES = CHAPTERS + [ROOT / "book" / "intro.md"]

MAP_OPEN = ":::{admonition} On this page"
RECAP = "## What you can now do"
EXERCISES = "## Exercises"

ROLE = re.compile(r"\{(doc|ref|numref)\}`([^`]*)`")
MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
# "chapter 08", "Chapters 08", "appendix D", "Appendix B's": a page named in words
MENTION = re.compile(r"\b(?:chapters?|appendix|appendices)\s+(?:\d{1,2}|[A-E])\b", re.I)
# "chapters {doc}`08 <...>` and 09": a list whose later members were left unlinked
PLURAL_TAIL = re.compile(r"\u27e6plural\u27e7(?:\s*(?:,|and|or|to|-|\u2013)\s*\u27e6link\u27e7)*"
                         r"\s*(?:,|and|or|to|-|\u2013)\s*(?:\d{1,2}|[A-E])\b")


def markdown_lines(text: str) -> list[str]:
    """The page's lines with its front matter and every fenced block (code cells above all)
    blanked, so line numbers stay those of the file."""
    lines = text.split("\n")
    out = list(lines)
    start = 0
    if lines and lines[0].strip() == "---":
        end = lines.index("---", 1)
        out[: end + 1] = [""] * (end + 1)
        start = end + 1
    fence = None
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if fence is None:
            m = re.match(r"^(`{3,}|~{3,})", s)
            if m:
                fence = m.group(1)
                out[i] = ""
        else:
            out[i] = ""
            if s == fence:
                fence = None
    return out


def markdown_text(text: str) -> str:
    return "\n".join(markdown_lines(text))


def code_cell_starts(text: str) -> list[int]:
    return [i for i, line in enumerate(text.split("\n")) if line.startswith("```{code-cell}")]


def plain_mentions(text: str) -> list[str]:
    """Mentions of a chapter or appendix by number or letter that are not inside a link (in
    markdown text only: code cells, inline code and link targets do not count)."""
    md = markdown_text(text)

    def placeholder(m: re.Match) -> str:
        shown = m.group(2).split("<")[0].strip().lower()
        return "\u27e6plural\u27e7" if shown.startswith(("chapters ", "appendices ")) else "\u27e6link\u27e7"

    md = ROLE.sub(placeholder, md)
    md = MD_LINK.sub("\u27e6link\u27e7", md)
    md = INLINE_CODE.sub("", md)
    found = []
    for pattern in (MENTION, PLURAL_TAIL):
        for m in pattern.finditer(md):
            line = md.count("\n", 0, m.start()) + 1
            found.append(f"line {line}: {' '.join(m.group(0).split())!r}")
    return found


def doc_links(text: str) -> list[tuple[str, str]]:
    """(shown text, target) of every {doc} role in the markdown text."""
    links = []
    for m in ROLE.finditer(markdown_text(text)):
        if m.group(1) != "doc":
            continue
        body = " ".join(m.group(2).split())
        hit = re.fullmatch(r"(.*?)\s*<([^<>]+)>", body)
        links.append((hit.group(1), hit.group(2)) if hit else ("", body))
    return links


def toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = {toc["root"]}
    for part in toc.get("parts", []):
        files |= {c["file"] for c in part.get("chapters", [])}
    return files


def resolve(page: Path, target: str) -> str:
    """A {doc} target as a path relative to the book's root, without suffix."""
    if target.startswith("/"):
        path = (ROOT / target.lstrip("/")).resolve()
    else:
        path = (page.parent / target).resolve()
    rel = path.relative_to(ROOT).as_posix()
    return rel[:-3] if rel.endswith(".md") else rel


def named_page(shown: str) -> str | None:
    """The file prefix a link's text names: "chapter 08" -> "08_", "Appendix D" -> "appD_",
    "09" (the second of "chapters 08 and 09") -> "09_"; None for other text."""
    m = re.fullmatch(r"(?:(?:chapters?|appendix|appendices)\s+)?(\d{1,2}|[A-E])", shown.strip(), re.I)
    if not m:
        return None
    key = m.group(1)
    return f"{int(key):02d}_" if key.isdigit() else f"app{key.upper()}_"


def map_problems(text: str) -> list[str]:
    """Why the page's opening map is missing or misplaced (empty when it is right)."""
    lines = text.split("\n")
    md = markdown_lines(text)
    opens = [i for i, line in enumerate(md) if line.strip() == MAP_OPEN]
    if len(opens) != 1:
        return [f"{len(opens)} '{MAP_OPEN}' blocks, want exactly 1"]
    start = opens[0]
    problems = []
    titles = [i for i, line in enumerate(md) if line.startswith("# ")]
    if not titles or titles[0] > start:
        problems.append("the map comes before the page's title")
    elif not any(line.strip() for line in md[titles[0] + 1:start]):
        problems.append("no intro paragraph between the title and the map")
    sections = [i for i, line in enumerate(md) if line.startswith("## ")]
    cells = code_cell_starts(text)
    if (sections and sections[0] < start) or (cells and cells[0] < start):
        problems.append("the map comes after the first section or code cell: it belongs right after the intro")
    closes = [i for i in range(start + 1, len(md)) if md[i].strip() == ":::"]
    if not closes:
        return problems + ["the map is never closed with ':::'"]
    body = "\n".join(lines[start + 1:closes[0]])
    if "**Builds:**" not in body or "**Needs:**" not in body:
        problems.append("the map says neither what the page builds nor what it needs")
    if not ROLE.search(body):
        problems.append("the map links no other page")
    return problems


def recap_problems(text: str) -> list[str]:
    """Why the page's closing recap is missing, misplaced or malformed (empty when it is right)."""
    md = markdown_lines(text)
    at = [i for i, line in enumerate(md) if line.rstrip() == RECAP]
    if len(at) != 1:
        return [f"{len(at)} '{RECAP}' sections, want exactly 1"]
    start = at[0]
    later = [i for i in range(start + 1, len(md)) if md[i].startswith("## ")]
    exercises = [i for i, line in enumerate(md) if line.rstrip() == EXERCISES]
    problems = []
    if exercises:
        if not later or md[later[0]].rstrip() != EXERCISES:
            problems.append(f"the recap must be the section just before '{EXERCISES}'")
    elif later:
        problems.append("without exercises, the recap must be the page's last section")
    body = md[start + 1:later[0] if later else len(md)]
    bullets = [line for line in body if line.startswith("- ")]
    if not 3 <= len(bullets) <= 6:
        problems.append(f"the recap has {len(bullets)} bullet points, want 3 to 6")
    if not ROLE.search("\n".join(body)):
        problems.append("the recap links no page where the idea goes next")
    return problems


def link_problems(page: Path, text: str) -> list[str]:
    """Every {doc} link of ``text`` (read as if it were ``page``) that reaches no page of the book,
    or another page than its text names."""
    toc = toc_files()
    bad = []
    for shown, target in doc_links(text):
        try:
            where = resolve(page, target)
        except ValueError:
            bad.append(f"{target!r} leaves the book")
            continue
        if not (ROOT / (where + ".md")).exists():
            bad.append(f"{target!r}: no {where}.md")
        elif where not in toc:
            bad.append(f"{target!r}: {where} is not in _toc.yml")
        prefix = named_page(shown)
        if prefix and not where.rsplit("/", 1)[-1].startswith(prefix):
            bad.append(f"{shown!r} links to {where}")
    return bad


# ---------------------------------------------------------------------------------------------
# The book's pages


def test_there_are_pages():
    assert len(CHAPTERS) >= 19, [p.name for p in CHAPTERS]


@pytest.mark.parametrize("part", [map_problems, recap_problems], ids=["opening map", "closing recap"])
@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_its_opening_map_and_closing_recap(page, part):
    problems = part(page.read_text(encoding="utf-8"))
    assert not problems, f"{page.name}: {problems}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_other_pages_are_named_by_link(page):
    found = plain_mentions(page.read_text(encoding="utf-8"))
    assert not found, f"{page.name}: write these as {{doc}} links: {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_doc_link_reaches_the_page_it_names(page):
    bad = link_problems(page, page.read_text(encoding="utf-8"))
    assert not bad, f"{page.name}: {bad}"


# ---------------------------------------------------------------------------------------------
# The checks themselves can fail


PAGE = """---
jupytext:
  text_representation: {extension: .md}
---

# 07 A page

It builds one thing.

:::{admonition} On this page
:class: note

**Builds:** one thing.

**Needs:** {doc}`chapter 02 <02_generative_models>`.
:::

```{code-cell} ipython3
# chapter 05's model, in a comment: code is not prose
print("see chapter 03")
```

## A section

Text that names {doc}`chapter 08 <08_latent_diffusion>`, and `chapter 09` in inline code.

## What you can now do

- One.
- Two.
- Three.

**Where the idea goes next.** {doc}`Chapter 08 <08_latent_diffusion>`.

## Exercises

1. Try it.
"""


MAP_BLOCK = PAGE[PAGE.index(MAP_OPEN):PAGE.index(":::\n\n```") + 5]


def test_a_well_formed_page_passes():
    assert map_problems(PAGE) == []
    assert recap_problems(PAGE) == []
    assert plain_mentions(PAGE) == []
    assert doc_links(PAGE)[0] == ("chapter 02", "02_generative_models")


@pytest.mark.parametrize("broken, why", [
    (PAGE.replace(":::{admonition} On this page", ":::{admonition} Map"), "0 ':::{admonition} On this page' blocks"),
    (PAGE.replace("**Needs:** {doc}`chapter 02 <02_generative_models>`.", "**Needs:** nothing."), "links no other page"),
    (PAGE.replace("It builds one thing.\n\n:::{admonition}", ":::{admonition}"), "no intro paragraph"),
    (PAGE.replace(MAP_BLOCK, "").replace("## A section\n", "## A section\n\n" + MAP_BLOCK),
     "after the first section or code cell"),
])
def test_a_missing_or_misplaced_map_fails(broken, why):
    assert any(why in p for p in map_problems(broken)), map_problems(broken)


@pytest.mark.parametrize("broken, why", [
    (PAGE.replace(RECAP, "## Summary"), "0 '## What you can now do' sections"),
    (PAGE.replace("- Three.\n", ""), "2 bullet points"),
    (PAGE.replace("**Where the idea goes next.** {doc}`Chapter 08 <08_latent_diffusion>`.", "Nothing next."),
     "links no page"),
    (PAGE.replace("## Exercises", "## Notes\n\nA note.\n\n## Exercises"), "just before '## Exercises'"),
    (PAGE[:PAGE.index(RECAP)] + PAGE[PAGE.index(EXERCISES):] + "\n" + PAGE[PAGE.index(RECAP):PAGE.index(EXERCISES)],
     "just before '## Exercises'"),
    (PAGE.replace("\n## Exercises\n\n1. Try it.\n", "\n## Afterword\n\nMore.\n"), "the page's last section"),
])
def test_a_missing_or_misplaced_recap_fails(broken, why):
    assert any(why in p for p in recap_problems(broken)), recap_problems(broken)


@pytest.mark.parametrize("prose", [
    "As chapter 07 showed.",
    "See Chapter 11's prior.",
    "Appendix D derives it.",
    "the U-Net of chapters\n07-08",
    "{doc}`chapters 08 <08_latent_diffusion>` and 09 measure it",
    "{doc}`chapters 07 <07_ddpm>`-09 attend",
])
def test_a_plain_mention_fails(prose):
    assert plain_mentions(PAGE.replace("## A section\n", f"## A section\n\n{prose}\n")), prose


def test_a_broken_or_wrong_link_fails():
    page = ROOT / "chapters" / "07_ddpm.md"
    assert link_problems(page, PAGE) == []
    assert link_problems(ROOT / "book" / "intro.md", PAGE)  # the same targets, seen from book/
    for wrong in ("{doc}`chapter 02 <02_missing>`", "{doc}`chapter 02 <03_vae>`",
                  "{doc}`chapter 02 <../../02_generative_models>`", "{doc}`the readme <../README>`"):
        text = PAGE.replace("{doc}`chapter 02 <02_generative_models>`", wrong)
        assert link_problems(page, text), wrong


def test_links_that_name_the_wrong_page_are_caught():
    assert named_page("chapter 08") == "08_" and named_page("Appendix D") == "appD_"
    assert named_page("09") == "09_" and named_page("chapter 2") == "02_"
    assert named_page("the introduction") is None


MODEL_PAGES = [p for p in CHAPTERS if p.name[:2] in {f"{n:02d}" for n in range(3, 15)} or p.name.startswith("appC")]


def test_model_pages_are_listed():
    assert len(MODEL_PAGES) == 13, [p.name for p in MODEL_PAGES]


@pytest.mark.parametrize("page", MODEL_PAGES, ids=lambda p: p.name)
def test_every_model_page_draws_its_model_from_the_modules(page):
    """Each model chapter shows at least one diagram made by genlib.viz.architecture from the
    model it trains, beside the survey figure it corresponds to."""
    text = page.read_text(encoding="utf-8")
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, re.M | re.S)
    calls = [c for c in cells if re.search(r"\barchitecture\(", c) and "import" not in c]
    assert calls, f"{page.name}: no code cell draws an architecture diagram"
    assert re.search(r"survey's\s+Fig\.\s*\d+", text), f"{page.name}: no survey figure named"
