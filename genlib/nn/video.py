"""Video layers: 3D, (2+1)D and attention over space, time or both, on clip batches.

A clip batch is a 5-D tensor in one of two layouts, and every layer here is told which when it is
built (``layout=``; there is no default):

* ``"b c t h w"`` -- channels first, the layout ``torch.nn.Conv3d`` reads; video networks keep
  their feature maps this way (``CHANNELS_FIRST``).
* ``"b t c h w"`` -- frames first, as the data worlds give clips (survey Fig. 62; ``FRAMES_FIRST``).

A clip's shape cannot tell the two apart when its frame count equals the channel count (3 frames
of RGB, or 16 frames into a 16-channel layer): a layer that guessed would run and return nonsense.
Image layers see a clip as a batch of frames, ``(b t) c h w`` (:func:`to_frames`,
:func:`from_frames`), which is how Video-LDM and Make-A-Video reuse a pretrained image network
(survey §12).

Convolutions (survey §10.3, App. C.4)::

    FullConv3d     one kt x k x k kernel over time and space          (C3D, Tran et al. 2014)
    Conv2Plus1d    k x k on each frame, then kt along time at each pixel  (R(2+1)D, 2018;
                   Make-A-Video's pseudo-3D conv, with the temporal conv starting as the identity)

Attention, each a residual block ``x + Attention(LayerNorm(x))`` whose sequences are one group of
axes (the temporal rearrangement is the one the survey writes for Video-LDM, §12)::

    SpatialAttention   over h w of each frame:    b c t h w -> (b t) (h w) c
    TemporalAttention  over t at each pixel:      b c t h w -> (b h w) t c    (optional causal mask)
    FullAttention      over all t h w at once:    b c t h w -> b (t h w) c
    AxialAttention3d   along t, then h, then w (Ho et al. 2019; VideoGPT sums the three instead)

Every layer has ``cost(t, h, w)``: its parameters, multiply-accumulates (MACs; FLOPs = 2 MACs) and
attention scores per head for one clip of ``t x h x w`` positions, from the formulas in its
docstring; :func:`counted_macs` measures the same with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from genlib.nn.attention import MultiHeadAttention
from genlib.nn.embeddings import timestep_embedding

CHANNELS_FIRST = "b c t h w"
FRAMES_FIRST = "b t c h w"
LAYOUTS = (CHANNELS_FIRST, FRAMES_FIRST)


def check_layout(layout: str | None, layer: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`; a ``ValueError`` that explains the choice otherwise."""
    if layout not in LAYOUTS:
        raise ValueError(f"{layer} needs layout='b c t h w' (channels first, as nn.Conv3d reads) or "
                         f"layout='b t c h w' (frames first, as the data worlds give clips), got {layout!r}: "
                         f"a clip's shape cannot tell them apart when its frames equal its channels")
    return layout


def check_video(x: torch.Tensor, layer: str, channels: int | None = None, layout: str = CHANNELS_FIRST) -> None:
    """Raise ``ValueError`` unless ``x`` is a clip batch in ``layout`` (with ``c = channels``)."""
    axis = layout.split().index("c")
    if x.ndim != 5 or (channels is not None and x.shape[axis] != channels):
        want = f" with c={channels}" if channels is not None else ""
        raise ValueError(f"{layer} expects x of layout {layout}{want}, got shape {tuple(x.shape)}")


def channels_first(x: torch.Tensor, layout: str) -> torch.Tensor:
    """A clip batch in ``layout`` as ``b c t h w`` (a view)."""
    return x if layout == CHANNELS_FIRST else rearrange(x, "b t c h w -> b c t h w")


def back_to(x: torch.Tensor, layout: str) -> torch.Tensor:
    """A ``b c t h w`` clip batch in ``layout`` (a view): the inverse of :func:`channels_first`."""
    return x if layout == CHANNELS_FIRST else rearrange(x, "b c t h w -> b t c h w")


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """``b c t h w -> (b t) c h w``: a clip batch as a batch of frames, for image layers."""
    check_video(x, "to_frames")
    return rearrange(x, "b c t h w -> (b t) c h w")


def from_frames(x: torch.Tensor, t: int) -> torch.Tensor:
    """``(b t) c h w -> b c t h w``: frames back into clips of ``t`` frames."""
    if x.ndim != 4 or x.shape[0] % t:
        raise ValueError(f"from_frames expects x of layout (b t) c h w with t={t} dividing the batch, got {tuple(x.shape)}")
    return rearrange(x, "(b t) c h w -> b c t h w", t=t)


