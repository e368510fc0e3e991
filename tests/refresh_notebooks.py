"""Re-execute chapters in the `ci` profile, from a cold model cache, and store their outputs.

    python tests/refresh_notebooks.py                 # every chapters/*.md
    python tests/refresh_notebooks.py chapters/02_generative_models.md

Each MyST text chapter is executed top to bottom and written to its paired ``.ipynb`` (inputs
from the ``.md``, fresh outputs), which is what nbval re-checks in ``make test``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def refresh(md: Path) -> None:
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(md)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,md:myst"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(md.parent)}}).execute()
    jupytext.write(nb, md.with_suffix(".ipynb"), fmt="ipynb")
    print(f"{md.relative_to(ROOT)}: executed in {time.perf_counter() - start:.0f} s")


def main(args: list[str]) -> None:
    os.environ["GENLIB_PROFILE"] = "ci"
    os.environ["GENLIB_STATIC"] = "1"
    os.environ["GENLIB_CACHE"] = tempfile.mkdtemp(prefix="genlib-refresh-cache-")  # cold cache
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    paths = [Path(a).resolve() for a in args] or sorted((ROOT / "chapters").glob("*.md"))
    for md in paths:
        if md.suffix != ".md" or not md.exists():
            raise SystemExit(f"expected a chapter's MyST text file (chapters/NN_name.md), got {md}")
        refresh(md)


if __name__ == "__main__":
    main(sys.argv[1:])
