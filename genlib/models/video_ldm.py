"""Video-LDM (Blattmann et al. 2023; survey §12): a trained image latent diffusion model, frozen,
with temporal layers inserted after its spatial ones and only those trained on video latents.

The stages, at toy scale on 16x16 moving-shapes clips (each cached by :mod:`genlib.zoo`; the first
two live in :mod:`genlib.models.video_ldm_image` and are re-exported here)::

    E, D      a small frame autoencoder, 3x16x16 <-> 4x8x8       (the LDM's first stage, §12's E and D)
    l_theta   an image latent U-Net trained on single frames      (the frozen "image backbone"), text-to-image:
              it cross-attends to a frozen text encoder's states of the clip's caption
    l_phi     temporal layers after every spatial block, each mixed with the spatial output:
                  z_out = alpha_phi^i z + (1 - alpha_phi^i) z'      z' = l_phi^i(z): §12's mixing factor
              alpha = 1 skips the temporal layer: the image model, exactly
    c_S       context guidance: the masked latents m o z and the mask m, fed to the temporal layers,
              so one network predicts (first frames given) and interpolates (keyframes given)
    D^t       the decoder with temporal layers, fine-tuned on clips to cut flicker

The text reaches only the frozen spatial layers, as in Video-LDM: :class:`VideoCond` carries it
beside ``c_S``, the temporal layers learn with it (dropped some of the time), and :func:`sample`
guides towards it (classifier-free guidance, the empty caption as the null condition).

Layouts: clips in pixels ``b t c h w`` (the data world's), latent clips ``b c t h w``
(:mod:`genlib.nn.video`); the frozen image layers read ``(b t) c h w``, temporal convolutions
``b c t h w`` and temporal attention ``(b h w) t c`` (the rearrangements the survey writes in §12.1).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import NamedTuple

import torch
from einops import rearrange, repeat
from torch import nn

from genlib import config, train, zoo
from genlib.diffusion import ddim_sample, diffusion_loss
from genlib.diffusion.guidance import drop_condition
from genlib.models.clip import CLIP, load_shapes_clip
from genlib.models.ldm import text_states
from genlib.models.video_ldm_temporal import (  # noqa: F401  (re-exported for the chapter)
    TemporalConvBlock, TemporalDecoder, TemporalDecoderConfig, TemporalMixer, load_temporal_decoder,
)
from genlib.models.video_ldm_image import (  # noqa: F401  (the image stage; re-exported for the chapter)
    SIZE, FrameAutoencoder, FrameAutoencoderConfig, ImageLDM, ImageLDMConfig, clip_colour, colour_agreement,
    colour_votes, encode_clips, load_frame_autoencoder, load_image_ldm, pool_size, prompts, training_batch,
    training_clips,
)
from genlib.nn.attention import AttentionBlock2d
from genlib.nn.embeddings import batch_timesteps
from genlib.nn.resblock import ResBlock
from genlib.nn.video import check_video, from_frames, to_frames

KINDS = ("conv3d+attention", "attention-only")  # Fig. 65's two temporal designs
MASKS = ("none", "predict", "interpolate")


@torch.no_grad()
def decode_clips(decoder: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Latent clips ``b c t h w`` -> pixel clips ``b t 3 H W`` (on the CPU), clamped to [-1, 1].
    ``decoder`` is the image decoder (frame by frame) or a :class:`TemporalDecoder` (whole clips)."""
    check_video(z, "decode_clips")
    dev = config.module_device(decoder)
    if isinstance(decoder, TemporalDecoder):
        out = decoder.eval()(z.to(dev))
    else:
        out = from_frames(decoder.eval()(to_frames(z).to(dev)), z.shape[2])
    return rearrange(out.cpu().clamp(-1, 1), "b c t h w -> b t c h w")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoLDMConfig(train.Budget):
    """The temporal layers and their training. ``temporal``: ``"conv3d+attention"`` (a Conv3D block
    after every ResBlock, temporal attention after every attention block, Video-LDM's design) or
    ``"attention-only"`` (temporal attention in all those places: Fig. 65's ablation). ``masks``:
    the context kinds drawn uniformly per training clip; ``given`` frames are known in ``predict``;
    ``interpolate`` knows the first and the last frame. ``p_uncond``: how often a clip's caption is
    replaced by the empty one in training (a text-to-image backbone only), so the video model also
    makes the unconditional prediction guidance needs."""

    temporal: str = "conv3d+attention"
    kernel_t: int = 3
    kernel: int = 3
    alpha_init: float = 0.5
    context: bool = True
    masks: tuple[str, ...] = MASKS
    given: int = 2
    p_uncond: float = 0.1
    frames: int = 8
    steps: int = 500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 30

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "masks", tuple(self.masks))
        if self.temporal not in KINDS:
            raise ValueError(f"temporal must be one of {KINDS}, got {self.temporal!r}")
        if not self.masks or any(m not in MASKS for m in self.masks):
            raise ValueError(f"masks must be a non-empty subset of {MASKS}, got {self.masks}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")

    @classmethod
    def preset(cls, **overrides) -> "VideoLDMConfig":
        budget = config.pick(ci=dict(steps=6, batch_size=2, frames=4), cpu=dict(steps=220, batch_size=8),
                             gpu=dict(steps=1500, batch_size=32))
        return cls(**{**budget, **overrides})


