"""VideoGPT (survey §11; Yan et al. 2021): a 3D VQ-VAE, then a GPT over its code volume.

Stage one turns a clip into a ``t' x h' x w'`` volume of code indices and back::

    clips  b t c h w  --(rearrange)-->  b c t h w  --enc-->  z_e  b d t' h' w'
    z_q = e_k,  k = argmin_j ||z_e - e_j||                       (eq. 5, 7; VectorQuantizer, EMA codebook)
    x_hat = dec(z_q)  b c t h w  --(rearrange)-->  b t c h w
    loss = ||x - x_hat||^2 + beta ||z_e - sg[e]||^2              (eq. 8; the EMA update replaces the codebook term)

The encoder is strided 3D convolutions (each halves t, h, w or only h, w), then *attention
residual blocks* (VideoGPT's Fig. 54 block, :class:`AttentionResBlock`); the decoder mirrors it
with transposed 3D convolutions. The public API takes and returns clips in the data worlds'
layout ``b t c h w``; inside, the convolutions read ``b c t h w``.

Stage two (:class:`VideoPrior`) reads the code volume as one sequence in raster order, time
slowest (``b t h w -> b (t h w)``), after a start token ``K``::

    tokens = [K, s_0, ..., s_{t'h'w'-1}]        log p(s) = sum_i log p(s_i | s_<i)   (iGPT-style)

so the target of each step is the next *code*, not the next frame. Continuation from a first frame
gives the first latent frame's ``h' w'`` codes as the prefix and samples the rest. The encoder's 3D
kernels and temporal attention let every code see the whole clip, so chapter 11 takes the prefix
from a *still* clip (the first frame repeated), which holds nothing of the frames after it.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from einops import rearrange

from genlib import config, train, zoo
from genlib.data import moving
from genlib.models.vqvae import VQVAE
from genlib.nn.quantize import Quantized, VectorQuantizer
from genlib.nn.transformer import GPT, GPTConfig
from genlib.nn.video import CHANNELS_FIRST, AxialAttention3d, check_video

CLIPS = "b t c h w"  # the public layout of clips (the data worlds' layout)


def check_clips(x: torch.Tensor, fn: str, channels: int = 3) -> None:
    """Raise ``ValueError`` unless ``x`` is a clip batch ``b t c h w`` with ``c = channels``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[2] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{fn} expects clips of layout {CLIPS} with c={channels}, got {shape}")


@dataclasses.dataclass(frozen=True)
class VideoVQVAEConfig:
    """``hidden`` channels, ``down_t`` / ``down_hw`` halvings of time / of each frame side,
    ``blocks`` attention residual blocks on each side, a codebook of ``num_codes`` codes of
    dimension ``code_dim`` (EMA updates, dead-code restarts)."""

    hidden: int = 32
    heads: int = 2
    down_t: int = 1
    down_hw: int = 2
    blocks: int = 1
    code_dim: int = 16
    num_codes: int = 64
    beta: float = 0.25
    decay: float = 0.99
    restart_dead: bool = True
    dead_after: int = 20

    @classmethod
    def preset(cls) -> "VideoVQVAEConfig":
        """The active profile's 3D VQ-VAE: 8x16x16 clips -> 4x4x4 codes (t/2, h/4, w/4)."""
        return cls(hidden=config.pick(ci=8, cpu=32, gpu=64), heads=2, down_t=1, down_hw=2,
                   blocks=config.pick(ci=1, cpu=1, gpu=2), code_dim=16, num_codes=config.pick(ci=16, cpu=64, gpu=128))

    @property
    def factors(self) -> tuple[int, int]:
        """How much the encoder shrinks ``(t, h and w)``."""
        return 2**self.down_t, 2**self.down_hw

    def latent_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        ft, fs = self.factors
        if t % ft or h % fs or w % fs:
            raise ValueError(f"clips of {t}x{h}x{w} do not divide by the factors t/{ft}, h,w/{fs}")
        return t // ft, h // fs, w // fs


