"""The chapters' text sources and their stored notebooks agree, and the book builds."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))


def _cells(path):
    import jupytext

    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_chapters():
    assert CHAPTERS, "no chapters/*.md found"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_paired_notebook_matches_text(md):
    nb = md.with_suffix(".ipynb")
    assert nb.exists(), f"{nb.name} is missing: run `make notebooks`"
    assert _cells(md) == _cells(nb), f"{md.name} and {nb.name} differ: edit the .md, then run `make notebooks`"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_stored_notebook_is_executed(md):
    import nbformat

    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), f"{md.name}: stored notebook has unexecuted cells"
    assert not any(o.output_type == "error" for c in code for o in c.outputs), f"{md.name}: stored notebook holds an error"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_stored_outputs_load_nothing_from_the_network(md):
    """The book reads offline: no stored output may make the browser fetch a page resource
    (a script, stylesheet, image or frame) from http(s)."""
    import re

    import nbformat

    remote = re.compile(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?https?://[^"'\s>]*""", re.I)
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    found = {m.group(0) for c in nb.cells if c.cell_type == "code" for o in c.outputs
             for v in o.get("data", {}).values() if isinstance(v, str) for m in remote.finditer(v)}
    assert not found, f"{md.name}: stored outputs load {sorted(found)}; re-run `make notebooks`"


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    """The README's book command, in the `ci` profile: every chapter executes, no warning."""
    env = dict(os.environ, GENLIB_STATIC="1")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend must turn figures into images
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "book" / "intro.html").exists()
    for md in CHAPTERS:
        page = html / "chapters" / (md.stem + ".html")
        assert page.exists(), f"{page} was not built"
        assert "<img" in page.read_text(), f"{page.name} has no figure"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax was not copied for offline reading"
    # offline reading: no built page loads a script, stylesheet, image or frame from the network
    import re

    remote = re.compile(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?https?://[^"'\s>]*""", re.I)
    loads = {f"{p.relative_to(html)}: {m.group(0)[:120]}" for p in html.rglob("*.html")
             for m in remote.finditer(p.read_text(encoding="utf-8"))}
    assert not loads, f"built pages load from the network: {sorted(loads)[:5]}"
    refs = (html / "book" / "references.html").read_text(encoding="utf-8")
    assert "Kingma and Welling, 2014" in refs, "the references page lists no author-year labels"
    solutions = sum("solution dropdown" in (html / "chapters" / (md.stem + ".html")).read_text() for md in CHAPTERS)
    assert solutions == len(CHAPTERS), f"{len(CHAPTERS) - solutions} pages show no hidden solution"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_ci_outputs_give_no_verdict(md):
    """The stored outputs come from the `ci` profile, whose models train for seconds: nothing they
    print may call a claim reproduced or not. Verdicts go through genlib.verdicts.verdict, which
    says "code path only" in ci."""
    import re

    import nbformat

    word = re.compile(r"\b(not reproduced|reproduced|inconclusive)\b", re.I)
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    printed = [line for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "stream" for line in o.text.splitlines()]
    bad = [line for line in printed if word.search(line) and not line.startswith("VERDICT (ci): code path only")]
    assert not bad, f"{md.name}: ci outputs print a verdict by hand: {bad[:3]}; use genlib.verdicts.verdict"


def _png_widths(md):
    """Pixel widths of every PNG a stored notebook shows: image outputs and images inside HTML
    outputs (the static explorers' frames)."""
    import base64
    import re
    import struct

    import nbformat

    inline = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            data = o.get("data", {})
            blobs = [data["image/png"]] if "image/png" in data else []
            html = data.get("text/html", "")
            blobs += inline.findall(html if isinstance(html, str) else "".join(html))
            for blob in blobs:
                head = base64.b64decode(blob[:64] + "=" * (-len(blob[:64]) % 4))
                yield i, struct.unpack(">II", head[16:24])[0]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_figures_keep_their_labels_legible(md):
    """The page shows a figure at most ``TEXT_WIDTH`` inches (at ``DPI``) wide and shrinks a
    wider one, labels and all. genlib's smallest label (``FONT_SMALL`` points) must stay at least
    7.5 px high once placed: no figure may be wider than about 970 px."""
    from genlib.viz import style

    column = style.TEXT_WIDTH * style.DPI
    smallest = style.FONT_SMALL * style.DPI / 72
    small = [(cell, width, round(smallest * min(1.0, column / width), 1)) for cell, width in _png_widths(md)
             if smallest * min(1.0, column / width) < 7.5]
    assert not small, f"{md.name}: (cell, width px, smallest label px once placed): {small}"


def test_no_figure_text_is_set_below_the_smallest_label_size():
    """Figure text in the chapters and in genlib is at least ``FONT_SMALL`` points (``fontsize=6``
    gave Appendix B's token labels 5 px once placed); the width test above relies on it."""
    import re

    from genlib.viz import style

    small = re.compile(r"fontsize\s*=\s*(\d+(?:\.\d+)?)\b")
    found = []
    for path in [*CHAPTERS, *sorted((ROOT / "genlib").rglob("*.py"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.name}:{n}: fontsize={m}" for m in small.findall(line) if float(m) < style.FONT_SMALL]
    assert not found, found


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_code_fits_the_page_column(md):
    """The book's code column shows about 88 characters; a longer line gets a scrollbar."""
    import jupytext

    nb = jupytext.read(md)
    long = [(i, n, len(line)) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for n, line in enumerate(c.source.splitlines(), 1) if len(line) > 88]
    assert not long, f"{md.name}: (cell, line, characters) over 88: {long[:8]}"