@dataclasses.dataclass(frozen=True)
class Cost:
    """What one layer costs on one clip: parameters, multiply-accumulates, attention scores per head."""

    params: int
    macs: int
    scores: int = 0

    @property
    def flops(self) -> int:
        """Floating-point operations, a multiply-accumulate counted as 2 (a count, not a rate)."""
        return 2 * self.macs

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs, self.scores + other.scores)


def layer_cost(layer: nn.Module, t: int, h: int, w: int) -> Cost:
    """The :class:`Cost` of a video layer, or of an ``nn.Sequential`` of them run one after another."""
    if isinstance(layer, nn.Sequential):
        total, shape = Cost(0, 0), (t, h, w)
        for part in layer:
            total = total + layer_cost(part, *shape)
            shape = getattr(part, "out_shape", lambda *s: s)(*shape)
        return total
    return layer.cost(t, h, w)


def num_parameters(module: nn.Module) -> int:
    """How many numbers the module learns (what each ``cost`` calls ``params``)."""
    return sum(p.numel() for p in module.parameters())


def counted_macs(layer: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of ``layer(x)`` as PyTorch's ``FlopCounterMode`` counts them (matrix
    products and convolutions; norms, softmax and additions are left out, as in the formulas)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        layer(x)
    return counter.get_total_flops() // 2


