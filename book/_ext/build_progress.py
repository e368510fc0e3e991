"""Say what a book build will do and how far it got: a plan before the pages execute, one line per page.

Executing a chapter trains its models, so a cold ``cpu`` build takes most of an hour, and Sphinx
alone prints only "reading sources" for minutes at a time. This extension prints

* before reading: every page Sphinx will read, whether its outputs come from the execution cache
  (``execute_notebooks: cache``, :mod:`book.build` invalidates it when genlib changes) or it
  runs, and how long it took when last measured in this profile (``book/page_times.json``);
* after each page: its time and the running total.

In a ``ci`` build it puts a note at the top of every chapter: its models are untrained toys.

It also makes Sphinx re-read the pages listed in ``genlib_always_read`` (the conclusion, whose
tables gather the other chapters' verdicts, so it cannot be served from the cache: its own
code does not change when theirs do; its front matter sets ``execution_mode: force`` as well).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sphinx.util import logging

from genlib.config import profile

logger = logging.getLogger(__name__)
TIMES = Path(__file__).resolve().parents[1] / "page_times.json"


def measured(profile_name: str, path: Path = TIMES) -> tuple[dict[str, float], str]:
    """``({page stem: seconds}, provenance)`` measured for ``profile_name``, empty when unmeasured."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, ""
    entry = data.get(profile_name) or {}
    return {k: float(v) for k, v in (entry.get("seconds") or {}).items()}, entry.get("measured", "")


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def plan_lines(docnames: list[str], cached: set[str], times: dict[str, float], provenance: str,
               profile_name: str) -> list[str]:
    """The plan, one line per page to read plus a total (pure: tested without Sphinx)."""
    pages = [d for d in docnames if d.startswith("chapters/")]
    lines = [f"genlib book build, profile {profile_name}: {len(pages)} page(s) to execute or read from the cache"]
    total, unknown = 0.0, 0
    for d in pages:
        stem = d.rsplit("/", 1)[1]
        if d in cached:
            lines.append(f"  {stem:<26} outputs from the execution cache")
            continue
        t = times.get(stem)
        if t is None:
            unknown += 1
            lines.append(f"  {stem:<26} runs (no measured time in this profile)")
        else:
            total += t
            lines.append(f"  {stem:<26} runs, about {minutes(t)}")
    run = sum(1 for d in pages if d not in cached)
    tail = f" plus {unknown} unmeasured" if unknown else ""
    lines.append(f"  {run} page(s) run: about {minutes(total)}{tail}"
                 + (f" (times measured {provenance})" if provenance and run else ""))
    return lines


def _cached_docnames(app, docnames: list[str]) -> set[str]:
    """The pages whose code jupyter-cache already holds outputs for (they will not run)."""
    if app.config.nb_execution_mode != "cache":
        return set()
    try:
        import jupytext
        from jupyter_cache import get_cache
    except ImportError:
        return set()
    path = app.config.nb_execution_cache_path or str(Path(app.outdir).parent / ".jupyter_cache")
    if not Path(path).exists():
        return set()
    cache = get_cache(path)
    out = set()
    for d in docnames:
        md = Path(app.srcdir) / f"{d}.md"
        if not md.exists() or d in app.config.genlib_always_read:
            continue
        try:
            cache.match_cache_notebook(jupytext.read(md))
            out.add(d)
        except KeyError:
            pass
    return out


def _before_read(app, env, docnames):
    name = profile()
    times, provenance = measured(name)
    cached = _cached_docnames(app, list(docnames))
    total = sum(1 for d in docnames if d.startswith("chapters/"))
    app._genlib_progress = {"start": time.perf_counter(), "done": 0, "total": total, "page": {}}
    for line in plan_lines(list(docnames), cached, times, provenance, name):
        logger.info(line)


def _source_read(app, docname, source):
    state = getattr(app, "_genlib_progress", None)
    if state is not None and docname.startswith("chapters/"):
        state["page"][docname] = time.perf_counter()


def _doctree_read(app, doctree):
    state = getattr(app, "_genlib_progress", None)
    docname = app.env.docname
    if state is None or docname not in state["page"]:
        return
    state["done"] += 1
    now = time.perf_counter()
    logger.info(f"[{state['done']}/{state['total']}] {docname}: {minutes(now - state['page'][docname])} "
                f"(build so far {minutes(now - state['start'])})")


CI_NOTE = ('<div class="admonition warning genlib-ci-note"><p class="admonition-title">Built in the ci profile</p>'
           '<p>This page ran in the <code>ci</code> profile, which only proves that its code runs: its models '
           'trained for seconds, so its numbers and pictures come from untrained toys and it gives no verdicts. '
           'For the real models build the book with <code>GENLIB_PROFILE=cpu make book</code> (a few minutes '
           'per page on a laptop) or on a GPU (<code>gpu</code>, the default there).</p></div>\n')


def _ci_note(app, pagename, templatename, context, doctree):
    """In a ``ci`` build every chapter says, at its top, that its models are toys."""
    if pagename.startswith("chapters/") and "body" in context and profile() == "ci":
        context["body"] = CI_NOTE + context["body"]


def _always_outdated(app, env, added, changed, removed):
    return [d for d in app.config.genlib_always_read if d in env.found_docs and d not in added | changed]


def _partial_links(app, cfg):
    """A partial build (``make book PAGES=...``) leaves most pages out, so links to them cannot
    resolve: they render as plain text there instead of failing the ``-W`` build. The full build
    keeps the check."""
    if os.environ.get("GENLIB_PARTIAL_BUILD") == "1":
        cfg.suppress_warnings = [*cfg.suppress_warnings, "ref.doc"]


def setup(app):
    app.add_config_value("genlib_always_read", ["chapters/15_conclusion"], "env")
    app.connect("config-inited", _partial_links)
    app.connect("env-get-outdated", _always_outdated)
    app.connect("env-before-read-docs", _before_read)
    app.connect("source-read", _source_read)
    app.connect("doctree-read", _doctree_read)
    app.connect("html-page-context", _ci_note)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
