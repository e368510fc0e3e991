"""table: deterministic text/plain and text/html from the values alone."""

import numpy as np
import pytest
import torch

from genlib.viz import table


def test_text_is_aligned_and_rounded():
    t = table([["DDPM", 1000, 12.3456], ["DDIM", 50, 0.000123456], ["none", None, 2 / 3]],
              ["sampler", "steps", "FID"], caption="Samplers (profile=ci, seed=0)")
    assert repr(t) == (
        "Samplers (profile=ci, seed=0)\n"
        "sampler  steps       FID\n"
        "-------  -----  --------\n"
        "DDPM      1000      12.3\n"
        "DDIM        50  0.000123\n"
        "none         -     0.667"
    )
    assert str(t) == repr(t)


def test_html_is_escaped_and_aligned():
    t = table([{"prompt": "a <b> & c", "score": 0.5}])
    h = t._repr_html_()
    assert h.startswith('<table class="genlib-table">') and h.endswith("</table>")
    assert "a &lt;b&gt; &amp; c" in h
    assert '<td style="text-align: right">0.500</td>' in h
    assert '<th style="text-align: left">prompt</th>' in h


def test_dict_rows_numpy_torch_and_formats():
    rows = [{"a": np.float32(0.25), "b": torch.tensor(3)}, {"a": 1e-9, "c": True}]
    t = table(rows, formats={"a": ".1%"})
    assert t.columns == ["a", "b", "c"]
    assert t.cells == [["25.0%", "3", "-"], ["0.0%", "-", "True"]]
    assert t.numeric == [True, True, False]


def test_same_values_same_output():
    rows = [[0.1 + 0.2, 7]]
    assert repr(table(rows, ["x", "n"])) == repr(table([[0.3, 7]], ["x", "n"]))
    assert table(rows, ["x", "n"])._repr_html_() == table([[0.3, 7]], ["x", "n"])._repr_html_()


def test_errors():
    with pytest.raises(ValueError, match="columns"):
        table([[1, 2]])
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        table([[1, 2]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="not columns"):
        table([{"a": 1, "z": 2}], ["a"])
    with pytest.raises(TypeError, match="row 0"):
        table(["ab"], ["a", "b"])
