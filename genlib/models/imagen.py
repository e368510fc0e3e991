"""Imagen (Saharia et al. 2022; survey §9) at toy scale: a text-conditional pixel diffusion model
that cross-attends to a frozen pretrained text encoder, and an SR3 super-resolution stage with
noise conditioning augmentation (a two-stage cascade, survey §9.4-9.5).

* :class:`ImagenConfig`, :class:`TextToImage`, :func:`load_imagen`, :func:`generate` -- the
  text-to-image model. ``text_encoder="minilm"``: token states of the frozen all-MiniLM-L6-v2
  (our T5 stand-in, :mod:`genlib.nn.text_encoders`), looked up from a table computed once for
  every caption of the shapes grammar (:func:`caption_states`; ``layers=2`` keeps the states
  after MiniLM's first two layers, :class:`MiniLMLayers`, the smaller encoder of
  :func:`scaling_grid`, Fig. 41); ``"scratch"``: a small transformer trained jointly with the
  U-Net. Training drops the caption (replaces its states by
  the empty caption's) with probability ``p_uncond``, so one network gives both predictions
  classifier-free guidance combines.
* :func:`trace_thresholding`, :class:`ThresholdTrace` -- a sampled chain with every step's x0
  before and after (static or dynamic) thresholding, to measure how often and how much it acts.
* :class:`SR3Config`, :class:`SR3`, :func:`load_sr3`, :func:`super_resolve`, :func:`cascade` --
  super-resolution by iterative refinement: the low-resolution image, upsampled (bicubic), is
  concatenated channel-wise to ``x_t`` (Fig. 37). With ``noise_aug`` the low-resolution image is
  corrupted during training by Gaussian noise of a random level, and the network is told the
  level (CDM's conditioning augmentation; Imagen's ``aug_level``).

Images of the shapes world; a base model at ``image_size`` 8 is trained on 16x16 scenes
average-pooled to 8x8 (the world renders at 16, 32, 64).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import nn

from genlib import config, train, zoo
from genlib.data import captions, shapes
from genlib.diffusion import diffusion_loss
from genlib.diffusion.guidance import cfg_combine, drop_condition
from genlib.diffusion.training import DiffusionTraining
from genlib.kernels.sampler import implied_x0_eps
from genlib.models import ddpm
from genlib.nn.efficient_unet import EfficientUNetConfig
from genlib.nn.text_encoders import CaptionStates, FrozenMiniLM, ScratchTextEncoder, minilm_weights_hash
from genlib.nn.unet import UNetConfig

TEXT_ENCODERS = ("minilm", "scratch")
THRESHOLDS = ("none", "static", "dynamic")
MAX_LEN = 16  # tokens per caption, both encoders (the longest shapes caption needs 13 MiniLM tokens)


# ----------------------------------------------------------------------------- the frozen encoder's table


class _StatesTable(nn.Module):
    """The frozen encoder's states of every caption, as a buffer, so the model cache can keep them."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.register_buffer("states", torch.zeros(cfg["captions"], cfg["max_len"], cfg["dim"], dtype=torch.float16))


def caption_texts() -> list[str]:
    """Every caption of the shapes grammar, then ``""`` (the empty caption: the null condition)."""
    return [p.text for p in captions.all_prompts()] + [""]


class MiniLMLayers(nn.Module):
    """``captions -> (states b max_len 384, mask)`` after the first ``layers`` of MiniLM's six
    transformer layers (``hidden_states[layers]``; 0 is the embedding layer alone, 6 is
    :class:`FrozenMiniLM`'s output): a smaller frozen encoder cut from the same pretrained one."""

    def __init__(self, minilm: FrozenMiniLM, layers: int):
        super().__init__()
        depth = len(minilm.model.encoder.layer)
        if not 0 <= layers <= depth:
            raise ValueError(f"MiniLM has {depth} transformer layers; cannot keep {layers}")
        self.minilm, self.layers = minilm, layers
        self.weights_hash = minilm.weights_hash if layers == depth else f"{minilm.weights_hash}-first{layers}layers"

    def num_parameters(self) -> int:
        """The parameters the kept layers use: embeddings and the first ``layers`` transformer layers."""
        bert = self.minilm.model
        kept = [bert.embeddings, *bert.encoder.layer[: self.layers]]
        return sum(p.numel() for m in kept for p in m.parameters())

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.minilm
        enc = m.tokenizer(list(texts), padding="max_length", max_length=m.max_len, truncation=False, return_tensors="pt")
        enc = {k: v.to(config.module_device(m.model)) for k, v in enc.items()}
        mask = enc["attention_mask"].bool()
        states = m.model(**enc, output_hidden_states=True).hidden_states[self.layers]
        return states * mask[..., None], mask


