"""image_grid and video_strip: layouts accepted, values mapped, errors that name the layout."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from genlib.viz import image_grid, video_strip  # noqa: E402
from genlib.viz.grid import SEP_VALUE, GridLayout, default_scale  # noqa: E402


def canvas_of(fig):
    return np.asarray(fig.axes[0].images[0].get_array())


def test_grid_is_one_pixel_exact_canvas():
    x = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0)])  # black, white
    fig = image_grid(x, nrow=2, scale=0.4)  # 0.4 in at 100 dpi: each pixel becomes 10x10
    c = canvas_of(fig)
    assert c.shape == (1 + 40 + 1, 1 + 2 * (40 + 1))  # 1-px separators around and between
    assert np.all(c[0] == SEP_VALUE) and np.all(c[-1] == SEP_VALUE)
    assert np.all(c[:, 0] == SEP_VALUE) and np.all(c[:, 41] == SEP_VALUE)
    assert np.all(c[1:41, 1:41] == 0.0) and np.all(c[1:41, 42:82] == 1.0)
    w, h = fig.get_size_inches() * fig.dpi
    assert (round(w), round(h)) == (c.shape[1], c.shape[0])  # one canvas pixel per figure pixel
    assert fig.axes[0].images[0].get_interpolation() == "nearest"
    assert not fig.axes[0].axison


@pytest.mark.parametrize("x", [
    torch.rand(5, 3, 8, 8) * 2 - 1,           # b c h w
    torch.rand(3, 8, 8),                      # one image c h w
    np.random.rand(4, 1, 8, 8),               # numpy, grayscale
    [torch.rand(3, 8, 8) for _ in range(3)],  # list of c h w
    torch.rand(2, 3, 8, 8, dtype=torch.bfloat16),
    torch.rand(2, 3, 8, 8, requires_grad=True),
])
def test_grid_accepts_layouts(x):
    fig = image_grid(x)
    c = canvas_of(fig)
    assert c.min() >= 0.0 and c.max() <= 1.0


def test_value_range_and_uint8_and_clipping():
    x = torch.tensor([0.0, 127.5, 255.0, 999.0]).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    c = canvas_of(image_grid(x, value_range=(0, 255), scale=0.04))  # k = 1
    assert np.allclose(c[1, 1:5], [0.0, 0.5, 1.0, 1.0])
    u = canvas_of(image_grid(np.full((1, 1, 4, 4), 255, dtype=np.uint8), scale=0.04))
    assert u[1, 1] == 1.0
    with pytest.warns(UserWarning, match="NaN"):
        image_grid(torch.full((1, 3, 4, 4), float("nan")))


def test_grid_rows_and_titles():
    fig = image_grid(torch.zeros(7, 3, 8, 8), nrow=3, titles=[f"caption {i}" for i in range(7)],
                     title="grid")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [f"caption {i}" for i in range(7)]
    assert fig._suptitle.get_text() == "grid"
    layout = GridLayout.fit(3, 3, 8, 8, default_scale(3))
    assert canvas_of(fig).shape[1] == layout.width


def test_long_titles_wrap():
    fig = image_grid(torch.zeros(2, 3, 8, 8), nrow=2, scale=0.6,
                     titles=["a red circle to the left of a green triangle above two squares"] * 2)
    text = fig.axes[0].texts[0].get_text()
    assert "\n" in text and text.count("\n") <= 2


@pytest.mark.parametrize("shape,match", [
    ((8, 8), "b c h w"),
    ((2, 4, 3, 8, 8), "video_strip"),
    ((2, 4, 8, 8), "c=4"),
    ((2, 8, 8, 3), "channels-last"),
])
def test_grid_errors_name_the_layout(shape, match):
    with pytest.raises(ValueError, match=match):
        image_grid(torch.zeros(shape))


def test_grid_title_count_and_draw_into_ax():
    with pytest.raises(ValueError, match="titles"):
        image_grid(torch.zeros(3, 3, 8, 8), titles=["a", "b"])
    from genlib.viz import new_figure

    fig = new_figure()
    ax = fig.add_subplot()
    assert image_grid(torch.zeros(3, 3, 8, 8), ax=ax) is fig
    assert len(ax.images) == 1


def test_video_strip_rows_columns_and_labels():
    clips = torch.rand(2, 10, 3, 8, 8) * 2 - 1
    fig = video_strip(clips, titles=["a red circle moving right", "two squares"], max_frames=4)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["a red circle moving right", "two squares", "t=0", "t=3", "t=6", "t=9"]
    layout = GridLayout.fit(2, 4, 8, 8, 1.5)
    assert canvas_of(fig).shape[1] == layout.width  # 4 columns
    one = video_strip(torch.rand(3, 1, 8, 8), frame_labels=["a", "b", "c"])  # one clip t c h w
    assert [t.get_text() for t in one.axes[0].texts] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="b t c h w"):
        video_strip(torch.rand(3, 8, 8))