class VideoCond(NamedTuple):
    """What the video denoiser is conditioned on: the context ``c_S`` (``b (c+1) t h w``, read by
    the temporal layers) and the caption's text states (``b n d``, read by the frozen spatial
    layers' cross-attention, the same for every frame of a clip). ``None``: no context / the empty
    caption."""

    context: torch.Tensor | None = None
    text: torch.Tensor | None = None


class VideoLDM(nn.Module):
    """``forward(z_t: b c t h w, t: b, cond: VideoCond | c_S | None) -> b c t h w``.

    Runs the frozen image U-Net's layers in order on the frames ``(b t) c h w``, and after each
    ResBlock and each attention block its :class:`TemporalMixer`. ``cond`` is a :class:`VideoCond`,
    or the context ``c_S`` alone (``b (c+1) t h w``: the empty caption). Only
    :meth:`temporal_parameters` learn; :meth:`set_alpha` pins every alpha (``1.0`` gives back the
    image model)."""

    def __init__(self, cfg: VideoLDMConfig, image: ImageLDM):
        super().__init__()
        unet_cfg = image.cfg.unet
        self.cfg, self.image = cfg, image
        self.schedule = image.schedule
        for p in image.parameters():
            p.requires_grad_(False)
        ctx = unet_cfg.in_channels + 1 if cfg.context else None
        self.mixers = nn.ModuleDict()
        self._keys: dict[int, str] = {}
        for name, m in image.unet.named_modules():
            if isinstance(m, (ResBlock, AttentionBlock2d)):
                width = m.out_channels if isinstance(m, ResBlock) else m.channels
                kind = "conv" if isinstance(m, ResBlock) and cfg.temporal == "conv3d+attention" else "attention"
                key = name.replace(".", "_")
                self.mixers[key] = TemporalMixer(width, kind, context_channels=ctx, kernel_t=cfg.kernel_t,
                                                 kernel=cfg.kernel, heads=unet_cfg.num_heads, groups=unet_cfg.groups,
                                                 alpha_init=cfg.alpha_init)
                self._keys[id(m)] = key

    def temporal_parameters(self) -> list[nn.Parameter]:
        return list(self.mixers.parameters())

    def alphas(self) -> torch.Tensor:
        return torch.stack([m.alpha().detach().cpu() for m in self.mixers.values()])

    def set_alpha(self, value: float | None) -> None:
        """Pin every mixing factor to ``value`` (``None``: use the learned ones again)."""
        for m in self.mixers.values():
            m.fixed_alpha = value

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: VideoCond | torch.Tensor | None = None) -> torch.Tensor:
        unet = self.image.unet
        check_video(z_t, "VideoLDM", unet.cfg.in_channels)
        context, text = cond if isinstance(cond, VideoCond) else (cond, None)
        b, c, frames, h, w = z_t.shape
        if context is not None and tuple(context.shape) != (b, c + 1, frames, h, w):
            raise ValueError(f"VideoLDM expects context c_S of layout b (c+1) t h w = {(b, c + 1, frames, h, w)}, "
                             f"got {tuple(context.shape)}")
        t = repeat(batch_timesteps(t, b, z_t.device, "VideoLDM"), "b -> (b f)", f=frames)  # each frame its clip's t
        text = self.image.text_or_null(text, b)  # b n d, or None for an unconditional backbone
        if text is not None:
            text = repeat(text, "b n d -> (b f) n d", f=frames)  # each frame its clip's caption

        def mix(block: nn.Module, x: torch.Tensor) -> torch.Tensor:  # l_phi^i after the frozen l_theta^i
            return self.mixers[self._keys[id(block)]](x, frames, context)

        # the image U-Net's own forward on the frames as a batch, its hook calling the mixers
        return from_frames(unet(to_frames(z_t), t, text, after_block=mix), frames)


