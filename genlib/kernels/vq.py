"""Nearest codebook entry for vector quantisation (VQ-VAE), the reference and the dispatcher.

Layouts: encoder outputs ``z: n d`` (flatten ``b h w`` into ``n`` first), codebook ``e: k d``.
The index of the nearest code under the squared Euclidean distance expands into three terms,

    ||z_i - e_j||^2 = ||z_i||^2 - 2 z_i . e_j + ||e_j||^2

so ``argmin_j`` needs only the matrix product ``z e^T`` and the code norms (``||z_i||^2`` is the
same for every ``j``). Ties go to the lowest index ``j``, as ``torch.argmin`` does. That rule is
exact only where the distances are: two codes whose true distances tie, or differ by less than
the rounding of fp32 sums (about 1e-7 relative), may come out in either order, because a matrix
product's rounding depends on how the BLAS kernel (or a Triton tile) groups the sums. With
small-integer inputs every distance is exact and the lowest index always wins.

The reference forms the ``n x k`` distance matrix; the Triton kernel
(:mod:`genlib.kernels.vq_triton`) keeps, per row, only the best distance and index seen so far.
"""

from __future__ import annotations

import torch

from genlib.kernels import dispatch
from genlib.kernels.common import PRECISIONS, check_vq_inputs

def vq_nearest_reference(
    z: torch.Tensor, codebook: torch.Tensor, *, return_distance: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``argmin_j ||z_i||^2 - 2 z_i . e_j + ||e_j||^2`` over the full ``n x k`` matrix, in fp32.

    Returns the indices ``n`` (int64) and, with ``return_distance``, the minimum squared distance
    ``n`` (fp32, clamped at 0: the expansion can round below zero).
    """
    check_vq_inputs(z, codebook)
    z, e = z.float(), codebook.float()
    dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ e.T + e.pow(2).sum(1)  # n k
    best, idx = dist.min(dim=1)
    return (idx, best.clamp_min(0)) if return_distance else idx


def vq_nearest(
    z: torch.Tensor, codebook: torch.Tensor, *, return_distance: bool = False, input_precision: str = "tf32"
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Index (int64, ``n``) of the nearest code for each row of ``z: n d`` in ``codebook: k d``.

    With ``return_distance`` also the squared distance to it (fp32, ``n``). ``input_precision``
    applies to fp32 inputs in the Triton kernel on a GPU: ``"tf32"`` (default) multiplies on
    tensor cores with 10-bit mantissas, fast but able to swap two codes whose distances agree to
    about 1e-3 relative; ``"ieee"`` multiplies exactly in fp32. The reference is always exact.
    The indices are not differentiable; when z or the codebook requires a gradient the reference
    runs so that the distance keeps its graph.
    """
    check_vq_inputs(z, codebook)
    if input_precision not in PRECISIONS:
        raise ValueError(f"input_precision must be one of {PRECISIONS}, got {input_precision!r}")
    if dispatch.needs_grad(z, codebook) or not dispatch.use_triton(z, codebook):
        return vq_nearest_reference(z, codebook, return_distance=return_distance)
    from genlib.kernels.vq_triton import vq_nearest_triton

    return vq_nearest_triton(z, codebook, return_distance=return_distance, input_precision=input_precision)