def caption_states(encoder: FrozenMiniLM | None = None, layers: int = 6) -> CaptionStates:
    """MiniLM's token states (``n 16 384``) of every shapes caption and of ``""``, computed once
    (about 15 s on one CPU core) and kept in the model cache (float16). ``encoder``: an already
    loaded :class:`FrozenMiniLM` (else one is loaded if the table is not cached). ``layers`` < 6
    keeps the states after MiniLM's first ``layers`` transformer layers (:class:`MiniLMLayers`).
    The cache key holds the hash of the MiniLM files (``encoder.weights_hash``, else
    :func:`~genlib.nn.text_encoders.minilm_weights_hash` of the files it would load), so states made
    from one set of weights are never served for another."""
    texts = caption_texts()
    weights = encoder.weights_hash if encoder is not None else minilm_weights_hash()
    cfg = {"encoder": "all-MiniLM-L6-v2", "weights": weights, "captions": len(texts),
           "max_len": MAX_LEN, "dim": FrozenMiniLM.dim, **({"layers": layers} if layers != 6 else {})}

    def fill(table: _StatesTable) -> dict:
        enc = encoder or FrozenMiniLM(MAX_LEN)
        if enc.weights_hash != weights:
            raise RuntimeError(f"MiniLM's files changed between keying the caption table (weights {weights}) and "
                               f"loading the encoder (weights {enc.weights_hash}, {enc.source}); run it again")
        table.states.copy_(CaptionStates.build(MiniLMLayers(enc, layers), texts).states.half())
        return {}

    table = zoo.get_or_train("minilm-caption-states", _StatesTable, fill, cfg, device="cpu", profile="any").model
    return CaptionStates(texts, table.states.float(),
                         weights=weights if layers == 6 else f"{weights}-first{layers}layers")


# ----------------------------------------------------------------------------- text-to-image


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagenTraining(DiffusionTraining):
    """The defaults both of the chapter's models (base and super-resolution) share."""

    schedule: str = "cosine"
    prediction_type: str = "v_prediction"  # as chapter 07's shapes models (Imagen's base predicts epsilon)
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagenConfig(ImagenTraining):
    """Everything that fixes a trained text-to-image model (all of it in the model-cache key)."""

    text_encoder: str = "minilm"     # minilm (frozen, pretrained) | scratch (trained with the U-Net)
    image_size: int = 16             # 16, or 8 (16x16 scenes average-pooled)
    unet: UNetConfig = dataclasses.field(default_factory=lambda: UNetConfig(context_dim=384))
    scratch_dim: int = 64            # the scratch encoder's width and depth
    scratch_layers: int = 2
    p_uncond: float = 0.1            # condition dropout (classifier-free guidance training)
    text_norm: bool = True           # LayerNorm on the token states before cross-attention (Imagen)

    def __post_init__(self):
        super().__post_init__()
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"unknown text_encoder {self.text_encoder!r}; expected one of {', '.join(TEXT_ENCODERS)}")
        if self.image_size not in (8, 16):
            raise ValueError(f"image_size must be 8 or 16, got {self.image_size}")
        want = FrozenMiniLM.dim if self.text_encoder == "minilm" else self.scratch_dim
        if self.unet.context_dim != want or self.unet.image_size != self.image_size or self.unet.in_channels != 3:
            raise ValueError(f"the U-Net must read 3-channel {self.image_size}x{self.image_size} images and cross-attend "
                             f"to {want}-dim token states, got {self.unet}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")

    @classmethod
    def preset(cls, text_encoder: str = "minilm", image_size: int = 16, width: int | None = None,
               **overrides) -> "ImagenConfig":
        """The active profile's model: ``ci`` proves the code path; ``cpu`` a ~0.4M U-Net with
        cross-attention at 4x4 and in the middle, a few hundred steps (the chapter's models train in
        under five minutes together); ``gpu`` a ~3M U-Net, attention at 8x8 and 4x4, bf16.
        ``width``: the U-Net's ``base_channels`` instead of the profile's (the scaling grid)."""
        context_dim = FrozenMiniLM.dim if text_encoder == "minilm" else overrides.get("scratch_dim", 64)
        mult = (1, 2, 2) if image_size == 16 else (1, 2)
        unet = config.pick(
            ci=dict(base_channels=8, channel_mult=mult, groups=4, num_heads=2, attention_resolutions=(4,)),
            cpu=dict(base_channels=16, channel_mult=mult, attention_resolutions=(4,)),
            gpu=dict(base_channels=48, channel_mult=mult, attention_resolutions=(8, 4)),
        )
        budget = config.pick(
            ci=dict(steps=30, batch_size=8, warmup=5),
            cpu=dict(steps=300 if image_size == 16 else 400, batch_size=32, ema_decay=0.99),
            gpu=dict(steps=2000 if image_size == 16 else 1500, batch_size=128, warmup=100, ema_decay=0.999),
        )
        unet = {**unet, **({"base_channels": width} if width is not None else {})}
        unet_cfg = UNetConfig(in_channels=3, image_size=image_size, context_dim=context_dim, **unet)
        return cls(text_encoder=text_encoder, image_size=image_size, unet=unet_cfg, **{**budget, **overrides})


