"""explore: the same draw behind a live widget view and a static scrubber / small multiples."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from genlib.viz.animation import Player  # noqa: E402

from genlib import config  # noqa: E402
from genlib.viz import explore  # noqa: E402
from genlib.viz.explore import label_of, params_of  # noqa: E402


@pytest.fixture
def static(monkeypatch):
    monkeypatch.setattr(config, "interactive", lambda: False)


@pytest.fixture
def live(monkeypatch):
    monkeypatch.setattr(config, "interactive", lambda: True)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, ax, **values):
        self.calls.append(values)
        ax.plot([0, 1], [0, values.get("s", 1)])


def test_scrubber_one_frame_per_value(static):
    draw = Recorder()
    out = explore(draw, s=[1, 2, 3])
    assert isinstance(out, Player)
    assert draw.calls == [{"s": 1}, {"s": 2}, {"s": 3}]
    assert out.data.count("data:image/png;base64,") == 3
    assert "Scrub s (3 values)." in out.data


def test_scrubber_is_bounded_and_holds_the_rest_at_defaults(static):
    draw = Recorder()
    out = explore(draw, s=np.linspace(0, 1, 100), mode=["a", "b"], k=range(5),
                  defaults={"k": 3}, max_frames=6)
    assert len(draw.calls) == 6
    values = np.linspace(0, 1, 100)
    assert [c["s"] for c in draw.calls] == [values[i] for i in (0, 20, 40, 59, 79, 99)]
    assert all(c["mode"] == "a" and c["k"] == 3 for c in draw.calls)
    assert "6 of 100 values, evenly spaced" in out.data and "Fixed: mode = a, k = 3." in out.data


def test_multiples_draw_once_per_panel(static):
    draw = Recorder()
    fig = explore(draw, s=range(10), mode=["a", "b", "c"], static="multiples", max_panels=12)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(draw.calls) == len(fig.subfigs) == 12  # 4 across x 3 down
    assert {c["mode"] for c in draw.calls} == {"a", "b", "c"}
    assert "s across (4 of 10 values, evenly spaced), mode down (3 values)." in \
        fig._suptitle.get_text()


def test_figure_canvas(static):
    seen = []
    explore(lambda fig, s: seen.append(type(fig).__name__) or fig.subplots(1, 2),
            s=[1, 2], canvas="figure")
    assert seen == ["Figure", "Figure"]


def test_live_view_builds_widgets(live):
    import ipywidgets as widgets

    draw = Recorder()
    box = explore(draw, s=[0.5, 1.0, 2.0], mode=["a", "b"], defaults={"s": 1.0})
    assert isinstance(box, widgets.VBox)
    controls, out = box.children
    slider, dropdown = controls.children
    assert isinstance(slider, widgets.SelectionSlider) and slider.value == 1.0
    assert isinstance(dropdown, widgets.Dropdown) and dropdown.value == "a"
    assert isinstance(out, widgets.Output)
    assert draw.calls == [{"s": 1.0, "mode": "a"}]  # drawn once, at the defaults
    slider.value = 2.0
    assert draw.calls[-1] == {"s": 2.0, "mode": "a"}  # the same draw, redrawn on change


def test_labels_match_between_paths():
    assert label_of({"t": 500, "sigma": 0.25, "schedule": "cosine"}) == \
        "t = 500, sigma = 0.25, schedule = cosine"


@pytest.mark.parametrize("params,defaults,err,match", [
    ({}, None, ValueError, "at least one parameter"),
    ({"s": 3}, None, TypeError, "sequence of values"),
    ({"s": "abc"}, None, TypeError, "sequence of values"),
    ({"s": []}, None, ValueError, "no values"),
    ({"s": [1, 2]}, {"t": 1}, ValueError, "not parameters"),
    ({"s": [1, 2]}, {"s": 5}, ValueError, "not one of its values"),
])
def test_parameter_errors(params, defaults, err, match):
    with pytest.raises(err, match=match):
        params_of(params, defaults)


def test_defaults_match_floats_and_options_are_checked(static):
    (p,) = params_of({"s": np.linspace(0, 1, 4)}, {"s": 1 / 3})
    assert p.index == 1
    with pytest.raises(ValueError, match="static"):
        explore(Recorder(), s=[1], static="gif")
    with pytest.raises(ValueError, match="canvas"):
        explore(Recorder(), s=[1], canvas="axes")
