"""The paper's straight-through gradient mask (Eq. 12), shared by the emulation and its fused layer."""

from __future__ import annotations

import torch

from axtrain.trainer import kernels
from axtrain.trainer.reductions import max_abs


def ste_mask(grad: torch.Tensor) -> torch.Tensor:
    """The paper's straight-through gradient: pass ``grad`` where ``|grad| < 1``, zero elsewhere.

    The same bits as :func:`ste_mask_reference` (the definition) for every value, NaN and infinities
    included. On the CPU, where one read-only min/max pass costs a fraction of the mask's five
    arithmetic passes, a gradient whose every magnitude is below 1 (the usual case: a mean loss's
    gradients are small) is returned as it is: the mask is all ones there and ``g * 1.0`` is ``g``
    bit for bit (signed zeros and subnormals included; a NaN makes ``max_abs`` NaN and takes the
    full mask). Otherwise, in float arithmetic only: ``1 - min(floor(|g|), 1)`` is exactly 1.0 where
    ``|g| < 1`` and 0.0 elsewhere (NaN where ``g`` is NaN, which the product turns into NaN either
    way); torch's comparisons and boolean masks cost several times an arithmetic pass on the CPU.
    On other devices the full mask always (reading the maximum back would synchronise the device).
    """
    if grad.device.type == "cpu":
        below = kernels.below_one(grad)
        if below if below is not None else max_abs(grad) < 1.0:
            return grad
    mask = grad.abs()
    mask.floor_().clamp_(max=1.0).neg_().add_(1.0)
    return grad * mask


def ste_mask_reference(grad: torch.Tensor) -> torch.Tensor:
    """The definition of :func:`ste_mask`: ``grad * 1[|grad| < 1]``."""
    return grad * (grad.abs() < 1).to(grad.dtype)