class AttentionResBlock(nn.Module):
    """VideoGPT's attention residual block (Fig. 54) on ``b c t h w``::

        y = x + Axial(h),   h = ReLU(N(conv1x1x1(ReLU(N(conv3x3x3(ReLU(N(x))))))))
        Axial(h) = h + Att_t(LN h) + Att_h(LN h) + Att_w(LN h)     (the three axes summed)

    The paper's norm ``N`` is BatchNorm; GroupNorm here, so a clip's output does not depend on the
    rest of its batch. The 3x3x3 conv halves the width, the 1x1x1 conv restores it.
    """

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        mid = max(channels // 2, 1)
        self.convs = nn.Sequential(
            nn.GroupNorm(1, channels), nn.ReLU(), nn.Conv3d(channels, mid, 3, padding=1, bias=False),
            nn.GroupNorm(1, mid), nn.ReLU(), nn.Conv3d(mid, channels, 1, bias=False),
            nn.GroupNorm(1, channels), nn.ReLU(),
        )
        self.axial = AxialAttention3d(channels, heads, parallel=True, layout=CHANNELS_FIRST)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, "AttentionResBlock")
        return x + self.axial(self.convs(x))


def _strides(cfg: VideoVQVAEConfig) -> list[tuple[int, int]]:
    """(stride in t, stride in h and w) of each down- (and, reversed, up-) sampling layer."""
    return [(2 if i < cfg.down_t else 1, 2 if i < cfg.down_hw else 1) for i in range(max(cfg.down_t, cfg.down_hw))]


