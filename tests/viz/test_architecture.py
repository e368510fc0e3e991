"""Architecture diagrams: the boxes are the model's modules, and the figure fits the page legibly."""

import dataclasses
import warnings

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from genlib.metrics.clip_evaluator import ClipEvaluator, ClipEvaluatorConfig  # noqa: E402
from genlib.models.cgan import ConvGANConfig, ConvGenerator  # noqa: E402
from genlib.models.dit import DiT, DiTConfig, DiTDiffusion, DiTDiffusionConfig  # noqa: E402
from genlib.models.gan import GANPair, ToyDiscriminator, ToyGANConfig, ToyGenerator  # noqa: E402
from genlib.models.imagen import ImagenConfig, TextToImage  # noqa: E402
from genlib.models.sr3 import SR3, SR3Config  # noqa: E402
from genlib.models.kl_autoencoder import KLAutoencoderConfig  # noqa: E402
from genlib.models.make_a_video import Pseudo3dAttention, Pseudo3dConv, inflate  # noqa: E402
from genlib.models.vae import VAE, VAEConfig  # noqa: E402
from genlib.models.video_ldm import ImageLDM, ImageLDMConfig, VideoLDM, VideoLDMConfig  # noqa: E402
from genlib.models.videogpt import (AttentionResBlock, VideoPrior, VideoPriorConfig, VideoVQVAE,  # noqa: E402
                                    VideoVQVAEConfig)
from genlib.models.vqgan import VQGAN, VQGANConfig  # noqa: E402
from genlib.models.vqvae import VQVAE, VQVAEConfig  # noqa: E402
from genlib.nn.attention import AttentionBlock2d  # noqa: E402
from genlib.nn.convnets import ConvNetConfig, Upsample  # noqa: E402
from genlib.nn.resblock import ResBlock  # noqa: E402
from genlib.nn.transformer import TransformerBlock  # noqa: E402
from genlib.nn.unet import Downsample, UNet, UNetConfig  # noqa: E402
from genlib.nn.video import Conv2Plus1d  # noqa: E402
from genlib.viz import architecture, architecture_blocks  # noqa: E402
from genlib.viz.style import FONT_SMALL, TEXT_WIDTH  # noqa: E402


@pytest.fixture(autouse=True)
def ci_profile(monkeypatch):
    monkeypatch.setenv("GENLIB_PROFILE", "ci")


def unet_cfg(**overrides) -> UNetConfig:
    base = dict(in_channels=3, image_size=16, base_channels=8, channel_mult=(1, 2, 2), groups=4, num_heads=2,
                attention_resolutions=(8,))
    return UNetConfig(**{**base, **overrides})


def names(model, *classes) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, classes)]


def drawn(blocks, *kinds) -> list[str]:
    return [b.module for b in blocks if b.kind in kinds]


def vq_cfg(channels=(8, 16, 16)) -> VQGANConfig:
    net = ConvNetConfig(in_channels=3, channels=channels, latent_channels=8, groups=4)
    return VQGANConfig(vq=VQVAEConfig(net=net, num_codes=32), disc_width=8, disc_layers=2)


def video_ldm(**overrides) -> VideoLDM:
    return VideoLDM(VideoLDMConfig.preset(**overrides), ImageLDM(ImageLDMConfig.preset()))


def ring_gan(**overrides) -> GANPair:
    cfg = ToyGANConfig(**{**dict(z_dim=16, width=32, depth=2), **overrides})
    return GANPair(ToyGenerator(cfg), ToyDiscriminator(cfg))  # as gan.load_ring_gan builds it


def videogpt(**overrides) -> list:
    cfg = VideoVQVAEConfig(**{**dict(hidden=8, code_dim=16, num_codes=16), **overrides})
    return [VideoVQVAE(cfg), VideoPrior(VideoPriorConfig.preset(cfg))]


# ----------------------------------------------------------------------------- the U-Net


