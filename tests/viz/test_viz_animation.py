"""animate: jshtml players whose HTML is deterministic apart from the PNG payloads."""

import re

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from genlib.viz import animate, reset_html_ids  # noqa: E402

PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def frames_in(html: str) -> int:
    return len(PNG.findall(html))


def test_same_input_same_html():
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    reset_html_ids()
    a = animate(x).data
    reset_html_ids()
    b = animate(x).data
    assert a == b
    assert not re.search(r"[0-9a-f]{32}", PNG.sub("", a))  # matplotlib's uuid4 is gone
    assert "animgenlib0" in a and "_anim_imggenlib0" in a


def test_the_player_loads_nothing_from_the_network():
    """matplotlib's jshtml links a font-awesome stylesheet on a CDN: a page that waits on it (a
    network that accepts and never answers) showed raw TeX for seconds."""
    html = animate(torch.rand(2, 3, 8, 8)).data
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html)
    assert "<script" in html and "fa fa-" in html  # the player and its icon classes are still there


def test_ids_count_up_and_only_payloads_differ():
    reset_html_ids(5)
    x = torch.rand(2, 1, 8, 8)
    a, b = animate(x).data, animate(torch.rand(2, 1, 8, 8)).data
    assert "genlib5" in a and "genlib6" in b
    assert PNG.sub("P", a).replace("genlib5", "ID") == PNG.sub("P", b).replace("genlib6", "ID")
    # the payloads sit on one line each, so the one regex above covers them
    assert frames_in(a) == 2 and "\\\n" not in a


def test_frame_layouts_and_subsampling():
    assert frames_in(animate(torch.rand(4, 3, 8, 8)).data) == 4            # t c h w
    assert frames_in(animate(torch.rand(3, 5, 1, 8, 8), nrow=5).data) == 3  # t b c h w
    h = animate(torch.rand(40, 1, 4, 4), max_frames=5).data
    assert frames_in(h) == 5 and "Showing 5 of 40 frames, evenly spaced." in h


def test_callbacks_called_once_per_frame():
    calls = []

    def frame(i):
        return lambda ax: (calls.append(i), ax.plot([0, i]))

    h = animate([frame(i) for i in range(5)], labels=[f"i={i}" for i in range(5)],
                figsize=(2, 1.5), caption="a <caption>").data
    assert calls == [0, 1, 2, 3, 4]
    assert frames_in(h) == 5 and "a &lt;caption&gt;" in h


def test_figure_canvas_gets_the_figure():
    seen = []
    animate([lambda fig: seen.append(type(fig).__name__)] * 2, canvas="figure")
    assert seen == ["Figure", "Figure"]


@pytest.mark.parametrize("shape", [(8, 8), (3, 8, 8), (2, 4, 8, 8), (2, 3, 4, 8, 8)])
def test_bad_layouts_raise(shape):
    with pytest.raises(ValueError, match="t c h w"):
        animate(torch.zeros(shape))


def test_bad_id_and_labels():
    with pytest.raises(ValueError, match="identifier"):
        animate(torch.zeros(1, 1, 4, 4), html_id="not an id")
    with pytest.raises(ValueError, match="labels"):
        animate(torch.zeros(3, 1, 4, 4), labels=["a"])


def test_the_static_scrubber_opens_on_the_default_as_the_live_view_does(monkeypatch):
    """explore(..., defaults=...) without a kernel: the player's first shown frame is the
    default's (the live view opens there too), and the caption says which one."""
    from genlib import config
    from genlib.viz import explore

    monkeypatch.setattr(config, "interactive", lambda: False)
    player = explore(lambda ax, x: ax.plot([0, x]), x=[0.0, 0.25, 0.5, 0.75, 1.0], defaults={"x": 0.75})
    import re

    opens = re.compile(r"animgenlib\d+\.set_frame\((\d+)\);")
    assert opens.findall(player.data) == ["3"] and "it opens at x = 0.75" in player.data
    first = explore(lambda ax, x: ax.plot([0, x]), x=[0.0, 0.5, 1.0])
    assert not opens.findall(first.data) and "it opens at" not in first.data
