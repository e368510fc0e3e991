"""Offer each chapter as the Jupyter notebook this build executed (``.ipynb``), not only its ``.md``.

The theme's download menu offers a page's source, which for these chapters is MyST text. MyST-NB
writes the notebook it executed (with this build's outputs, in this build's profile) to
``_build/jupyter_execute``; this extension copies those into the site (``_notebooks/``) and puts a
download link at the top of each chapter.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FOLDER = "_notebooks"


def _executed(app) -> Path:
    return Path(app.outdir).parent / "jupyter_execute"


def _link(app, pagename, templatename, context, doctree):
    if not pagename.startswith("chapters/") or "body" not in context or app.builder.format != "html":
        return
    stem = pagename.split("/", 1)[1]
    href = "../" + FOLDER + "/" + stem + ".ipynb"
    context["body"] = (f'<p class="genlib-notebook-download"><a href="{href}" download>Download this page '
                       f'as a Jupyter notebook (.ipynb), with this build\'s outputs</a></p>\n') + context["body"]


def _copy(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    src = _executed(app) / "chapters"
    if not src.is_dir():
        return
    dest = Path(app.outdir) / FOLDER
    dest.mkdir(parents=True, exist_ok=True)
    for nb in src.glob("*.ipynb"):
        shutil.copy2(nb, dest / nb.name)


def setup(app):
    app.connect("html-page-context", _link)
    app.connect("build-finished", _copy)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