class TextToImage(ddpm.DDPM):
    """``forward(x_t: b 3 h w, t: b, context: b n d) -> b 3 h w`` (chapter 07's DDPM with a
    context) and :meth:`context` for captions.

    With the frozen encoder the states come from a :class:`CaptionStates` table (not part of the
    ``state_dict``: it is the pretrained model's, not ours); the scratch encoder is a submodule
    and trains with the U-Net.
    """

    def __init__(self, cfg: ImagenConfig, states: CaptionStates | None = None):
        super().__init__(cfg)  # the U-Net and the noise schedule
        self.text = ScratchTextEncoder(cfg.scratch_dim, cfg.scratch_layers, max_len=MAX_LEN) \
            if cfg.text_encoder == "scratch" else None
        if cfg.text_encoder == "minilm" and states is None:
            raise ValueError("the frozen-encoder model needs its CaptionStates table (imagen.caption_states())")
        self.states = states
        self.text_norm = nn.LayerNorm(cfg.unet.context_dim) if cfg.text_norm else nn.Identity()

    def context(self, texts: list[str]) -> torch.Tensor:
        """Token states ``b n d`` of ``texts`` on the model's device (``""`` is the null caption),
        layer-normalised (a learned LayerNorm, as Imagen conditions on its text embeddings)."""
        states = self.text(texts)[0] if self.text is not None else self.states.lookup(texts, config.module_device(self))
        return self.text_norm(states)

    def loss(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Algorithm 2 with the caption's states, each replaced by the empty caption's with
        probability ``p_uncond`` (condition dropout)."""
        context = drop_condition(self.context(texts), self.context([""])[0], self.cfg.p_uncond)
        return diffusion_loss(self, self.schedule, images, prediction_type=self.cfg.prediction_type, cond=context)


def scaling_grid() -> list[tuple[int, int]]:
    """Fig. 41's two-by-two at toy scale: ``(MiniLM layers kept, U-Net base_channels)`` for a smaller
    frozen encoder (the first 2 of MiniLM's 6 layers, :class:`MiniLMLayers`) and the whole one,
    crossed with half the profile's U-Net width and the full width. Smallest first."""
    width = ImagenConfig.preset().unet.base_channels
    return [(layers, w) for layers in (2, 6) for w in (width // 2, width)]


def _scenes(batch_size: int, image_size: int, seed: int):
    """An endless stream of ``(images b 3 s s, captions)``; 8x8 images are 16x16 scenes average-pooled."""
    for images, texts in shapes.captioned_stream(batch_size, size=16, seed=seed):
        images = images if image_size == 16 else downsample(images, 16 // image_size)
        yield images, texts


def train_imagen(model: TextToImage) -> dict:
    """Train in place for ``cfg.steps`` steps on fresh captioned scenes; returns the loss history."""
    cfg = model.cfg
    history = train.fit(model, lambda m, b: m.loss(*b), train.prefetched(functools.partial(_scenes, cfg.batch_size, cfg.image_size, cfg.seed)), cfg.steps,
                        lr=cfg.lr, warmup=cfg.warmup, ema_decay=cfg.ema_decay, grad_clip=1.0, seed=cfg.seed,
                        desc=f"Imagen {cfg.text_encoder} {cfg.image_size}x{cfg.image_size}")
    return {"history": history.to_dict()}


def load_imagen(text_encoder: str = "minilm", image_size: int = 16, cfg: ImagenConfig | None = None,
                states: CaptionStates | None = None, width: int | None = None, **overrides) -> TextToImage:
    """The trained text-to-image model, from the model cache or trained now. The frozen-encoder
    model needs the caption table: ``states`` or :func:`caption_states` (which loads MiniLM and
    fails with a clear message if it is not installed). The cache key holds the hash of the
    encoder weights that made the states (``states.weights``), so a model trained on one encoder's
    states is never served with another's. ``width``: the U-Net's ``base_channels`` (default: the
    profile's)."""
    cfg = cfg or ImagenConfig.preset(text_encoder, image_size, width, **overrides)
    if text_encoder == "minilm" and states is None:
        states = caption_states()
    if text_encoder == "minilm" and not states.weights:
        raise ValueError("load_imagen('minilm') needs caption states that name the encoder weights that made "
                         "them (states.weights, as imagen.caption_states() and CaptionStates.build(FrozenMiniLM) "
                         "set it): the trained model is cached under them")
    extra = {"text_states": states.weights} if text_encoder == "minilm" else None
    return zoo.get_or_train("imagen", lambda c: TextToImage(c, states), train_imagen, cfg, extra=extra).annotated()


def _threshold_kw(threshold: str, percentile: float) -> dict:
    if threshold not in THRESHOLDS:
        raise ValueError(f"unknown threshold {threshold!r}; expected one of {', '.join(THRESHOLDS)}")
    return {"none": dict(clip_sample=None), "static": dict(clip_sample=1.0),
            "dynamic": dict(clip_sample=None, dynamic_percentile=percentile)}[threshold]


@torch.no_grad()
def generate(model: TextToImage, texts: list[str], *, guidance_scale: float = 1.0, threshold: str = "static",
             percentile: float = 0.995, num_steps: int | None = None, seed: int = 0, batch_size: int = 256,
             record: bool = False):
    """Images ``b 3 s s`` for ``texts`` with DDIM and classifier-free guidance.

    ``guidance_scale`` is genlib's ``s`` (``eps_u + s (eps_c - eps_u)``; Imagen's ``w`` is
    ``s - 1``, :func:`~genlib.diffusion.guidance.scale_from_imagen`). ``threshold`` acts on every
    predicted x0: ``none``, ``static`` (clip to [-1, 1]) or ``dynamic`` (Imagen's, with
    ``percentile``). Not clipped after the last step, so ``none`` can return values past +-1.
    Batch ``i`` of ``batch_size`` captions draws its noise with seed ``seed + i``. ``record=True``
    returns ``(images, trajectory)`` for at most ``batch_size`` captions.
    """
    texts = list(texts)
    if record and len(texts) > batch_size:
        raise ValueError(f"record=True keeps every step: at most batch_size={batch_size} captions")
    s = model.cfg.image_size
    outs, traj = [], None
    for i, start in enumerate(range(0, len(texts), batch_size)):
        chunk = texts[start : start + batch_size]
        cond = model.context(chunk)
        uncond = model.context([""]).expand_as(cond)
        out = ddpm.sample(model, len(chunk), sampler="ddim", num_steps=num_steps, shape=(3, s, s), seed=seed + i,
                          batch_size=len(chunk), record=record, cond=cond, uncond=uncond,
                          guidance_scale=guidance_scale, **_threshold_kw(threshold, percentile))
        if record:
            out, traj = out
        outs.append(out)
    images = torch.cat(outs)
    return (images, traj) if record else images


@dataclasses.dataclass
class ThresholdTrace:
    """A sampled chain and what thresholding did at each of its ``n`` steps (CPU float32).

    ``images`` (``b 3 s s``) is what :func:`generate` returns; ``x0_raw`` (``n b 3 s s``) each
    step's guided x0 *before* thresholding, ``x0`` (``n b 3 s s``) the x0 the step used after it."""

    images: torch.Tensor
    x0_raw: torch.Tensor
    x0: torch.Tensor

    def spread(self, percentile: float = 0.995) -> torch.Tensor:
        """``n b``: the ``percentile``-quantile of ``|x0_raw|`` per step and sample, before dynamic
        thresholding raises it to at least 1 (so ``> 1`` exactly where thresholding rescales)."""
        flat = self.x0_raw.flatten(0, 1)
        return torch.quantile(flat.abs().flatten(1), percentile, dim=1).view(self.x0_raw.shape[:2])


@torch.no_grad()
def trace_thresholding(model: TextToImage, texts: list[str], *, guidance_scale: float, threshold: str = "dynamic",
                       percentile: float = 0.995, num_steps: int | None = None, seed: int = 0,
                       batch_size: int = 256) -> ThresholdTrace:
    """:func:`generate` (same noise, same images), keeping every step's x0 before and after
    thresholding. The sampler records ``x_t`` and the thresholded x0; the raw x0 comes from the
    network's own outputs at each step, kept by a forward hook (no second network call): the
    guided prediction ``pred_u + s (pred_c - pred_u)``, then the x0 it implies at ``x_t`` (stage 2
    of :mod:`genlib.diffusion.samplers`), as the step computes it before thresholding."""
    texts = list(texts)
    images, raws, used = [], [], []
    for i, start in enumerate(range(0, len(texts), batch_size)):
        chunk = texts[start : start + batch_size]
        calls = []  # (x_t, t, output) of every network call: one per step, cond and uncond batched
        hook = model.register_forward_hook(lambda m, args, out: calls.append((args[0], args[1], out.float())))
        try:
            out, traj = generate(model, chunk, guidance_scale=guidance_scale, threshold=threshold,
                                 percentile=percentile, num_steps=num_steps, seed=seed + i, batch_size=batch_size,
                                 record=True)
        finally:
            hook.remove()
        b, raw = len(chunk), []
        for x_t, t, pred in calls:
            if pred.shape[0] == 2 * b:  # guided: [cond; uncond] in one call
                pred = cfg_combine(*pred.chunk(2), guidance_scale)
            abar = model.schedule.abar(int(t[0]))
            raw.append(implied_x0_eps(pred.float(), x_t[:b].float(), abar ** 0.5, (1 - abar) ** 0.5,
                                      model.cfg.prediction_type)[0].cpu())
        if len(raw) != len(traj.x0s):
            raise RuntimeError(f"expected one network call per sampling step ({len(traj.x0s)}), saw {len(raw)}")
        images.append(out)
        raws.append(torch.stack(raw))
        used.append(torch.stack(traj.x0s))
    return ThresholdTrace(torch.cat(images), torch.cat(raws, dim=1), torch.cat(used, dim=1))


def downsample(images: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling by ``factor``: how the cascade's low-resolution training images are made."""
    return F.avg_pool2d(images, factor)


def fraction_saturated(images: torch.Tensor, limit: float = 0.99) -> float:
    """The share of channel values at or above ``limit`` (brighter than any colour of the shapes
    palette, whose largest channel is 0.98, i.e. 0.96 in [-1, 1]): over-saturation at the top."""
    return (images >= limit).float().mean().item()


# ----------------------------------------------------------------------------- Efficient U-Net vs U-Net


def unet_pair() -> tuple[UNetConfig, EfficientUNetConfig]:
    """A plain U-Net and an Efficient U-Net (§9.6) of the same widths, sized as the profile's
    super-resolution stage would be (side ``pick(ci=16, cpu=32, gpu=64)``): two ResBlocks per
    level in the plain one; 1, 2, 4 (more at low resolution) in the efficient one."""
    size = config.pick(ci=16, cpu=32, gpu=64)
    width = config.pick(ci=8, cpu=32, gpu=64)
    groups = 4 if width < 32 else 8
    plain = UNetConfig(image_size=size, base_channels=width, channel_mult=(1, 2, 4), num_res_blocks=2,
                       attention_resolutions=(), groups=groups)
    efficient = EfficientUNetConfig(image_size=size, base_channels=width, channel_mult=(1, 2, 4),
                                    num_res_blocks=(1, 2, 4), groups=groups)
    return plain, efficient
