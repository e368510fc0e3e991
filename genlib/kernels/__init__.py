"""Four fused GPU kernels in Triton, each beside the plain PyTorch it must equal.

* :func:`attention` -- softmax(q k^T / sqrt(d)) v with the online softmax,
  ``b h n d, b h m d, b h m d -> b h n d``.
* :func:`vq_nearest` -- the nearest codebook entry, distances fused with their argmin,
  ``n d, k d -> n``.
* :func:`group_norm_silu` -- GroupNorm, its affine map and SiLU, ``b c h w`` or ``b c t h w``.
* :func:`sampler_step` -- classifier-free guidance, x0, clipping and one DDIM/DDPM step, ``b ...``.

Each public function dispatches (:mod:`genlib.kernels.dispatch`, switch ``GENLIB_KERNELS``) to the
Triton kernel in ``*_triton.py`` or to its ``*_reference``. This package imports triton only when
a Triton kernel first runs, and works without triton installed. Imports run one way: a dispatcher
(``attention.py``, ...) imports its kernel (``attention_triton.py``, ...), and both import the
checks and coefficients they share from ``common.py``; the two attention kernels share
``online_softmax.py``.
"""

from genlib.kernels.attention import attention, attention_reference
from genlib.kernels.dispatch import backend_for
from genlib.kernels.groupnorm import group_norm_silu, group_norm_silu_reference
from genlib.kernels.sampler import sampler_step, sampler_step_reference
from genlib.kernels.vq import vq_nearest, vq_nearest_reference

__all__ = [
    "attention",
    "attention_reference",
    "backend_for",
    "group_norm_silu",
    "group_norm_silu_reference",
    "sampler_step",
    "sampler_step_reference",
    "vq_nearest",
    "vq_nearest_reference",
]
