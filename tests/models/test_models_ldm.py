"""genlib.models.ldm: the latent denoiser's config checks, its training data scaling, condition
dropout, text-to-image sampling, and the cross-attention maps."""

import pytest
import torch
from einops import rearrange

from genlib import zoo
from genlib.diffusion import ddim_sample
from genlib.models import ldm
from genlib.models.clip import CLIP, CLIPConfig
from genlib.models.kl_autoencoder import KLAutoencoderConfig, KLGAN
from genlib.nn.attention import AttentionBlock2d
from genlib.nn.convnets import ConvNetConfig
from genlib.nn.unet import UNetConfig


def _unet(**kw):
    return UNetConfig(**{**dict(in_channels=4, image_size=8, base_channels=8, channel_mult=(1, 2), groups=4, num_heads=2,
                                attention_resolutions=(8, 4), context_dim=16), **kw})


def _parts():
    torch.manual_seed(0)
    first = KLGAN(KLAutoencoderConfig(net=ConvNetConfig(in_channels=3, channels=(8, 8, 8), latent_channels=4), disc_width=4)).eval()
    clip = CLIP(CLIPConfig(embed_dim=16, text_dim=16, text_layers=1, image_width=8)).eval()
    model = ldm.LatentDiffusion(ldm.LDMConfig(unet=_unet(), steps=3, batch_size=4)).eval()
    for p in model.unet.conv_out.parameters():  # a fresh U-Net predicts 0; give it an output to test with
        torch.nn.init.normal_(p, std=0.1)
    for m in model.unet.modules():
        if isinstance(m, AttentionBlock2d):
            torch.nn.init.normal_(m.cross_attn.to_out.weight, std=0.1)
    return first, clip, model


def test_config_needs_a_context_and_valid_settings():
    with pytest.raises(ValueError, match="context_dim"):
        ldm.LDMConfig(unet=UNetConfig(in_channels=4, image_size=8, channel_mult=(1, 2)))
    with pytest.raises(ValueError, match="p_uncond"):
        ldm.LDMConfig(unet=_unet(), p_uncond=1.0)
    with pytest.raises(ValueError, match="schedule"):
        ldm.LDMConfig(unet=_unet(), schedule="quadratic")
    with pytest.raises(ValueError, match="text_layer counts"):
        ldm.LDMConfig(unet=_unet(), text_layer=1)
    cfg = ldm.LDMConfig.preset(context_dim=32)
    assert cfg.unet.context_dim == 32 and cfg.unet.in_channels == 4 and cfg.unet.image_size == 8


def test_training_scales_latents_to_unit_std_and_stores_the_null_context():
    first, clip, model = _parts()
    latents = 3.0 * torch.randn(12, 4, 8, 8)
    contexts = torch.randn(12, 16, 16)
    null = torch.randn(16, 16)
    info = ldm.train_ldm(model, latents, contexts, null)
    assert (latents * model.scale).std().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.equal(model.null_context, null)
    assert len(info["history"]["loss"]) > 0
    with pytest.raises(ValueError, match="one context each"):
        ldm.train_ldm(model, latents, contexts[:5], null)


def test_text_states_match_clip_and_the_empty_caption_is_a_context():
    _, clip, _ = _parts()
    states = ldm.text_states(clip, ["a red circle", "two blue squares", ""])
    assert states.shape == (3, clip.cfg.max_len, clip.cfg.text_dim)
    with torch.no_grad():
        torch.testing.assert_close(states[:1], clip.encode_text(["a red circle"])[0])
    # one block earlier: the tower run without its last block, through the same final LayerNorm
    blocks = len(clip.text.blocks)
    early = ldm.text_states(clip, ["a red circle"], layer=-2)
    with torch.no_grad():
        x = clip.text.token(clip.tokenize(["a red circle"])) + clip.text.position[: clip.cfg.max_len]
        for block in clip.text.blocks[: blocks - 1]:
            x = block(x)
        torch.testing.assert_close(early, clip.text.norm(x))
    assert not torch.allclose(early, states[:1])
    with pytest.raises(ValueError, match="layer must lie in"):
        ldm.text_states(clip, ["a red circle"], layer=-(blocks + 2))


