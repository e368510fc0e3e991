"""Video-LDM's temporal parts (survey §12): the temporal layers l_phi that are mixed into a frozen
image model by a learned factor, and the temporal decoder D^t, the image decoder with such layers.

:mod:`genlib.models.video_ldm` builds the video model from them (and re-exports them).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genlib import config, train, zoo
from genlib.models.video_ldm_image import FrameAutoencoder, encode_clips, pool_size, training_clips
from genlib.nn.convnets import Decoder
from genlib.nn.resblock import ResBlock
from genlib.nn.video import CHANNELS_FIRST, TemporalAttention, check_video, from_frames, to_frames


# ----------------------------------------------------------------------------- temporal layers (l_phi)


class TemporalConvBlock(nn.Module):
    """``b c t h w -> b c t h w``: ``x + Conv3d(SiLU(GN(Conv3d(SiLU(GN(x))))))``, a residual block of
    ``kernel_t x kernel x kernel`` 3D convolutions (Video-LDM's Conv3D temporal layer). The last
    conv starts at zero, so a fresh block is the identity."""

    def __init__(self, channels: int, kernel_t: int = 3, kernel: int = 3, groups: int = 8):
        super().__init__()
        pad = (kernel_t // 2, kernel // 2, kernel // 2)
        self.channels = channels
        self.norm1, self.norm2 = nn.GroupNorm(groups, channels), nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_t, kernel, kernel), padding=pad)
        self.conv2 = nn.Conv3d(channels, channels, (kernel_t, kernel, kernel), padding=pad)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, "TemporalConvBlock", self.channels)
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class TemporalMixer(nn.Module):
    """The temporal layer ``l_phi^i`` after one spatial layer, and §12's mixing factor::

        z  : (b t) c h w          the spatial layer's output (frames as a batch)
        z' = l_phi^i(z + E_c(c_S)) as b c t h w, back to (b t) c h w
        out = alpha z + (1 - alpha) z'         alpha = sigmoid(mix_logit) in (0, 1)

    ``E_c`` (zero-initialised conv) brings the context ``c_S`` (``b (c+1) t h w`` latents with mask,
    pooled to this layer's side) to the layer's width. :attr:`fixed_alpha` overrides the learned
    alpha (``1.0``: skip the temporal layer, the image model's output exactly)."""

    def __init__(self, channels: int, kind: str, *, context_channels: int | None, kernel_t: int = 3,
                 kernel: int = 3, heads: int = 4, groups: int = 8, alpha_init: float = 0.5):
        super().__init__()
        if kind == "conv":
            self.temporal = TemporalConvBlock(channels, kernel_t, kernel, groups)
        elif kind == "attention":
            # (b h w) t c, the identity at initialisation
            self.temporal = TemporalAttention(channels, heads, zero_init=True, layout=CHANNELS_FIRST)
        else:
            raise ValueError(f"temporal layer kind must be 'conv' or 'attention', got {kind!r}")
        if not 0.0 < alpha_init < 1.0:
            raise ValueError(f"alpha_init must lie in (0, 1), got {alpha_init}")
        self.mix_logit = nn.Parameter(torch.tensor(math.log(alpha_init / (1 - alpha_init))))
        self.context_in = None
        if context_channels:
            self.context_in = nn.Conv2d(context_channels, channels, 3, padding=1)
            nn.init.zeros_(self.context_in.weight)
            nn.init.zeros_(self.context_in.bias)
        self.fixed_alpha: float | None = None

    def alpha(self) -> torch.Tensor:
        if self.fixed_alpha is not None:
            return torch.tensor(self.fixed_alpha, device=self.mix_logit.device)
        return torch.sigmoid(self.mix_logit)

    def forward(self, z: torch.Tensor, frames: int, context: torch.Tensor | None = None) -> torch.Tensor:
        zv = from_frames(z, frames)  # (b t) c h w -> b c t h w
        if context is not None and self.context_in is not None:
            c_s = F.adaptive_avg_pool2d(to_frames(context), z.shape[-2:])  # c_S at this layer's side
            zv = zv + from_frames(self.context_in(c_s), frames)
        z_temporal = to_frames(self.temporal(zv))
        a = self.alpha()
        return a * z + (1 - a) * z_temporal  # alpha z + (1 - alpha) z'


# ----------------------------------------------------------------------------- temporal decoder (D^t)


@dataclasses.dataclass(frozen=True)
class TemporalDecoderConfig:
    """Temporal Conv3D layers after every ResBlock of the frozen decoder, trained to reconstruct
    clips from latents with independent per-frame noise of ``latent_noise`` times the latents' std
    (a stand-in for the frame-to-frame errors of generated latents; Video-LDM uses a temporal
    patch discriminator, omitted here)."""

    kernel_t: int = 3
    latent_noise: float = 0.3
    alpha_init: float = 0.5
    frames: int = 8
    steps: int = 200
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0

    @classmethod
    def preset(cls, **overrides) -> "TemporalDecoderConfig":
        budget = config.pick(ci=dict(steps=5, batch_size=2, frames=4), cpu=dict(steps=200, batch_size=8),
                             gpu=dict(steps=1000, batch_size=32))
        return cls(**{**budget, **overrides})


class TemporalDecoder(nn.Module):
    """``forward(z: b c t h w) -> b 3 t H W``: the image decoder's layers on frames, with a
    :class:`TemporalMixer` (Conv3D block) after each of its ResBlocks."""

    def __init__(self, cfg: TemporalDecoderConfig, decoder: Decoder):
        super().__init__()
        self.cfg, self.decoder = cfg, decoder
        for p in decoder.parameters():
            p.requires_grad_(False)
        groups = decoder.cfg.groups
        self.mixers = nn.ModuleDict({
            str(i): TemporalMixer(m.out_channels, "conv", context_channels=None, kernel_t=cfg.kernel_t, groups=groups,
                                  alpha_init=cfg.alpha_init)
            for i, m in enumerate(decoder.body) if isinstance(m, ResBlock)})

    def temporal_parameters(self) -> list[nn.Parameter]:
        return list(self.mixers.parameters())

    def set_alpha(self, value: float | None) -> None:
        for m in self.mixers.values():
            m.fixed_alpha = value

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d = self.decoder
        check_video(z, "TemporalDecoder", d.cfg.latent_channels)
        frames = z.shape[2]
        x = d.conv_in(to_frames(z))
        for i, module in enumerate(d.body):
            x = module(x)
            if str(i) in self.mixers:
                x = self.mixers[str(i)](x, frames)
        return from_frames(d.conv_out(d.norm_out(x)), frames)


def load_temporal_decoder(ae: FrameAutoencoder, cfg: TemporalDecoderConfig | None = None) -> TemporalDecoder:
    """``ae``'s decoder with trained temporal layers (encoder and decoder weights frozen); cached."""
    cfg = cfg or TemporalDecoderConfig.preset()
    n = pool_size()

    def fit(model: TemporalDecoder) -> dict:
        clips = training_clips(n, cfg.frames)
        latents = encode_clips(ae, clips)
        std = latents.std().item()
        pixels = rearrange(clips, "b t c h w -> b c t h w")

        def noisy(b: tuple[torch.Tensor, torch.Tensor], g: torch.Generator):
            z, x = b
            return z + cfg.latent_noise * std * torch.randn(z.shape, generator=g), x

        batch = train.random_batches((latents, pixels), cfg.batch_size, seed=cfg.seed, transform=noisy)

        history = train.fit(model, lambda m, b: F.l1_loss(m(b[0]), b[1]), batch, cfg.steps, lr=cfg.lr, grad_clip=1.0,
                            seed=cfg.seed, desc="temporal decoder (D^t)")
        return {"history": history.to_dict(), "latent_std": std}

    build = lambda c: TemporalDecoder(c, copy.deepcopy(ae.decoder))  # noqa: E731
    return zoo.get_or_train("video-ldm-decoder", build, fit, cfg, extra={"autoencoder": zoo.weights_digest(ae), "clips": n}).annotated()