def _conv_out(n: int, k: int, stride: int) -> int:
    return (n + 2 * (k // 2) - k) // stride + 1  # padding k // 2: "same" size at stride 1


# ----------------------------------------------------------------------------- convolutions


class FullConv3d(nn.Module):
    """``b c_in t h w -> b c_out t' h' w'`` (or frames first, ``layout``): one ``kt x k x k`` kernel
    over time and space.

    App. C.4 (per output channel, summed over input channels ``c``)::

        y[o, i, j, l] = bias[o] + sum_c sum_{a<kt} sum_{m<k} sum_{n<k} x[c, i+a, j+m, l+n] w[o, c, a, m, n]

    Zero padding ``k // 2`` keeps ``t h w`` at stride 1. Cost: ``c_out c_in kt k^2`` MACs per
    output position; parameters ``c_out c_in kt k^2 + c_out``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, *, kernel_t: int | None = None,
                 stride: int | tuple[int, int] = 1, layout: str | None = None):
        super().__init__()
        self.layout = check_layout(layout, "FullConv3d")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.k, self.kt = kernel, kernel if kernel_t is None else kernel_t
        self.stride_t, self.stride = (stride, stride) if isinstance(stride, int) else stride
        self.conv = nn.Conv3d(in_channels, out_channels, (self.kt, self.k, self.k), (self.stride_t, self.stride, self.stride),
                              padding=(self.kt // 2, self.k // 2, self.k // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, "FullConv3d", self.in_channels, self.layout)
        return back_to(self.conv(channels_first(x, self.layout)), self.layout)

    def out_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        return _conv_out(t, self.kt, self.stride_t), _conv_out(h, self.k, self.stride), _conv_out(w, self.k, self.stride)

    def cost(self, t: int, h: int, w: int) -> Cost:
        t2, h2, w2 = self.out_shape(t, h, w)
        per_position = self.out_channels * self.in_channels * self.kt * self.k**2
        return Cost(per_position + self.out_channels, per_position * t2 * h2 * w2)


def r2plus1d_mid_channels(in_channels: int, out_channels: int, kernel: int = 3, kernel_t: int = 3) -> int:
    """R(2+1)D's width between the spatial and the temporal conv, chosen so the factorised pair has
    about the parameters of one ``kt x k x k`` conv: ``M = floor(kt k^2 c_in c_out / (k^2 c_in + kt c_out))``."""
    return (kernel_t * kernel**2 * in_channels * out_channels) // (kernel**2 * in_channels + kernel_t * out_channels)


class Conv2Plus1d(nn.Module):
    """``b c_in t h w -> b c_out t h' w'`` (or frames first, ``layout``): a ``k x k`` conv on every
    frame, then a ``kt`` conv along time at every pixel (R(2+1)D; Make-A-Video's pseudo-3D convolution).

    ``mid_channels`` (default ``c_out``) is the width in between; ``mid_activation`` puts a SiLU
    there (R(2+1)D has a nonlinearity, Make-A-Video none); ``stride`` strides the spatial conv.
    ``identity_init`` starts the temporal conv as the identity (a Dirac kernel, zero bias), so a fresh
    layer is exactly its spatial conv applied to each frame: an image model's conv, inflated.
    Cost per position: ``c_mid c_in k^2`` (spatial) ``+ c_out c_mid kt`` (temporal) MACs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, *, kernel_t: int = 3,
                 mid_channels: int | None = None, stride: int = 1, mid_activation: bool = False,
                 identity_init: bool = False, layout: str | None = None):
        super().__init__()
        self.layout = check_layout(layout, "Conv2Plus1d")
        mid = out_channels if mid_channels is None else mid_channels
        if identity_init and (mid != out_channels or mid_activation):
            raise ValueError("identity_init needs mid_channels == out_channels and no mid_activation")
        self.in_channels, self.mid_channels, self.out_channels = in_channels, mid, out_channels
        self.k, self.kt, self.stride = kernel, kernel_t, stride
        self.spatial = nn.Conv2d(in_channels, mid, kernel, stride, padding=kernel // 2)
        self.act = nn.SiLU() if mid_activation else nn.Identity()
        self.temporal = nn.Conv1d(mid, out_channels, kernel_t, padding=kernel_t // 2)
        if identity_init:
            nn.init.dirac_(self.temporal.weight)  # w[o, c, a] = 1 if o == c and a == kt // 2
            nn.init.zeros_(self.temporal.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, "Conv2Plus1d", self.in_channels, self.layout)
        x = channels_first(x, self.layout)
        b = x.shape[0]
        y = self.act(self.spatial(rearrange(x, "b c t h w -> (b t) c h w")))  # each frame on its own
        h, w = y.shape[-2:]
        y = self.temporal(rearrange(y, "(b t) c h w -> (b h w) c t", b=b))  # each pixel along time
        return back_to(rearrange(y, "(b h w) c t -> b c t h w", b=b, h=h, w=w), self.layout)

    def out_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        return t, _conv_out(h, self.k, self.stride), _conv_out(w, self.k, self.stride)

    def cost(self, t: int, h: int, w: int) -> Cost:
        positions = math.prod(self.out_shape(t, h, w))
        spatial = self.mid_channels * self.in_channels * self.k**2
        temporal = self.out_channels * self.mid_channels * self.kt
        return Cost(spatial + self.mid_channels + temporal + self.out_channels, (spatial + temporal) * positions)


# ----------------------------------------------------------------------------- attention

# How each attention layer cuts a clip into sequences: "b t h w c -> <sequences> c" (einops).
SEQUENCES = {
    "space": "(b t) (h w) c",  # each frame's h*w pixels
    "time": "(b h w) t c",  # each pixel's t frames
    "height": "(b t w) h c",  # each column's h pixels
    "width": "(b t h) w c",  # each row's w pixels
    "all": "b (t h w) c",  # the whole clip
}


def _sequences(over: str, t: int, h: int, w: int) -> tuple[int, int]:
    """How many sequences one clip gives along ``over``, and their length."""
    return {"space": (t, h * w), "time": (h * w, t), "height": (t * w, h), "width": (t * h, w), "all": (1, t * h * w)}[over]


class VideoAttention(nn.Module):
    """``b c t h w -> b c t h w`` (or frames first, ``layout``): ``x + MultiHeadAttention(LayerNorm(x))``
    over the sequences ``SEQUENCES[over]`` (one LayerNorm per position, so only the attention mixes
    positions).

    ``frame_positions`` adds a sinusoidal embedding of the frame index (:func:`timestep_embedding`,
    ``dim`` even) before attending: without it, attention over frames cannot tell their order; ``causal`` (time only) lets frame ``i`` read
    frames ``<= i``; ``zero_init`` zeroes the output projection, so a fresh layer is the identity.
    Cost on ``n`` positions of width ``d`` cut into ``s`` sequences of length ``L``: ``4 n d^2``
    MACs for q, k, v and the output, ``2 s L^2 d`` for the scores and their weighted sum;
    ``s L^2`` scores per head; parameters ``4 d^2 + 3 d`` (with the LayerNorm).
    """

    def __init__(self, dim: int, heads: int = 4, *, over: str = "space", causal: bool = False,
                 zero_init: bool = False, frame_positions: bool = False, layout: str | None = None):
        super().__init__()
        self.layout = check_layout(layout, type(self).__name__)
        if over not in SEQUENCES:
            raise ValueError(f"over must be one of {sorted(SEQUENCES)}, got {over!r}")
        if causal and over != "time":
            raise ValueError("a causal mask is defined along time only (over='time')")
        self.dim, self.over, self.frame_positions = dim, over, frame_positions
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, causal=causal)
        if zero_init:
            nn.init.zeros_(self.attn.to_out.weight)
            nn.init.zeros_(self.attn.to_out.bias)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch alone: ``Attention(LayerNorm(x))``, in the layer's layout."""
        check_video(x, type(self).__name__, self.dim, self.layout)
        x = channels_first(x, self.layout)
        b, c, t, h, w = x.shape
        tokens = self.norm(rearrange(x, "b c t h w -> b t h w c"))
        if self.frame_positions:
            frame = timestep_embedding(torch.arange(t, device=x.device), c).to(tokens.dtype)  # t c
            tokens = tokens + rearrange(frame, "t c -> t 1 1 c")
        seqs = rearrange(tokens, f"b t h w c -> {SEQUENCES[self.over]}")
        return back_to(rearrange(self.attn(seqs), f"{SEQUENCES[self.over]} -> b c t h w", b=b, t=t, h=h, w=w),
                       self.layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)

    def cost(self, t: int, h: int, w: int) -> Cost:
        d, (s, length) = self.dim, _sequences(self.over, t, h, w)
        return Cost(4 * d * d + 3 * d, 4 * t * h * w * d * d + 2 * s * length**2 * d, s * length**2)


class SpatialAttention(VideoAttention):
    """Each frame attends within itself: ``b c t h w -> (b t) (h w) c``; frames never mix."""

    def __init__(self, dim: int, heads: int = 4, *, zero_init: bool = False, layout: str | None = None):
        super().__init__(dim, heads, over="space", zero_init=zero_init, layout=layout)


class TemporalAttention(VideoAttention):
    """Each pixel attends over the frames: ``b c t h w -> (b h w) t c``, with frame-index
    embeddings; ``causal`` hides later frames; ``zero_init`` makes a fresh layer the identity."""

    def __init__(self, dim: int, heads: int = 4, *, causal: bool = False, zero_init: bool = False,
                 frame_positions: bool = True, layout: str | None = None):
        super().__init__(dim, heads, over="time", causal=causal, zero_init=zero_init, frame_positions=frame_positions,
                         layout=layout)


class FullAttention(VideoAttention):
    """Every position attends to every position of the clip: ``b c t h w -> b (t h w) c``."""

    def __init__(self, dim: int, heads: int = 4, *, frame_positions: bool = True, layout: str | None = None):
        super().__init__(dim, heads, over="all", frame_positions=frame_positions, layout=layout)


class AxialAttention3d(nn.Module):
    """``b c t h w -> b c t h w``: attention along t, then h, then w, each a residual
    :class:`VideoAttention` (the 3-axis form of :class:`~genlib.nn.attention.AxialAttention2d`).

    ``parallel=True`` is VideoGPT's variant: ``x + sum`` of the three branches, all read from the
    same input. Run one after another, the passes let every position reach the whole clip; summed,
    one layer reaches only the three lines through a position. Scores per head: ``t h w (t + h + w)``.
    """

    def __init__(self, dim: int, heads: int = 4, *, parallel: bool = False, layout: str | None = None):
        super().__init__()
        self.layout = check_layout(layout, "AxialAttention3d")
        self.dim, self.parallel = dim, parallel
        self.passes = nn.ModuleList(
            VideoAttention(dim, heads, over=axis, frame_positions=axis == "time", layout=layout)
            for axis in ("time", "height", "width")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video(x, "AxialAttention3d", self.dim, self.layout)
        if self.parallel:
            return x + sum(p.branch(x) for p in self.passes)
        for p in self.passes:
            x = p(x)
        return x

    def cost(self, t: int, h: int, w: int) -> Cost:
        return sum((p.cost(t, h, w) for p in self.passes), Cost(0, 0))


def attention_reach(layer: nn.Module, x: torch.Tensor, query: tuple[int, int, int]) -> torch.Tensor:
    """``t h w`` bool: the input positions the output at ``query = (t, y, x)`` depends on (a nonzero
    gradient of that output, summed over channels, with respect to each input position). ``x`` is in
    the layer's layout (the first part's, for an ``nn.Sequential``)."""
    first = layer[0] if isinstance(layer, nn.Sequential) else layer
    layout = getattr(first, "layout", CHANNELS_FIRST)
    check_video(x, "attention_reach", layout=layout)
    x = x.detach().clone().requires_grad_(True)
    ti, yi, xi = query
    out = channels_first(layer(x), layout)[:, :, ti, yi, xi].sum()
    (grad,) = torch.autograd.grad(out, x)
    return channels_first(grad, layout).abs().sum(dim=(0, 1)) > 0