class VideoEncoder(nn.Module):
    """``b 3 t h w -> b code_dim t' h' w'``: strided 3x3x3 convs, attention residual blocks, 1x1x1 conv."""

    def __init__(self, cfg: VideoVQVAEConfig):
        super().__init__()
        layers, c_in = [], 3
        for st, ss in _strides(cfg):
            layers += [nn.Conv3d(c_in, cfg.hidden, 3, stride=(st, ss, ss), padding=1), nn.ReLU()]
            c_in = cfg.hidden
        layers += [AttentionResBlock(c_in, cfg.heads) for _ in range(cfg.blocks)]
        layers += [nn.GroupNorm(1, c_in), nn.ReLU(), nn.Conv3d(c_in, cfg.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, "VideoEncoder", 3)
        return self.net(x)


class VideoDecoder(nn.Module):
    """``b code_dim t' h' w' -> b 3 t h w``: the encoder reversed, transposed convs upsampling."""

    def __init__(self, cfg: VideoVQVAEConfig):
        super().__init__()
        c = cfg.hidden
        layers: list[nn.Module] = [nn.Conv3d(cfg.code_dim, c, 1)]
        layers += [AttentionResBlock(c, cfg.heads) for _ in range(cfg.blocks)]
        layers += [nn.GroupNorm(1, c), nn.ReLU()]
        ups = _strides(cfg)[::-1]
        for i, (st, ss) in enumerate(ups):
            kt, pt = (4, 1) if st == 2 else (3, 1)  # kernel 4, stride 2, padding 1 doubles; 3/1/1 keeps
            ks = 4 if ss == 2 else 3
            c_out = 3 if i == len(ups) - 1 else c
            layers.append(nn.ConvTranspose3d(c, c_out, (kt, ks, ks), stride=(st, ss, ss), padding=(pt, 1, 1)))
            if i < len(ups) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_video(z, "VideoDecoder")
        return self.net(z)


@dataclasses.dataclass
class VideoVQVAEOutput:
    recon: torch.Tensor  # b t c h w
    z_e: torch.Tensor    # b d t' h' w'
    quant: Quantized     # z_q, indices (b t' h' w'), losses, usage


class VideoVQVAE(nn.Module):
    """The 3D VQ-VAE of stage one (module doc). Clips in and out are ``b t c h w`` in [-1, 1]."""

    def __init__(self, cfg: VideoVQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VideoEncoder(cfg)
        self.quantizer = VectorQuantizer(cfg.num_codes, cfg.code_dim, beta=cfg.beta, ema=True, decay=cfg.decay,
                                         restart_dead=cfg.restart_dead, dead_after=cfg.dead_after)
        self.decoder = VideoDecoder(cfg)

    def forward(self, clips: torch.Tensor) -> VideoVQVAEOutput:
        check_clips(clips, "VideoVQVAE")
        self.cfg.latent_shape(clips.shape[1], clips.shape[3], clips.shape[4])  # raises if the factors do not divide
        z_e = self.encoder(rearrange(clips, "b t c h w -> b c t h w"))
        q = self.quantizer(z_e)
        return VideoVQVAEOutput(rearrange(self.decoder(q.z_q), "b c t h w -> b t c h w"), z_e, q)

    # Eq. 8 exactly as chapter 04's image VQ-VAE computes it (clips in place of images); with the
    # EMA codebook the quantiser's loss is the commitment term alone.
    loss = VQVAE.loss

    @torch.no_grad()
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips ``b t c h w`` -> code indices ``b t' h' w'``."""
        check_clips(clips, "VideoVQVAE.encode")
        return self.quantizer.codes_for(self.encoder(rearrange(clips, "b t c h w -> b c t h w")))

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``b t' h' w'`` -> clips ``b t c h w``."""
        if indices.ndim != 4:
            raise ValueError(f"decode_indices expects code volumes of layout b t h w, got {tuple(indices.shape)}")
        return rearrange(self.decoder(self.quantizer.embed(indices, "b c t h w")), "b c t h w -> b t c h w")


# ----------------------------------------------------------------------------- stage two


@dataclasses.dataclass(frozen=True)
class VideoPriorConfig:
    """A GPT over ``t x h x w`` code volumes of a first stage with ``num_codes`` codes."""

    num_codes: int
    t: int = 4
    h: int = 4
    w: int = 4
    dim: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.0

    @classmethod
    def preset(cls, first: VideoVQVAEConfig) -> "VideoPriorConfig":
        """The active profile's prior over the code volumes of the first stage ``first``."""
        t, h, w = first.latent_shape(FRAMES, SIZE, SIZE)
        return cls(num_codes=first.num_codes, t=t, h=h, w=w, dim=config.pick(ci=32, cpu=64, gpu=256), heads=4,
                   layers=config.pick(ci=1, cpu=2, gpu=6))

    @property
    def length(self) -> int:
        return self.t * self.h * self.w

    def gpt(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.num_codes + 1, block_size=1 + self.length, dim=self.dim, heads=self.heads,
                         layers=self.layers, dropout=self.dropout)


class VideoPrior(nn.Module):
    """``p(s)`` over code volumes ``b t h w`` read in raster order, time slowest (module doc)."""

    def __init__(self, cfg: VideoPriorConfig):
        super().__init__()
        self.cfg = cfg
        self.gpt = GPT(cfg.gpt())

    def sequence(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes: b t h w`` -> tokens ``b (1 + t h w)``: the start token ``K``, then the codes in
        raster order with time slowest, so the first ``h w`` codes are the first latent frame."""
        cfg = self.cfg
        if codes.ndim != 4 or tuple(codes.shape[1:]) != (cfg.t, cfg.h, cfg.w):
            raise ValueError(f"code volumes must have layout b t h w = b {cfg.t} {cfg.h} {cfg.w}, got {tuple(codes.shape)}")
        config.check_range(codes, 0, cfg.num_codes - 1, f"code indices must lie in [0, {cfg.num_codes - 1}]")
        start = torch.full((len(codes), 1), cfg.num_codes, dtype=torch.long, device=codes.device)
        return torch.cat([start, rearrange(codes.long(), "b t h w -> b (t h w)")], dim=1)

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean ``-log p(s_i | s_<i)`` over all codes of the volume, in nats."""
        return self.gpt.loss(self.sequence(codes))

    @torch.no_grad()
    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """``-log p(s)`` of each code volume, in nats: ``b``."""
        tokens = self.sequence(codes)
        logp = self.gpt(tokens[:, :-1]).float().log_softmax(-1)
        return -logp.gather(-1, tokens[:, 1:, None])[..., 0].sum(1)

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor | None = None, n: int | None = None, *, temperature: float = 1.0,
               top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Code volumes ``b t h w``. ``prefix: b t0 h w`` (whole latent frames, kept exactly) or
        ``None`` with ``n`` volumes to draw from scratch; the remaining codes are drawn one by one
        (:meth:`~genlib.nn.transformer.GPT.generate`, CPU ``generator``)."""
        cfg = self.cfg
        dev = next(self.parameters()).device
        if prefix is None:
            if n is None or n < 1:
                raise ValueError("sample needs a prefix b t0 h w or a number n >= 1 of volumes")
            prefix = torch.zeros(n, 0, cfg.h, cfg.w, dtype=torch.long)
        if prefix.ndim != 4 or tuple(prefix.shape[2:]) != (cfg.h, cfg.w) or prefix.shape[1] > cfg.t:
            raise ValueError(f"prefix must have layout b t0 h w with t0 <= {cfg.t}, h w = {cfg.h} {cfg.w}; "
                             f"got {tuple(prefix.shape)}")
        start = torch.full((len(prefix), 1), cfg.num_codes, dtype=torch.long)
        tokens = torch.cat([start, rearrange(prefix.long().cpu(), "b t h w -> b (t h w)")], dim=1).to(dev)
        out = self.gpt.generate(tokens, cfg.length + 1 - tokens.shape[1], temperature=temperature, top_k=top_k,
                                vocab=cfg.num_codes, generator=generator)
        return rearrange(out[:, 1:], "b (t h w) -> b t h w", t=cfg.t, h=cfg.h, w=cfg.w)


@torch.no_grad()
def roll_out(prior: VideoPrior, first: VideoVQVAE, n: int, rounds: int, keep: int, *,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips past the prior's training length, by a sliding prefix: ``(codes n (rounds + 1) t' h' w',
    windows n (rounds + 1) t c h w)``.

    Window 0 is an unconditional sample; window ``r`` is sampled with the last ``keep`` latent frames
    of window ``r - 1`` as its prefix, so each window is a volume of the length the prior was trained
    on, and window ``r`` starts ``r (t' - keep)`` latent frames into the long clip. Each window is
    decoded on its own (``first``). :func:`stitch` joins them into one long clip.
    """
    t = prior.cfg.t
    if not 0 < keep < t or rounds < 0 or n < 1:
        raise ValueError(f"need n >= 1, rounds >= 0 and a prefix of 0 < keep < {t} latent frames, "
                         f"got n={n}, rounds={rounds}, keep={keep}")
    volumes = [prior.sample(n=n, generator=generator).cpu()]
    for _ in range(rounds):
        volumes.append(prior.sample(volumes[-1][:, t - keep:], generator=generator).cpu())
    dev = config.module_device(first)
    windows = [first.decode_indices(v.to(dev)).clamp(-1, 1).cpu() for v in volumes]
    return torch.stack(volumes, 1), torch.stack(windows, 1)


def stitch(windows: torch.Tensor, keep_frames: int) -> torch.Tensor:
    """``b r t c h w -> b (t + (r - 1)(t - keep_frames)) c h w``: window 0 whole, then the frames
    each later window adds after its ``keep_frames``-frame prefix."""
    if windows.ndim != 6 or not 0 <= keep_frames < windows.shape[2]:
        raise ValueError(f"stitch expects windows of layout b r t c h w and 0 <= keep_frames < t, got "
                         f"{tuple(windows.shape)} and {keep_frames}")
    return torch.cat([windows[:, 0], *[windows[:, r, keep_frames:] for r in range(1, windows.shape[1])]], 1)


# ----------------------------------------------------------------------------- chapter 11's models, by profile

FRAMES, SIZE = 8, 16  # moving-shapes clips of 8 frames at 16x16: 4x4x4 = 64 codes, a sequence a CPU samples quickly


@dataclasses.dataclass(frozen=True)
class Training:
    """``steps`` of AdamW at ``lr`` on minibatches of ``batch_size`` clips drawn from a pool of
    ``clips`` moving-shapes clips (data seed ``data_seed``)."""

    steps: int
    batch_size: int
    lr: float
    clips: int
    data_seed: int = 1

    @classmethod
    def preset(cls, stage: str) -> "Training":
        """The active profile's budget for ``stage``: ``"vqvae"`` (the 3D VQ-VAE) or ``"prior"``."""
        if stage not in ("vqvae", "prior"):
            raise ValueError(f"unknown stage {stage!r}; expected 'vqvae' or 'prior'")
        steps = config.pick(ci=20, cpu=1200, gpu=4000) if stage == "vqvae" else config.pick(ci=30, cpu=1500, gpu=4000)
        batch = config.pick(ci=8, cpu=16, gpu=64) if stage == "vqvae" else config.pick(ci=16, cpu=32, gpu=128)
        return cls(steps=steps, batch_size=batch, lr=config.pick(ci=2e-3, cpu=2e-3, gpu=1e-3),
                   clips=config.pick(ci=64, cpu=2000, gpu=10000))


def clip_pool(n: int, seed: int) -> torch.Tensor:
    """``n`` moving-shapes clips ``n t c h w`` (the chapter's size and length)."""
    return moving.sample(n, frames=FRAMES, size=SIZE, seed=seed).videos


def load_vqvae(seed: int = 0) -> VideoVQVAE:
    """The profile's trained 3D VQ-VAE, from the model cache or trained now."""
    cfg, settings = VideoVQVAEConfig.preset(), Training.preset("vqvae")

    def fit(model: VideoVQVAE) -> dict:
        pool = clip_pool(settings.clips, settings.data_seed)
        return train.fit(model, lambda m, b: m.loss(b), train.random_batches(pool, settings.batch_size, seed=seed),
                         settings.steps,
                         lr=settings.lr, warmup=settings.steps // 20, seed=seed, desc="3D VQ-VAE").to_dict()

    return zoo.get_or_train("ch11-video-vqvae", VideoVQVAE, fit, cfg, extra=dataclasses.asdict(settings), seed=seed).annotated()


@torch.no_grad()
def encode_all(first: VideoVQVAE, clips: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Code volumes of many clips, batched: ``n t c h w -> n t' h' w'`` (on the CPU)."""
    dev = config.module_device(first)
    return torch.cat([first.encode(part.to(dev)).cpu() for part in clips.split(batch_size)])


def load_prior(first: VideoVQVAE, seed: int = 0) -> VideoPrior:
    """The profile's prior over ``first``'s code volumes (clips of data seed 2), from the model cache
    or trained now. The first stage's weights are part of the cache key."""
    cfg, settings = VideoPriorConfig.preset(first.cfg), Training.preset("prior")

    def fit(prior: VideoPrior) -> dict:
        codes = encode_all(first, clip_pool(settings.clips, settings.data_seed + 1))
        return train.fit(prior, lambda m, b: m.loss(b), train.random_batches(codes, settings.batch_size, seed=seed),
                         settings.steps,
                         lr=settings.lr, warmup=settings.steps // 20, seed=seed, desc="video prior").to_dict()

    extra = {"training": dataclasses.asdict(settings), "first_stage": zoo.checksum(first.state_dict())}
    return zoo.get_or_train("ch11-video-prior", VideoPrior, fit, cfg, extra=extra, seed=seed).annotated()
