"""GroupNorm followed by SiLU, the pair that opens every U-Net and VAE residual block.

Layout ``x: b c h w`` (or ``b c t h w`` for video; the spatial dims are flattened into one,
``s = h w`` or ``t h w``). The ``c`` channels fall into ``g`` groups of ``c / g``; each (sample,
group) is normalised over its ``(c / g) * s`` values, then scaled and shifted per channel:

    mu, var = mean and (biased) variance over the group
    y       = (x - mu) / sqrt(var + eps) * weight[c] + bias[c]
    out     = silu(y) = y * sigmoid(y)

The reference is ``F.silu(F.group_norm(x, g, weight, bias, eps))``. The Triton kernels
(:mod:`genlib.kernels.groupnorm_triton`) read ``x`` for the statistics and once more to normalise,
with the reduction split over chunks of the group so that a 1 x 256 x 256 x 256 VAE activation
(32 groups, half a million values each) still fills the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlib.kernels import dispatch
from genlib.kernels.common import check_group_norm_inputs


def group_norm_silu_reference(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    num_groups: int,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.silu(F.group_norm(x, num_groups, weight, bias, eps))``, computed in fp32, in x's dtype."""
    check_group_norm_inputs(x, num_groups, weight, bias)
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    return F.silu(F.group_norm(x.float(), num_groups, w, b, eps)).to(x.dtype)


def group_norm_silu(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """silu(group_norm(x)) on ``b c h w`` or ``b c t h w``, fused in Triton where it can be.

    Statistics accumulate in fp32 whatever x's dtype; the output has x's dtype and layout
    ``b c ...`` (contiguous). When an input requires a gradient the Triton forward is wrapped in
    an ``autograd.Function`` whose backward differentiates the reference.
    """
    check_group_norm_inputs(x, num_groups, weight, bias)
    if not dispatch.use_triton(x, weight, bias):
        return group_norm_silu_reference(x, weight, bias, num_groups=num_groups, eps=eps)
    from genlib.kernels.groupnorm_triton import group_norm_silu_triton

    if dispatch.needs_grad(x, weight, bias):
        return dispatch.triton_forward_reference_backward(
            group_norm_silu_triton, group_norm_silu_reference, x, weight, bias, num_groups=num_groups, eps=eps
        )
    return group_norm_silu_triton(x, weight, bias, num_groups=num_groups, eps=eps)
