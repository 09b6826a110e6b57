"""The paper's straight-through gradient mask (Eq. 12), shared by the emulation and its fused layer."""

from __future__ import annotations

import torch


def ste_mask(grad: torch.Tensor) -> torch.Tensor:
    """The paper's straight-through gradient: pass ``grad`` where ``|grad| < 1``, zero elsewhere.

    The same bits as :func:`ste_mask_reference` (the definition) for every value, NaN and infinities
    included, in float arithmetic only: ``1 - min(floor(|g|), 1)`` is exactly 1.0 where ``|g| < 1``
    and 0.0 elsewhere (NaN where ``g`` is NaN, which the product turns into NaN either way). Torch's
    comparisons and boolean masks cost several times an arithmetic pass on the CPU.
    """
    mask = grad.abs()
    mask.floor_().clamp_(max=1.0).neg_().add_(1.0)
    return grad * mask


def ste_mask_reference(grad: torch.Tensor) -> torch.Tensor:
    """The definition of :func:`ste_mask`: ``grad * 1[|grad| < 1]``."""
    return grad * (grad.abs() < 1).to(grad.dtype)
