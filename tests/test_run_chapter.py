"""benchmarks/run_chapter.py: the MyST code-cell reader it runs chapters with (no Jupyter needed)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_chapter", ROOT / "benchmarks" / "run_chapter.py")
run_chapter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_chapter)


def test_code_cells_drop_option_lines_and_keep_code(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("# Title\n\n```{code-cell} ipython3\n:tags: [remove-output]\n\nx = 1\n```\n\ntext\n\n"
                  "```{code-cell} ipython3\n---\ntags: [hide-input]\n---\ny = x + 1\nprint(y)\n```\n\n"
                  "```python\nnot = a cell\n```\n")
    assert run_chapter.code_cells(md) == ["\nx = 1", "y = x + 1\nprint(y)"]


@pytest.mark.parametrize("md", sorted((ROOT / "chapters").glob("*.md")), ids=lambda p: p.stem)
def test_every_chapter_cell_compiles(md):
    cells = run_chapter.code_cells(md)
    assert cells, f"{md.name} has no code cells"
    for i, src in enumerate(cells):
        compile(src, f"{md.stem} cell {i}", "exec")


def test_unknown_chapter_names_the_known_ones():
    with pytest.raises(SystemExit, match="02_generative_models"):
        run_chapter.find_chapter("99")


@pytest.mark.slow
def test_jobs_run_chapters_side_by_side_and_report_each(tmp_path):
    import os
    import subprocess
    import sys

    for name in ("pageA_one", "pageB_two"):
        (tmp_path / f"{name}.md").write_text('```{code-cell} ipython3\nfrom genlib.viz import check\n'
                                              f'check("{name} ran", True)\n```\n')
    env = dict(os.environ, GENLIB_VERDICTS=str(tmp_path / "v"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_chapter.py"), str(tmp_path / "pageA_one.md"),
                           str(tmp_path / "pageB_two.md"), "--profile", "ci", "--jobs", "2",
                           "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[pageA]   PASS: pageA_one ran" in proc.stdout and "[pageB]   PASS: pageB_two ran" in proc.stdout
    assert "2 chapter(s), 2 at a time" in proc.stdout
    import json
    times = json.loads((tmp_path / "out" / "chapter-times-ci.json").read_text())
    assert times["jobs"] == 2 and [c["chapter"] for c in times["chapters"]] == ["pageA_one", "pageB_two"]
