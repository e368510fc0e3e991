"""Architecture diagrams drawn from genlib's own modules, so the picture cannot drift from the code.

:func:`architecture` walks a model's submodules and draws one box per layer a reader would name
(a ResBlock, an attention block, a down- or upsampling step, a temporal layer, a transformer
block), with its real channel counts, at the resolution it runs at, arrows for the data flow and
dashed arrows for the skips; :func:`architecture_blocks` returns the same boxes as a list of
:class:`Block` (what the tests compare with the module)::

    architecture(UNet(UNetConfig.preset()))             # levels as bands, skips, middle block
    architecture(VQGAN(VQGANConfig.preset()))           # encoder - quantiser - decoder, discriminator
    architecture(DiT(cfg))                              # patchify, N adaLN blocks, unpatchify
    architecture(VideoLDM(cfg, image))                  # each frozen block and its TemporalMixer
    architecture(inflate(unet))                         # Make-A-Video's (2+1)D U-Net
    architecture([base, sr])                            # a cascade (Imagen: base model + SR stages)
    architecture(load_ring_gan(pack=4))                 # G and D as two rows (GANPair; cGAN: label y too)
    architecture([vqvae, prior])                        # VideoGPT: 3D VQ-VAE and its GPT prior side by side
    architecture(ClipEvaluator(cfg))                    # chapter 10's (2+1)D clip classifier

A config is accepted where building its model is cheap (``architecture(UNetConfig.preset())``).
``genlib.viz`` stands apart from the models: it imports none of them and recognises genlib's
layers by their class names and attributes (``ResBlock.out_channels``, ``model.mixers``, ...).
Matplotlib draws everything (no Graphviz binary); :mod:`genlib.viz._diagram` places the boxes.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Any

from genlib.viz import _diagram as D
from genlib.viz._blocks import (Block, Plan, autoencoder_plan, class_name, conv2d_of, count_of, dit_plan,
                                unet_plan)
from genlib.viz._blocks_gan import gan_plan
from genlib.viz._blocks_video import clip_evaluator_plan, videogpt_plan
from genlib.viz.style import TEXT_WIDTH

__all__ = ["Block", "architecture", "architecture_blocks"]


def architecture(model: Any, *, image_size: int | None = None):
    """A Figure (at most ``TEXT_WIDTH`` wide, labels at ``FONT_SMALL``) of ``model``'s blocks.

    ``model``: a genlib U-Net (or a diffusion model holding one as ``.unet``), ``InflatedUNet``,
    ``VideoLDM``, ``DiT`` / ``DiTDiffusion``, ``VQVAE`` / ``VQGAN``, ``KLGAN``, ``VAE`` /
    ``Autoencoder``, a ``GANPair`` (chapter 05's ring GAN or conditional digits GAN),
    ``VideoVQVAE`` / ``VideoPrior`` or the list ``[vqvae, prior]`` (VideoGPT), ``ClipEvaluator``,
    a list of diffusion stages (a cascade), or the config of any of them but ``VideoLDM`` (which
    needs its image model). ``image_size`` labels the resolutions of autoencoders, whose modules
    accept any size (else ``full``, ``÷2``, ...); a VideoGPT pair takes its clip size from the
    prior's code volume."""
    plan = _plan(model, image_size)
    sheet = D.Sheet()
    width, height = plan.layout(sheet)
    return sheet.render(width, height, notes=plan.notes, skips=plan.skips)


def architecture_blocks(model: Any, *, image_size: int | None = None) -> list[Block]:
    """The boxes :func:`architecture` draws for ``model``, in the order it numbers them."""
    return list(_plan(model, image_size).blocks)


# ----------------------------------------------------------------------------- dispatch


def _plan(model: Any, image_size: int | None) -> Plan:
    """The full-label plan, or the compact one (short labels, output widths only) if the full one
    is wider than the page."""
    build = _builder(model, image_size)
    plan = build(False)
    width, _ = plan.layout(D.Sheet())
    return plan if width <= TEXT_WIDTH else build(True)


def _builder(model: Any, image_size: int | None):
    """``compact -> Plan`` for ``model``, chosen by what the model is."""
    if isinstance(model, (list, tuple)):
        stages = [_as_model(m) for m in model]
        kinds = [class_name(m) for m in stages]
        if sorted(kinds) == ["VideoPrior", "VideoVQVAE"]:  # VideoGPT's two stages, in either order
            vq, prior = (stages if kinds[0] == "VideoVQVAE" else stages[::-1])
            names = {**{id(m): "vqvae." + n if n else "vqvae" for n, m in vq.named_modules()},
                     **{id(m): "prior." + n if n else "prior" for n, m in prior.named_modules()}}
            return lambda compact: videogpt_plan(vq, prior, names, image_size, compact)
        return lambda compact: cascade_plan(stages)
    model = _as_model(model)
    names = _names(model)
    kind = class_name(model)
    if hasattr(model, "generator") and hasattr(model, "discriminator"):  # GANPair
        return lambda compact: gan_plan(model.generator, model.discriminator, names, compact)
    if kind == "VideoVQVAE":
        return lambda compact: videogpt_plan(model, None, names, image_size, compact)
    if kind == "VideoPrior":
        return lambda compact: videogpt_plan(None, model, names, None, compact)
    if kind == "ClipEvaluator":
        return lambda compact: clip_evaluator_plan(model, names, compact)
    if kind == "VideoLDM":
        return lambda compact: unet_plan(model.image.unet, names, compact, mixers=model.mixers, video="ldm")
    if kind == "InflatedUNet":
        return lambda compact: unet_plan(model.unet, names, compact, video="inflated")
    if kind == "UNet":
        return lambda compact: unet_plan(model, names, compact)
    if kind == "DiT" or class_name(getattr(model, "dit", None)) == "DiT":
        return lambda compact: dit_plan(getattr(model, "dit", model), names)
    image_size = image_size or getattr(getattr(model, "cfg", None), "image_size", None)
    if hasattr(model, "autoencoder") and hasattr(model, "discriminator"):  # VQGAN, KLGAN
        return lambda compact: autoencoder_plan(model.autoencoder, names, image_size, compact, model.discriminator)
    if hasattr(model, "encoder") and hasattr(model, "decoder"):  # VQVAE, KLAutoencoder, VAE, Autoencoder, ...
        return lambda compact: autoencoder_plan(model, names, image_size, compact)
    if class_name(getattr(model, "unet", None)) == "UNet":  # DDPM, TextToImage, SR3, ImageLDM, LatentDiffusion
        return lambda compact: unet_plan(model.unet, names, compact, outer=getattr(model, "cfg", None))
    raise TypeError(f"architecture does not know how to draw a {kind}; it draws genlib's U-Nets (and models "
                    f"holding one as .unet), InflatedUNet, VideoLDM, DiT, VQ-VAE/VQ-GAN/KL autoencoders, VAEs, "
                    f"GAN pairs, VideoGPT's VQ-VAE and prior, the clip evaluator and cascades (a list of stages)")


def _as_model(obj: Any) -> Any:
    """A module as it is; a config -> its model, built from the config's own module (``XConfig``
    -> ``X``). A diffusion config holding a ``UNetConfig`` gives a stand-in with ``.unet`` and
    ``.cfg`` (its text encoder's table or image model need not be loaded to draw the U-Net). A GAN
    config (``ToyGANConfig``, ``ConvGANConfig``) gives the ``GANPair`` of its module's generator and
    discriminator (``ToyGenerator`` and ``ToyDiscriminator``, ...), as its loader builds it."""
    if hasattr(obj, "named_modules"):
        return obj
    cfg_name = type(obj).__name__
    if not cfg_name.endswith("Config") or not dataclasses.is_dataclass(obj):
        raise TypeError(f"architecture expects a genlib model or config, got {cfg_name}")
    unet_cfg = getattr(obj, "unet", None)
    if type(unet_cfg).__name__ == "UNetConfig":
        unet = getattr(sys.modules[type(unet_cfg).__module__], "UNet")(unet_cfg)
        return types.SimpleNamespace(unet=unet, cfg=obj, named_modules=lambda: [("unet." + n if n else "unet", m)
                                                                                 for n, m in unet.named_modules()])
    model_name = {"KLAutoencoderConfig": "KLGAN"}.get(cfg_name, cfg_name.removesuffix("Config"))
    module = sys.modules[type(obj).__module__]
    prefix = model_name.removesuffix("GAN")
    pair = [getattr(module, n, None) for n in ("GANPair", f"{prefix}Generator", f"{prefix}Discriminator")]
    if model_name.endswith("GAN") and all(pair):
        return pair[0](pair[1](obj), pair[2](obj))
    cls = getattr(module, model_name, None)
    if cls is None:
        raise TypeError(f"no model class {model_name} beside {cfg_name}: build the model and pass it")
    try:
        return cls(obj)
    except TypeError as e:
        raise TypeError(f"{model_name} is not built from its config alone ({e}): build it and pass the model") from e


def _names(model: Any) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


# ----------------------------------------------------------------------------- cascades


def _unet_summary(unet: Any) -> tuple[str, list[int]]:
    """``("16→8→4", [16, 32, 32])``: the sides of a U-Net's levels and the width of each."""
    size, sizes, widths = unet.cfg.image_size, [unet.cfg.image_size], []
    for modules in unet.down:
        for m in modules:
            if class_name(m) == "Downsample":
                size //= 2
                sizes.append(size)
            elif class_name(m) == "ResBlock" and len(widths) < len(sizes):
                widths.append(m.out_channels)
    return "→".join(map(str, sizes)), widths


def cascade_plan(stages: list[Any]) -> Plan:
    """Diffusion stages in a row, each U-Net one box that summarises it (sides, widths, blocks),
    with the text encoder before a text-conditioned stage and the resize before an SR stage."""
    blocks: list[Block] = []
    for i, stage in enumerate(stages):
        unet, cfg = getattr(stage, "unet", None), getattr(stage, "cfg", None)
        if class_name(unet) != "UNet":
            raise TypeError(f"a cascade's stages are diffusion models holding a U-Net as .unet; stage {i} is "
                            f"a {class_name(stage)}")
        s, c_out = unet.cfg.image_size, conv2d_of(unet.conv_out).out_channels
        text = getattr(cfg, "text_encoder", None)
        if text is not None:  # the width of the token states: what the U-Net's cross-attention reads
            width = next((m.cross_attn.context_dim for m in unet.modules()
                          if class_name(m) == "AttentionBlock2d" and m.cross_attn is not None), None)
            enc = getattr(stage, "text", None)
            what = "MiniLM, frozen" if text == "minilm" else "text encoder\n(trained)"
            module = f"{i}.text" if enc is not None else ""  # MiniLM's states come from a table, not a submodule
            blocks += [Block("data", "caption"), Block("text-encoder", f"{what}\ntokens × {width}", module, width)]
        if hasattr(cfg, "low_size"):
            aug = f"\n+ noise aug\n({cfg.aug_levels} levels)" if getattr(cfg, "noise_aug", False) else ""
            blocks.append(Block("resize", f"bicubic\n{cfg.low_size}→{cfg.image_size}{aug}", "", 3, cfg.image_size))
        sizes, widths = _unet_summary(unet)
        n_res = count_of(unet, "ResBlock")
        attn = [m for m in unet.modules() if class_name(m) == "AttentionBlock2d"]
        n_cross = sum(m.cross_attn is not None for m in attn)
        what = "SR U-Net" if hasattr(cfg, "low_size") else ("base U-Net" if i == 0 else f"U-Net {i}")
        lines = [what, f"{sizes} px", "ch " + "·".join(map(str, widths)), f"{n_res} ResBlocks"]
        if attn:
            lines.append(f"{len(attn)} attn" + (f" ({n_cross} cross)" if n_cross else ""))
        blocks.append(Block("unet", "\n".join(lines), f"{i}.unet", widths[-1], s))
        blocks.append(Block("data", f"image\n{c_out}×{s}×{s}", "", c_out, s))
    items = [(i, b.kind, b.label) for i, b in enumerate(blocks)]

    def layout(sheet):
        _, right, bottom = D.chain(sheet, items, D.MARGIN, D.MARGIN, TEXT_WIDTH - 2 * D.MARGIN)
        return right + D.MARGIN, bottom + 0.05

    notes = ["Each U-Net box is one diffusion model, sampled to the end before the next stage starts; "
             "architecture(stage) draws one in full."]
    if any(hasattr(getattr(s, "cfg", None), "low_size") for s in stages):
        notes.append("A super-resolution stage reads x_t and the upsampled image concatenated; "
                     "the augmentation level is its class label.")
    return Plan(blocks, layout, notes)
