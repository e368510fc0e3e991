"""Number formatting and the profile/seed caption."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from genlib.viz import caption_tag, format_number, new_figure, titled  # noqa: E402


@pytest.mark.parametrize("v,text", [
    (0.0, "0"), (1.0, "1.00"), (-0.5, "-0.500"), (12345.678, "12346"), (1e-7, "1.00e-07"),
    (3, "3"), (123456789, "123,456,789"), (np.float32(0.1), "0.100"), (torch.tensor(2.5), "2.50"),
    (None, "-"), (True, "True"), ("x", "x"), (-1e-12, "-1.00e-12"),
])
def test_format_number(v, text):
    assert format_number(v) == text


def test_trimmed_labels():
    assert format_number(0.2, 4, trim=True) == "0.2"
    assert format_number(1e-7, 4, trim=True) == "1e-07"
    assert format_number(2.0, 4, trim=True) == "2"


def test_titled_adds_profile_and_seed(monkeypatch):
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    assert caption_tag(seed=0) == "profile=ci, seed=0"
    fig = new_figure((4, 3))
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    h0 = ax.get_position().height * fig.get_size_inches()[1]
    titled(fig, "Samples", seed=0)
    titled(fig, "Samples again", seed=1)  # replaces the text, grows the figure once
    assert fig._suptitle.get_text() == "Samples again (profile=ci, seed=1)"
    assert fig.get_size_inches()[1] > 3 and fig.get_size_inches()[1] < 3.5
    assert np.isclose(ax.get_position().height * fig.get_size_inches()[1], h0)  # axes kept
    titled(ax, "panel", tag=False)
    assert ax.get_title() == "panel"
    with pytest.raises(TypeError):
        titled("not a figure", "x")
