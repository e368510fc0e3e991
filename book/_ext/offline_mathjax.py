"""Serve MathJax from the built book itself, so formulas render with no network.

Sphinx loads MathJax from a CDN by default, which leaves raw TeX on a page read offline. The
PyPI package ``django-static-mathjax`` (no Django needed at build time) ships MathJax 3's files;
this extension copies the part a TeX-to-HTML page uses into ``_build/html/_static/mathjax`` and
points Sphinx's ``mathjax_path`` at it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PARTS = ("tex-chtml.js", "input/tex", "output/chtml", "ui", "a11y", "adaptors")


def _source() -> Path:
    import mathjax  # the package django-static-mathjax installs

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _config_inited(app, config):
    config.mathjax_path = "mathjax/tex-chtml.js"  # relative paths are taken from _static


def _copy(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    src, dest = _source(), Path(app.outdir) / "_static" / "mathjax"
    for part in PARTS:
        if not (src / part).exists():
            continue
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dest / part)


def setup(app):
    _source()  # fail the build early, with the import error, if the package is missing
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