@pytest.mark.parametrize("overrides", [
    {}, dict(attention_resolutions=()), dict(attention_resolutions=(16, 8, 4)), dict(context_dim=12),
    dict(num_res_blocks=2), dict(channel_mult=(1, 2)), dict(num_classes=3, attention_resolutions=(4,)),
])
def test_unet_boxes_are_its_modules(overrides):
    model = UNet(unet_cfg(**overrides))
    blocks = architecture_blocks(model)
    assert drawn(blocks, "resblock") == names(model, ResBlock)  # each once, in the order the forward runs them
    assert drawn(blocks, "attention", "cross-attention") == names(model, AttentionBlock2d)
    assert drawn(blocks, "cross-attention") == [n for n, m in model.named_modules()
                                                if isinstance(m, AttentionBlock2d) and m.cross_attn is not None]
    assert drawn(blocks, "down") == names(model, Downsample)
    assert drawn(blocks, "up") == names(model, Upsample)
    assert drawn(blocks, "conv") == ["conv_in", "conv_out"]


@pytest.mark.parametrize("levels,blocks_per_level", [(2, 1), (3, 1), (3, 2), (4, 1)])
def test_unet_box_counts_follow_the_config(levels, blocks_per_level):
    """The DDPM U-Net's layout: per level ``n`` ResBlocks down and ``n + 1`` up, two in the middle."""
    mult = (1, 2, 2, 2)[:levels]
    blocks = architecture_blocks(UNet(unet_cfg(channel_mult=mult, num_res_blocks=blocks_per_level)))
    assert len(drawn(blocks, "resblock")) == levels * (2 * blocks_per_level + 1) + 2
    assert len(drawn(blocks, "down")) == len(drawn(blocks, "up")) == levels - 1
    assert {b.size for b in blocks if b.kind == "resblock"} == {16 // 2 ** i for i in range(levels)}


@pytest.mark.parametrize("resolutions", [(), (8,), (16, 4), (16, 8, 4)])
def test_attention_sits_at_the_configured_resolutions(resolutions):
    blocks = architecture_blocks(UNet(unet_cfg(attention_resolutions=resolutions)))
    attn = [b for b in blocks if b.kind == "attention"]
    middle = 1  # the middle block always attends, at the lowest resolution (4)
    per_level = {16: 1 + 2, 8: 1 + 2, 4: 1 + 2}  # one down, two up (num_res_blocks = 1)
    assert len(attn) == sum(per_level[r] for r in resolutions) + middle
    assert {b.size for b in attn} == set(resolutions) | {4}


def test_labels_hold_the_real_channel_counts():
    model = UNet(unet_cfg(base_channels=12, channel_mult=(1, 2, 3), context_dim=20))
    blocks = architecture_blocks(model)
    for b in blocks:
        if b.kind == "resblock":
            m = model.get_submodule(b.module)
            want = f"{m.in_channels}→{m.out_channels}" if m.in_channels != m.out_channels else str(m.out_channels)
            assert want in b.label.splitlines()[1] and b.channels == m.out_channels
        if b.kind == "cross-attention":
            assert f"{model.get_submodule(b.module).channels} ← 20" in b.label
    assert {b.channels for b in blocks if b.kind == "resblock"} == {12, 24, 36}


@pytest.mark.parametrize("mult,n", [((1, 2, 4, 4), 1), ((1, 2, 2), 2)])  # the widest presets (gpu)
def test_a_wide_unet_switches_to_compact_labels_and_still_fits(mult, n):
    model = UNet(unet_cfg(channel_mult=mult, num_res_blocks=n, base_channels=64, groups=8))
    blocks = architecture_blocks(model)
    fig = architecture(model)
    assert fig.get_size_inches()[0] <= TEXT_WIDTH
    for b in blocks:
        if b.kind == "resblock":
            assert b.label == f"Res\n{model.get_submodule(b.module).out_channels}"
    narrow = architecture_blocks(UNet(unet_cfg(channel_mult=mult[:2], num_res_blocks=1, base_channels=64, groups=8)))
    assert narrow[1].label == "Conv in\n3→64"  # full labels wherever they fit


def test_one_dashed_skip_per_up_layer():
    for overrides in ({}, dict(num_res_blocks=2)):
        model = UNet(unet_cfg(**overrides))
        fig = architecture(model)
        dashed = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch) and p.get_linestyle() != "-"]
        assert len(dashed) == len(model.up)


