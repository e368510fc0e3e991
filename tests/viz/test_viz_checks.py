"""genlib.viz.check: a passing invariant prints one line; a failing one stops the page."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genlib.viz import InvariantError, check

ROOT = Path(__file__).resolve().parents[2]


def test_a_passing_check_prints_the_claim_only(capsys):
    assert check("one plus one is two", 1 + 1 == 2, value=2) is None
    assert capsys.readouterr().out == "PASS: one plus one is two\n"


def test_a_failing_check_raises_with_the_values_found(capsys):
    with pytest.raises(InvariantError, match=r"FAIL: the error is small \(found error = 0\.5; n = 3\)"):
        check("the error is small", 0.5 < 1e-5, error=0.5, n=3)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("passed", [torch.tensor(False), np.bool_(False), torch.tensor([0.0]), 0])
def test_false_of_any_kind_fails(passed):
    with pytest.raises(InvariantError):
        check("claim", passed)


@pytest.mark.parametrize("passed", [torch.tensor([True, False]), np.array([True, True])])
def test_several_truth_values_are_refused_not_guessed(passed):
    with pytest.raises(TypeError, match=r"one truth value.*\.all\(\)"):
        check("claim", passed)


def test_the_claim_must_be_text():
    with pytest.raises(TypeError, match="claim"):
        check("", True)


CHAPTER = """# A page

```{code-cell} ipython3
from genlib.viz import check
check("this holds", True)
```

```{code-cell} ipython3
check("this does not hold", 2 + 2 == 5, sum=4)
```

```{code-cell} ipython3
print("never reached")
```
"""


@pytest.mark.slow
def test_a_failed_invariant_stops_run_chapter_and_a_notebook(tmp_path):
    """The page stops in every runner: benchmarks/run_chapter.py exits non-zero and a Jupyter
    kernel (as the book build and nbval use) raises on the cell."""
    md = tmp_path / "page.md"
    md.write_text(CHAPTER)
    env = {"GENLIB_PROFILE": "cpu", "GENLIB_CACHE": str(tmp_path / "cache"), "GENLIB_VERDICTS": str(tmp_path / "v")}
    import os
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_chapter.py"), str(md), "--profile", "cpu"],
                          env=dict(os.environ, **env), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "PASS: this holds" in proc.stdout and "FAIL: this does not hold (found sum = 4)" in proc.stdout
    assert "never reached" not in proc.stdout

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in
                                         ['from genlib.viz import check\ncheck("this holds", True)',
                                          'check("this does not hold", 2 + 2 == 5, sum=4)', 'print("never reached")']])
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="InvariantError"):
        client.execute(env=dict(os.environ, **env))
    assert "never reached" not in json.dumps(nb.cells[2].get("outputs", []))
