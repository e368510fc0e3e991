"""plot_curves and its EMA smoothing."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from genlib.viz import ema, plot_curves  # noqa: E402


def test_ema_is_debiased():
    assert np.allclose(ema([5.0] * 10, 0.9), 5.0)  # a constant stays constant from step 0
    x = np.array([1.0, 3.0])
    # s_1 = 0.1 * 1 / (1 - 0.9) = 1; s_2 = (0.9 * 0.1 + 0.1 * 3) / (1 - 0.81)
    assert np.allclose(ema(x, 0.9), [1.0, (0.09 + 0.3) / 0.19])
    assert np.allclose(ema([1.0, np.nan, 1.0], 0.5), 1.0)
    with pytest.raises(ValueError):
        ema([1.0], 1.0)


def test_plot_curves_lines_labels_and_log():
    fig = plot_curves({"ddpm": torch.linspace(1, 0.1, 50),
                       "ddim": (np.arange(0, 50, 5), np.linspace(1, 0.2, 10))},
                      smooth=0.8, log=True, title="loss")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "step" and ax.get_ylabel().startswith("loss")
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 4  # raw + smoothed per run
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ddpm", "ddim"]
    assert np.allclose(ax.lines[2].get_xdata(), np.arange(0, 50, 5))


def test_plot_curves_errors():
    with pytest.raises(ValueError, match="positive"):
        plot_curves({"a": [1.0, 0.0]}, log=True)
    with pytest.raises(ValueError, match="3 steps for 2 values"):
        plot_curves({"a": ([0, 1, 2], [1.0, 2.0])})
    with pytest.raises(TypeError):
        plot_curves({})