# ----------------------------------------------------------------------------- context guidance (masks)


def context_mask(kind: str, frames: int, given: int = 2) -> torch.Tensor:
    """The frames a context kind gives, a bool ``t``: ``none`` (unconditional generation),
    ``predict`` (the first ``given`` frames, Fig. 63), ``interpolate`` (the first and last
    frames, the keyframes of Fig. 64)."""
    m = torch.zeros(frames, dtype=torch.bool)
    if kind == "predict":
        m[:given] = True
    elif kind == "interpolate":
        m[0] = m[-1] = True
    elif kind != "none":
        raise ValueError(f"context kind must be one of {MASKS}, got {kind!r}")
    return m


def make_context(z0: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``c_S = [m o z0, m]``: latents ``b c t h w`` with the unknown frames zeroed, and the mask as
    one more channel -> ``b (c+1) t h w``. ``known`` is bool ``t`` (one mask for all) or ``b t``."""
    check_video(z0, "make_context")
    b, c, t, h, w = z0.shape
    if known.dtype != torch.bool or known.shape not in ((t,), (b, t)):
        raise ValueError(f"known must be a bool tensor of layout t or b t with t={t}, got {known.dtype} {tuple(known.shape)}")
    m = known.expand(b, t).to(z0.device, z0.dtype)
    m = repeat(m, "b t -> b 1 t h w", h=h, w=w)
    return torch.cat([z0 * m, m], dim=1)


def random_masks(cfg: VideoLDMConfig, b: int, generator: torch.Generator) -> torch.Tensor:
    """One mask per clip (``b t`` bool), its kind drawn uniformly from ``cfg.masks``."""
    kinds = torch.randint(len(cfg.masks), (b,), generator=generator).tolist()
    return torch.stack([context_mask(cfg.masks[k], cfg.frames, cfg.given) for k in kinds])


def train_video_ldm(model: VideoLDM, latents: torch.Tensor, text: torch.Tensor | None = None) -> dict:
    """Train only the temporal layers (and alphas, context convs) with the LDM objective on scaled
    latent clips, every clip with a random context mask and (for a text-to-image backbone) its
    caption's states ``text: b n d``, dropped to the empty caption with probability ``p_uncond``::

        argmin_phi E || y - f_{theta,phi}(z_tau; c, tau) ||^2     (survey §12.1, over all frames)

    ``y`` is the image model's target (``epsilon`` in Video-LDM, ``v`` in this toy).
    """
    cfg, image = model.cfg, model.image
    check_video(latents, "train_video_ldm", image.cfg.unet.in_channels)
    if (text is not None) != image.cfg.conditional or (text is not None and len(text) != len(latents)):
        raise ValueError("a text-to-image backbone trains with one caption's states per clip (b n d), "
                         "an unconditional one without")
    z0 = latents[:, :, :cfg.frames] * image.scale.item()
    masks, drops = torch.Generator().manual_seed(cfg.seed + 1), torch.Generator().manual_seed(cfg.seed + 2)
    null = image.null_text.cpu() if text is not None else None  # the empty caption's states

    def with_cond(b, _: torch.Generator):
        z, states = b if text is not None else (b, None)
        context = make_context(z, random_masks(cfg, len(z), masks)) if cfg.context else None
        if states is not None:  # the caption dropped with probability p_uncond (classifier-free guidance)
            states = drop_condition(states, null, cfg.p_uncond, drops)
        return z, VideoCond(context, states)

    batch = train.random_batches(z0 if text is None else (z0, text), cfg.batch_size, seed=cfg.seed, transform=with_cond)

    def loss(m: VideoLDM, b):
        return diffusion_loss(m, m.schedule, b[0], prediction_type=m.image.cfg.prediction_type, cond=b[1])

    history = train.fit(model, loss, batch, cfg.steps, lr=cfg.lr, warmup=cfg.warmup, grad_clip=1.0, seed=cfg.seed,
                        desc=f"Video-LDM temporal layers ({cfg.temporal})")
    return {"history": history.to_dict(), "alphas": model.alphas().tolist()}


def load_video_ldm(image: ImageLDM, ae: FrameAutoencoder, cfg: VideoLDMConfig | None = None, *,
                   clip: CLIP | None = None, **overrides) -> VideoLDM:
    """Temporal layers trained on top of the frozen ``image`` model, on latent clips of ``ae`` and,
    for a text-to-image ``image``, their prompts' states from ``clip``'s frozen text tower (default:
    the profile's shapes CLIP; it must be the one ``image`` was trained with); cached."""
    cfg = cfg or VideoLDMConfig.preset(**overrides)
    clip = (clip or load_shapes_clip()) if image.cfg.conditional else None
    n = pool_size()

    def fit(model: VideoLDM) -> dict:
        batch = training_batch(n, cfg.frames)
        text = None if clip is None else text_states(clip, prompts(batch)).cpu()
        return train_video_ldm(model, encode_clips(ae, batch.videos), text)

    extra = {"image": zoo.weights_digest(image), "image_cfg": zoo.to_json(image.cfg), "autoencoder": zoo.weights_digest(ae),
             "clips": n}
    if clip is not None:
        extra["text_encoder"] = zoo.weights_digest(clip)
    return zoo.get_or_train("video-ldm-temporal", lambda c: VideoLDM(c, copy.deepcopy(image)), fit, cfg,
                            extra=extra).annotated()


@torch.no_grad()
def sample(model: VideoLDM, n: int, *, known: torch.Tensor | None = None, z_known: torch.Tensor | None = None,
           text: torch.Tensor | None = None, guidance_scale: float = 1.0, num_steps: int = 50, eta: float = 0.0,
           seed: int = 0) -> torch.Tensor:
    """Scaled latent clips ``n c t h w`` by DDIM with context guidance: ``known`` (bool ``t``) marks
    the frames given in ``z_known`` (scaled latents ``n c t h w``); without them, no context.
    Given frames are copied into the result (the model also generates them, from the context).
    ``text`` (``n m d``, a caption's states per clip; ``None``: the empty caption) conditions a
    text-to-image backbone, with classifier-free guidance ``pred_u + s (pred_c - pred_u)`` of scale
    ``guidance_scale`` (``s = 1``: the conditional prediction alone), the empty caption as the
    unconditional input and the same context in both."""
    c, side = model.image.cfg.unet.in_channels, model.image.cfg.unet.image_size
    frames = model.cfg.frames if z_known is None else z_known.shape[2]
    dev = config.module_device(model)
    context = None
    if model.cfg.context:
        if known is None:
            known, z_known = torch.zeros(frames, dtype=torch.bool), torch.zeros(n, c, frames, side, side)
        if z_known is None or z_known.shape[0] != n:
            raise ValueError(f"z_known must hold n={n} latent clips b c t h w to go with known")
        context = make_context(z_known.to(dev), known)
    elif known is not None:
        raise ValueError("this Video-LDM was trained without context guidance (cfg.context=False)")
    if text is not None and tuple(text.shape[:1]) != (n,):
        raise ValueError(f"text must hold one caption's states per clip (n={n}), got shape {tuple(text.shape)}")
    cond = VideoCond(context, None if text is None else text.to(dev))
    uncond = VideoCond(context, None) if text is not None and guidance_scale != 1.0 else None
    model.eval()
    out = ddim_sample(model, model.schedule, (n, c, frames, side, side), num_steps=num_steps, eta=eta,
                      prediction_type=model.image.cfg.prediction_type, cond=cond, uncond=uncond,
                      guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                      device=dev).sample.cpu()
    if known is not None and known.any():
        out[:, :, known] = z_known[:, :, known].cpu()
    return out


@torch.no_grad()
def heldout_loss(model: VideoLDM, z0: torch.Tensor, cond: VideoCond | torch.Tensor | None = None, *,
                 repeats: int = 4, seed: int = 1234) -> float:
    """The diffusion loss on held-out scaled latent clips ``z0`` under ``cond`` (as
    :meth:`VideoLDM.forward` takes it), with the same ``t`` and noise for every model compared (a
    lower number: a better denoiser of these clips)."""
    dev = config.module_device(model)
    g = torch.Generator().manual_seed(seed)
    cond = train.to_device(cond, dev)
    model.eval()
    total = 0.0
    for _ in range(repeats):
        total += diffusion_loss(model, model.schedule, z0.to(dev), prediction_type=model.image.cfg.prediction_type,
                                cond=cond, generator=g).item()
    return total / repeats