def test_generate_decodes_guided_ddim_latents():
    first, clip, model = _parts()
    captions = ["a red circle", "two blue squares", "a green triangle"]
    images, z = ldm.generate(model, first, clip, captions, guidance_scale=3.0, num_steps=4, seed=5, return_latents=True)
    assert images.shape == (3, 3, 32, 32) and z.shape == (3, 4, 8, 8)
    assert images.abs().max() <= 1.0
    # the same thing by hand: guided DDIM on latents, unscaled, decoded
    cond = ldm.text_states(clip, captions, layer=model.cfg.text_layer)  # the layer the model reads
    uncond = model.null_context.expand(3, -1, -1)
    out = ddim_sample(model, model.schedule, (3, 4, 8, 8), num_steps=4, cond=cond, uncond=uncond, guidance_scale=3.0,
                      generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, out.sample / model.scale)
    with torch.no_grad():
        torch.testing.assert_close(images, first.decode(z).clamp(-1, 1))
    # guidance changes the samples; the unguided ones differ from them
    plain = ldm.generate(model, first, clip, captions, guidance_scale=1.0, num_steps=4, seed=5)
    assert not torch.allclose(plain, images)
    with pytest.raises(ValueError, match="sampler"):
        ldm.generate(model, first, clip, captions, sampler="euler")


def test_cross_attention_map_is_what_the_block_applies():
    torch.manual_seed(0)
    block = AttentionBlock2d(8, heads=2, groups=4, context_dim=6)
    torch.nn.init.normal_(block.cross_attn.to_out.weight, std=0.3)
    x, context = torch.randn(2, 8, 4, 4), torch.randn(2, 5, 6)
    w = block.cross_attention_map(x, context)  # b heads (h w) m
    assert w.shape == (2, 2, 16, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 16))
    # the block's cross-attention term equals W_o (weights @ V): rebuild it from the map
    before = block._after_self_attention(x)
    v = rearrange(block.cross_attn.to_v(context), "b m (h d) -> b h m d", h=2)
    term = block.cross_attn.to_out(rearrange(w @ v, "b h n d -> b n (h d)"))
    expected = rearrange(before + term, "b (h w) c -> b c h w", h=4)
    torch.testing.assert_close(block(x, context), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no cross-attention"):
        AttentionBlock2d(8, heads=2, groups=4).cross_attention_map(x, context)


def test_cross_attention_maps_per_token():
    _, clip, model = _parts()
    context = ldm.text_states(clip, ["a red circle", "two blue squares"])
    maps = ldm.cross_attention_maps(model, torch.randn(2, 4, 8, 8), 500, context)
    assert maps.shape == (2, clip.cfg.max_len, 8, 8)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 8, 8))
    assert ldm.cross_attention_maps(model, torch.randn(2, 4, 8, 8), 500, context, resolution=4).shape == (2, 16, 4, 4)
    with pytest.raises(ValueError, match="no cross-attention block"):
        ldm.cross_attention_maps(model, torch.randn(2, 4, 8, 8), 500, context, resolution=2)


def test_weights_digest_names_the_exact_weights():
    first, clip, _ = _parts()
    d = zoo.weights_digest(clip)
    assert d == zoo.weights_digest(clip) and len(d) == 16
    with torch.no_grad():
        clip.logit_scale += 1e-3  # a 0-dim parameter changes the digest too
    assert zoo.weights_digest(clip) != d
    assert zoo.weights_digest(first) != zoo.weights_digest(first.to(torch.bfloat16))