def test_a_config_draws_the_model_it_builds():
    cfg = unet_cfg(context_dim=8)
    assert architecture_blocks(cfg) == architecture_blocks(UNet(cfg))
    with pytest.raises(TypeError, match="VideoLDM"):
        architecture(VideoLDMConfig.preset())  # needs its image model
    with pytest.raises(TypeError, match="does not know"):
        architecture(torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------- video models


@pytest.mark.parametrize("temporal", ["conv3d+attention", "attention-only"])
def test_video_ldm_has_one_box_per_temporal_mixer_after_its_block(temporal):
    model = video_ldm(temporal=temporal)
    blocks = architecture_blocks(model)
    mixers = [i for i, b in enumerate(blocks) if b.kind.startswith("temporal")]
    assert [blocks[i].module for i in mixers] == [f"mixers.{k}" for k in model.mixers]
    for i in mixers:  # each mixer follows the frozen block it mixes
        key = blocks[i].module.removeprefix("mixers.")
        assert blocks[i - 1].module.removeprefix("image.unet.").replace(".", "_") == key
        kind = "temporal-conv" if blocks[i - 1].kind == "resblock" and temporal == "conv3d+attention" \
            else "temporal-attention"
        assert blocks[i].kind == kind
    assert drawn(blocks, "resblock") == names(model, ResBlock)
    model.set_alpha(0.25)
    assert all("α = 0.25" in b.label for b in architecture_blocks(model) if b.kind.startswith("temporal"))


def test_make_a_video_draws_the_inflated_layers():
    image = UNet(unet_cfg(channel_mult=(1, 2), attention_resolutions=(16, 8)))  # narrow enough for full labels
    video = inflate(image)
    blocks = architecture_blocks(video)
    p3d = names(video, Pseudo3dAttention)
    assert drawn(blocks, "temporal-attention") == [n + ".temporal" for n in p3d]
    assert drawn(blocks, "attention") == [n + ".spatial" for n in p3d]
    assert drawn(blocks, "resblock") == names(video, ResBlock)
    assert all(b.label.startswith("Res (2+1)D") for b in blocks if b.kind == "resblock")
    assert len(names(video, Pseudo3dConv)) > len(drawn(blocks, "resblock"))  # convs are inside the boxes
    plain = architecture_blocks(image)
    assert len(blocks) == len(plain) + len(p3d)  # one temporal box more per attention block


# ----------------------------------------------------------------------------- DiT, autoencoders, cascades


@pytest.mark.parametrize("depth", [1, 2, 4, 12])
def test_dit_draws_its_blocks(depth):
    model = DiT(DiTConfig(depth=depth, dim=32, heads=2, num_classes=10))
    blocks = architecture_blocks(model)
    body = [b for b in blocks if b.kind == "transformer" and b.module != "final"]
    assert sum(b.count for b in body) == depth
    if depth <= 4:
        assert [b.module for b in body] == [f"blocks.{i}" for i in range(depth)]
    assert any(b.kind == "patch" and "64 × 32" in b.label for b in blocks)  # (16 / 2)^2 tokens of width 32
    assert drawn(blocks, "embedding") == ["time_embed", "label_embed"]
    assert architecture(model).get_size_inches()[0] <= TEXT_WIDTH
    wrapped = architecture_blocks(DiTDiffusion(DiTDiffusionConfig.preset("digits")))
    assert sum(b.count for b in wrapped if b.kind == "transformer") == DiTDiffusionConfig.preset("digits").dit.depth + 1


@pytest.mark.parametrize("channels", [(8, 16), (8, 16, 16)])
def test_vqgan_draws_encoder_quantiser_decoder_and_discriminator(channels):
    cfg = vq_cfg(channels)
    model = VQGAN(cfg)
    blocks = architecture_blocks(model)
    assert drawn(blocks, "resblock") == names(model, ResBlock)
    assert len(drawn(blocks, "down")) == len(drawn(blocks, "up")) == len(channels) - 1
    (q,) = [b for b in blocks if b.kind == "quantizer"]
    assert q.module == "autoencoder.quantizer" and "32 codes" in q.label and "dim 8" in q.label
    convs = names(model.discriminator, torch.nn.Conv2d)
    assert drawn(blocks, "discriminator") == [f"discriminator.{n}" for n in convs]
    assert len(convs) == cfg.disc_layers + 2
    plain = architecture_blocks(VQVAE(cfg.vq))
    assert [b.label for b in plain] == [b.label for b in blocks[:len(plain)]]  # the same autoencoder, no D


def test_autoencoders_with_continuous_latents():
    vae = VAE(VAEConfig())
    blocks = architecture_blocks(vae)
    assert [b.module for b in blocks if b.kind == "latent"] == ["to_latent", "", "from_latent"]
    assert f"{vae.cfg.latent_dim}→" in blocks[[b.module for b in blocks].index("from_latent")].label
    assert {b.size for b in blocks if b.kind == "resblock"} == {16, 8}  # from the config's image_size
    kl = architecture_blocks(KLAutoencoderConfig.preset())
    assert any(b.kind == "latent" and "Sample" in b.label for b in kl)
    assert not any(b.kind == "quantizer" for b in kl)


def test_imagen_cascade_summarises_each_stage():
    base_cfg, sr_cfg = ImagenConfig.preset("minilm", 8), SR3Config.preset()
    blocks = architecture_blocks([base_cfg, sr_cfg])
    stages = [b for b in blocks if b.kind == "unet"]
    assert [b.module for b in stages] == ["0.unet", "1.unet"]
    for b, cfg in zip(stages, (base_cfg, sr_cfg)):
        unet = UNet(cfg.unet)
        assert f"{len(names(unet, ResBlock))} ResBlocks" in b.label
        assert "ch " + "·".join(str(cfg.unet.base_channels * m) for m in cfg.unet.channel_mult) in b.label
    assert [b.kind for b in blocks] == ["data", "text-encoder", "unet", "data", "resize", "unet", "data"]
    scratch = ImagenConfig.preset("scratch", 8)
    models = architecture_blocks([TextToImage(scratch), SR3(sr_cfg)])
    assert "tokens × 64" in models[1].label and models[1].module == "0.text"


# ----------------------------------------------------------------------------- the page


MODELS = {
    "unet": lambda: UNet(unet_cfg(attention_resolutions=(8, 4))),
    "unet-cross": lambda: UNet(unet_cfg(context_dim=384, attention_resolutions=(4,))),
    "unet-wide": lambda: UNet(unet_cfg(channel_mult=(1, 2, 4, 4), base_channels=64, groups=8)),
    "unet-deep": lambda: UNet(unet_cfg(channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(8, 4))),
    "vqgan": lambda: VQGAN(vq_cfg()),
    "vae": lambda: VAE(VAEConfig()),
    "dit": lambda: DiT(DiTConfig(depth=12, dim=384, heads=6, num_classes=10)),
    "video-ldm": lambda: video_ldm(),
    "make-a-video": lambda: inflate(UNet(unet_cfg(attention_resolutions=(8,), num_classes=4))),
    "cascade": lambda: [ImagenConfig.preset("minilm", 8), SR3Config.preset()],
}
NEW_MODELS = {  # chapters 05, 10 and 11, built from the active profile's presets
    "ring-gan": lambda: ToyGANConfig.preset(),
    "ring-gan-pack": lambda: ToyGANConfig.preset(pack=4),
    "cgan": lambda: ConvGANConfig.preset(),
    "videogpt": lambda: [VideoVQVAEConfig.preset(), VideoPriorConfig.preset(VideoVQVAEConfig.preset())],
    "video-vqvae": lambda: VideoVQVAEConfig.preset(),
    "video-prior": lambda: VideoPriorConfig.preset(VideoVQVAEConfig.preset()),
    "clip-evaluator": lambda: ClipEvaluatorConfig.preset(),
}


@pytest.mark.parametrize("kind", list(MODELS))
def test_figure_fits_the_page_and_no_text_overlaps(kind):
    check_page(MODELS[kind]())


def check_page(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a diagram too wide for the page warns
        fig = architecture(model)
    blocks = architecture_blocks(model)
    w, h = fig.get_size_inches()
    assert w <= TEXT_WIDTH
    canvas = FigureCanvasAgg(fig)  # the figure is created closed (new_figure): give it a canvas to render on
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    texts = [t for t in ax.texts if t.get_text().strip()]
    assert all(t.get_fontsize() >= FONT_SMALL for t in texts)
    boxes = {p.get_gid(): p.get_window_extent(renderer) for p in ax.patches
             if isinstance(p, FancyBboxPatch) and (p.get_gid() or "").startswith("block:")}
    assert sorted(boxes) == sorted(f"block:{i}" for i in range(len(blocks)))
    extents = [t.get_window_extent(renderer) for t in texts]
    page = fig.bbox
    for t, e in zip(texts, extents):
        assert page.x0 <= e.x0 and e.x1 <= page.x1 and page.y0 <= e.y0 and e.y1 <= page.y1, t.get_text()
        if t.get_gid():  # a box's label stays inside its box
            b = boxes[t.get_gid()]
            assert b.x0 <= e.x0 and e.x1 <= b.x1 and b.y0 <= e.y0 and e.y1 <= b.y1, t.get_text()
    for i, a in enumerate(extents):
        for b, tb in zip(extents[i + 1:], texts[i + 1:]):
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 0.5 or overlap_y <= 0.5, (texts[i].get_text(), tb.get_text())


@pytest.mark.parametrize("profile", ["ci", "cpu", "gpu"])
@pytest.mark.parametrize("kind", list(NEW_MODELS))
def test_new_figures_fit_the_page_in_every_profile(kind, profile, monkeypatch):
    monkeypatch.setenv("GENLIB_PROFILE", profile)
    check_page(NEW_MODELS[kind]())


# ----------------------------------------------------------------------------- GANs (chapter 05)


def rows(blocks, net) -> list:
    """The boxes of ``net``'s row: its layers (named ``generator.*`` / ``discriminator.*``) and
    the tensors and concatenations of that row."""
    g_end = next(i for i, b in enumerate(blocks) if b.label.startswith("G("))
    return blocks[:g_end + 1] if net == "generator" else blocks[g_end + 1:]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("pack", [1, 4])
def test_ring_gan_draws_g_and_d_layer_by_layer(depth, pack):
    pair = ring_gan(depth=depth, pack=pack, width=24)
    blocks = architecture_blocks(pair)
    assert drawn(blocks, "linear") == names(pair, torch.nn.Linear)  # each once, G's row first
    for net, d_in, d_out in (("generator", 16, 2), ("discriminator", 2 * pack, 1)):
        layers = [b for b in rows(blocks, net) if b.kind == "linear"]
        assert all(b.module.startswith(net + ".") for b in layers)
        assert sum("ReLU" in b.label for b in layers) == depth  # the hidden layers; the last is linear alone
        assert f"{d_in}→24" in layers[0].label and f"24→{d_out}" in layers[-1].label
    d_row = rows(blocks, "discriminator")
    assert (f"{pack} × 2" in d_row[0].label) == (pack > 1)  # D's input: a pack of points, or one point
    assert [b.label for b in d_row if b.kind == "concat"] == ([f"pack\n{pack} × 2 → {2 * pack}"] if pack > 1 else [])
    assert not any("label y" in b.label for b in blocks)  # unconditional
    assert [b.label for b in architecture_blocks(pair.generator.cfg)] == \
        [b.label for b in blocks]  # its config draws the same pair


@pytest.mark.parametrize("size", [16, 32])
def test_conditional_gan_shows_its_label_input(size):
    cfg = ConvGANConfig(image_size=size, z_dim=16, width=8, num_classes=10)
    blocks = architecture_blocks(cfg)
    g, d = rows(blocks, "generator"), rows(blocks, "discriminator")
    for row in (g, d):  # the label enters both networks, through a concatenation
        assert sum(b.label == "label y\n10 classes" for b in row) == 1
        assert sum(b.kind == "concat" for b in row) == 1
    assert "16 + 10 → 26" in next(b.label for b in g if b.kind == "concat")
    assert "1 + 10 → 11" in next(b.label for b in d if b.kind == "concat")
    gen = ConvGenerator(cfg)
    assert [b.module for b in g if b.kind in ("linear", "up", "conv")] == \
        ["generator." + n for n in names(gen, torch.nn.Linear, torch.nn.Conv2d)]
    ups = [b for b in g if b.kind == "up"]
    assert len(ups) == len([b for b in d if b.kind == "down"]) == cfg.levels
    widths = [8 * 2 ** (cfg.levels - i) for i in range(cfg.levels + 1)]  # 4x4 at the widest, halved per level
    assert [b.label.splitlines()[-1] for b in ups] == [f"{a}→{b}" for a, b in zip(widths, widths[1:])]
    assert [b.size for b in ups] == [4 * 2 ** (i + 1) for i in range(cfg.levels)]
    assert f"26→{widths[0]}×4×4" in g[3].label and g[-1].label == f"G(z, y)\n1×{size}×{size}"
    plain = architecture_blocks(ConvGANConfig(image_size=size, z_dim=16, width=8))
    assert not any("label y" in b.label or b.kind == "concat" for b in plain)
    assert len(plain) == len(blocks) - 4  # no label boxes, no concatenations


# ----------------------------------------------------------------------------- VideoGPT (chapter 11)


@pytest.mark.parametrize("overrides", [{}, dict(blocks=2), dict(down_t=0), dict(down_t=2, down_hw=1, blocks=0)])
def test_video_vqvae_draws_its_3d_layers(overrides):
    vq, prior = videogpt(**overrides)
    cfg = vq.cfg
    blocks = architecture_blocks(vq)
    assert drawn(blocks, "axial-resblock") == names(vq, AttentionResBlock)
    assert len(drawn(blocks, "axial-resblock")) == 2 * cfg.blocks  # encoder and decoder
    n = max(cfg.down_t, cfg.down_hw)
    assert drawn(blocks, "down") == [f"encoder.net.{2 * i}" for i in range(n)]
    assert drawn(blocks, "up") == names(vq, torch.nn.ConvTranspose3d) and len(drawn(blocks, "up")) == n
    downs = [b.label.splitlines()[0] for b in blocks if b.kind == "down"]
    assert downs == ["Down " + ("t,h,w" if i < min(cfg.down_t, cfg.down_hw) else "t" if i < cfg.down_t else "h,w")
                     for i in range(n)]
    assert "3→8" in blocks[1].label and blocks[-1].label.startswith("x̂\n3×")
    (q,) = [b for b in blocks if b.kind == "quantizer"]
    assert q.module == "quantizer" and "16 codes" in q.label and "dim 16" in q.label
    pair = architecture_blocks([vq, prior])  # with its prior, the clip's size is known
    assert [b.module for b in pair if b.kind == "axial-resblock"] == ["vqvae." + m for m in
                                                                      drawn(blocks, "axial-resblock")]
    t, s = prior.cfg.t * 2 ** cfg.down_t, prior.cfg.h * 2 ** cfg.down_hw
    assert pair[0].label == f"clip x\n3×{t}×{s}×{s}" and pair[0].size == s


def test_a_deep_video_vqvae_folds_its_attention_blocks_to_fit():
    vq, prior = videogpt(blocks=5, hidden=128)
    for model in (vq, [vq, prior]):
        blocks = architecture_blocks(model)
        folded = [b for b in blocks if b.kind == "axial-resblock"]
        assert [b.count for b in folded] == [5, 5] and all(b.label.startswith("Attn-Res ×5") for b in folded)
        assert [b.label for b in blocks if b.kind == "down"] == ["Down t,h,w\n128", "Down h,w\n128"]
        check_page(model)


@pytest.mark.parametrize("layers", [1, 2, 3, 6, 12])
def test_video_prior_draws_its_transformer_blocks(layers):
    vq, _ = videogpt()
    cfg = dataclasses.replace(VideoPriorConfig.preset(vq.cfg), layers=layers, dim=32)
    prior = VideoPrior(cfg)
    for model, prefix in ((prior, ""), ([vq, prior], "prior.")):
        blocks = architecture_blocks(model)
        gpt = [b for b in blocks if b.kind == "gpt-block"]
        assert sum(b.count for b in gpt) == layers  # folded or not, every block is counted once
        assert gpt[0].module == prefix + "gpt.blocks.0" and gpt[-1].module == prefix + f"gpt.blocks.{layers - 1}"
        if len(gpt) == layers:
            assert [b.module for b in gpt] == [prefix + n for n in names(prior, TransformerBlock)]
        assert all(b.label.splitlines()[-1] == f"32, {cfg.heads} heads" for b in gpt if b.count == 1)
        codes = next(b for b in blocks if b.label.startswith("codes"))
        assert f"{cfg.t}×{cfg.h}×{cfg.w}, K={cfg.num_codes}" in codes.label
        assert any(f"→ {cfg.length + 1} tokens" in b.label for b in blocks)
        assert any(b.kind == "linear" and b.label.endswith(f"32→{cfg.num_codes + 1}") for b in blocks)
    assert architecture_blocks(VideoPrior(cfg)) == architecture_blocks(cfg)  # its config draws it


# ----------------------------------------------------------------------------- the clip evaluator (chapter 10)


@pytest.mark.parametrize("width,size", [(4, 32), (12, 32), (8, 16)])
def test_clip_evaluator_draws_its_2plus1d_trunk_and_head(width, size):
    cfg = ClipEvaluatorConfig(width=width, size=size)
    model = ClipEvaluator(cfg)
    blocks = architecture_blocks(model)
    assert drawn(blocks, "conv-2plus1d") == names(model, Conv2Plus1d)
    trunk = [b for b in blocks if b.kind == "conv-2plus1d"]
    widths = [3, width, 2 * width, 4 * width]
    assert [b.label.splitlines()[1] for b in trunk] == [f"{a}→{b}" for a, b in zip(widths, widths[1:])]
    assert [b.size for b in trunk] == [size // 2, size // 4, size // 8]
    side = size // 8
    assert f"{4 * width}×{cfg.frames}×{side}×{side}" in blocks[len(trunk) + 1].label
    (head,) = [b for b in blocks if b.kind == "linear"]
    assert head.module == "head" and f"{4 * width}→{model.head.out_features}" in head.label
    assert "colour 7" in blocks[-2].label  # the three heads, as the evaluator splits its logits
    assert blocks[-1].kind == "pool" and f"→ {8 * width} features" in blocks[-1].label
    assert architecture_blocks(cfg) == blocks
