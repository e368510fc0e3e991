"""JupyterLab: a chapter's .md opens as a notebook, and saving one after a run changes outputs only."""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_lab_opens_markdown_chapters_as_notebooks():
    """`make lab` installs these overrides: the Jupytext notebook is the default viewer of .md
    (and MyST) files, under the factory name the installed jupyterlab-jupytext registers."""
    overrides = json.loads((ROOT / "book" / "jupyterlab" / "overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    import sys

    ext = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext"
    if not ext.is_dir():
        pytest.skip("jupyterlab-jupytext is not installed in this environment")
    assert any('FACTORY="Jupytext Notebook"' in p.read_text(errors="ignore") for p in ext.rglob("*.js"))
    assert "overrides.json" in (ROOT / "Makefile").read_text()


def test_saving_a_chapter_after_a_run_changes_its_outputs_only(tmp_path):
    """What JupyterLab does on save, through Jupytext's contents manager and chapters/jupytext.toml:
    the kernel's own kernelspec and new outputs go in; the .md must not change at all, and the
    .ipynb only in its outputs."""
    jupytext = pytest.importorskip("jupytext")
    for name in ("jupytext.toml", "appB_attention.md", "appB_attention.ipynb"):
        shutil.copy(ROOT / "chapters" / name, tmp_path / name)
    md_before = (tmp_path / "appB_attention.md").read_bytes()
    nb_before = json.loads((tmp_path / "appB_attention.ipynb").read_text())
    cm = jupytext.TextFileContentsManager(root_dir=str(tmp_path))
    model = cm.get("appB_attention.md", content=True, type="notebook")
    nb = model["content"]
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    first = next(c for c in nb.cells if c.cell_type == "code" and c.outputs)
    first.outputs = [{"output_type": "stream", "name": "stdout", "text": "a fresh run\n"}]
    cm.save({"type": "notebook", "format": "json", "content": nb}, "appB_attention.md")
    assert (tmp_path / "appB_attention.md").read_bytes() == md_before
    nb_after = json.loads((tmp_path / "appB_attention.ipynb").read_text())
    assert nb_after["metadata"] == nb_before["metadata"]
    changed = [i for i, (a, b) in enumerate(zip(nb_before["cells"], nb_after["cells"])) if a != b]
    assert len(nb_after["cells"]) == len(nb_before["cells"]) and len(changed) == 1
    assert nb_after["cells"][changed[0]]["outputs"][0]["text"] == ["a fresh run\n"]