def test_generate_ddpm_takes_either_variance_as_ddpm_sample_does():
    from genlib.diffusion import ddpm_sample
    first, clip, model = _parts()
    captions = ["a red circle", "two blue squares"]
    cond = ldm.text_states(clip, captions, layer=model.cfg.text_layer)
    got = {}
    for variance in ("fixed_small", "fixed_large"):
        _, got[variance] = ldm.generate(model, first, clip, captions, sampler="ddpm", variance=variance, num_steps=4,
                                        seed=2, return_latents=True)
        out = ddpm_sample(model, model.schedule, (2, 4, 8, 8), variance=variance, num_steps=4, cond=cond,
                          generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(got[variance], out.sample / model.scale)
    assert not torch.allclose(got["fixed_small"], got["fixed_large"])
    with pytest.raises(ValueError, match="variance"):
        ldm.generate(model, first, clip, captions, sampler="ddpm", variance="learned", num_steps=4)


def _layout_model():
    torch.manual_seed(0)
    cfg = ldm.LayoutLDMConfig(unet=_unet(in_channels=5, out_channels=4), steps=3, batch_size=4)
    model = ldm.LayoutLatentDiffusion(cfg).eval()
    for p in model.unet.conv_out.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def test_layout_config_counts_the_concatenated_channels():
    with pytest.raises(ValueError, match="in_channels = out_channels \\+ layout_channels"):
        ldm.LayoutLDMConfig(unet=_unet())  # 4 in, no out: nothing left for the layout
    with pytest.raises(ValueError, match="in_channels = out_channels \\+ layout_channels"):
        ldm.LayoutLDMConfig(unet=_unet(in_channels=6, out_channels=4), layout_channels=1)
    cfg = ldm.LayoutLDMConfig.preset(context_dim=32, layout_channels=2)
    base = ldm.LDMConfig.preset(context_dim=32)
    assert (cfg.unet.in_channels, cfg.unet.out_channels) == (6, 4)
    assert cfg.steps == max(base.steps // 2, 1) and cfg.unet.base_channels == base.unet.base_channels
    assert ldm.LayoutLatentDiffusion(cfg).latent_shape == ldm.LatentDiffusion(base).latent_shape == (4, 8, 8)


def test_layout_masks_are_the_share_of_covered_pixels():
    images = -torch.ones(2, 3, 32, 32)
    images[0, 1, :4, :4] = 0.5          # one latent position (4x4 pixels) fully covered, in one channel
    images[1, :, 8:10, 12:16] = 1.0     # half of position (2, 3)
    masks = ldm.layout_masks(images, 8)
    assert masks.shape == (2, 1, 8, 8)
    assert masks[0, 0, 0, 0] == 1 and masks[0].sum() == 1
    assert masks[1, 0, 2, 3] == 0.5 and masks[1].sum() == 0.5
    with pytest.raises(ValueError, match="b 3 h w"):
        ldm.layout_masks(images[:, :1], 8)


def test_the_layout_reaches_the_unet_and_is_required():
    first, clip, _ = _parts()
    model = _layout_model()
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    context = torch.randn(2, 16, 16)
    layout = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        out = model(z, t, context, layout)
        torch.testing.assert_close(out, model.unet(torch.cat([z, layout], 1), t, context))
        assert not torch.allclose(out, model(z, t, context, torch.zeros_like(layout)))
    with pytest.raises(ValueError, match="needs layout"):
        model(z, t, context)
    # generate: each caption's sample reads its own layout, with guidance too
    captions = ["a red circle", "two blue squares"]
    a = ldm.generate(model, first, clip, captions, layout=layout, guidance_scale=2.0, num_steps=3, seed=1)
    swapped = ldm.generate(model, first, clip, captions, layout=layout.flip(0), guidance_scale=2.0, num_steps=3, seed=1)
    assert a.shape == (2, 3, 32, 32) and not torch.allclose(a, swapped)
    with pytest.raises(ValueError, match="exactly when the model is a LayoutLatentDiffusion"):
        ldm.generate(model, first, clip, captions, num_steps=3)
    with pytest.raises(ValueError, match="one layout per caption"):
        ldm.generate(model, first, clip, captions, layout=layout[:1], num_steps=3)
    # training takes one layout per latent, and only for a layout model
    info = ldm.train_ldm(model, torch.randn(6, 4, 8, 8), torch.randn(6, 16, 16), torch.randn(16, 16),
                         torch.rand(6, 1, 8, 8))
    assert len(info["history"]["loss"]) > 0
    with pytest.raises(ValueError, match="one layout per latent"):
        ldm.train_ldm(model, torch.randn(6, 4, 8, 8), torch.randn(6, 16, 16), torch.randn(16, 16))
