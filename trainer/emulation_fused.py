"""A fused training-mode dense layer for the emulated forward (AxTrain-pas): one autograd node
instead of five (issue 15, training speed).

:func:`axtrain.trainer.emulation._mac_layer` is the definition: per mode group it wraps the weight
pipeline (quantise, flip, DRUM), the activation transform, the bias quantisation and the output
requantisation in four straight-through nodes, multiplies, adds the bias and applies the ReLU, and
torch's autograd differentiates the rest. For the common case (a dense layer whose output neurons
all use one multiplier, training mode) :class:`FusedDense` computes the same forward with the same
torch operations under ``no_grad`` and writes the backward out by hand with the operations
autograd would run (``ste_mask`` at every straight-through point, ``threshold_backward`` for the
ReLU, ``sum_to_size`` for the bias, the two ``mm`` of ``MmBackward`` in the order torch's
``mm_mat1_backward`` / ``mm_mat2_backward`` choose for these layouts). So the outputs and every
gradient are the same bits as the reference's; tests/trainer/test_emulation_fused.py checks both,
with and without fault maps. Anything else (several mode groups, convolutions, no bias, evaluation)
takes the reference path.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from axtrain.trainer.ste import ste_mask


def _ste(grad: torch.Tensor) -> torch.Tensor:
    return ste_mask(grad)


class FusedDense(torch.autograd.Function):
    """``quantize_out(relu?(T_a(a) @ T_w(w).T + Q_b(b)))`` with the straight-through backward.

    ``weight_fn`` / ``act_fn`` / ``bias_fn`` / ``out_fn`` are the reference's own pipelines (plain
    functions of a tensor, run without autograd) or return what was computed ahead with the same
    operations (the weights and biases of all fused layers together, the first layer's operands of
    a data set; :mod:`axtrain.trainer.emulation`), so the forward is the reference's bit for bit.
    The bias is quantised in float32 where the reference uses float64: the same float32 bits
    (decisions 197). ``out_fn`` gets the accumulator with the bias added and is responsible for the
    ReLU too (in place on the accumulator, which the backward reads as the ReLU's output, when
    ``relu``), so that the one-pass kernel of :mod:`axtrain.trainer.kernels` can do both.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        a: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
        weight_fn: Callable[[torch.Tensor], torch.Tensor],
        act_fn: Callable[[torch.Tensor], torch.Tensor],
        bias_fn: Callable[[torch.Tensor], torch.Tensor],
        out_fn: Callable[[torch.Tensor], torch.Tensor],
        relu: bool,
    ) -> torch.Tensor:
        with torch.no_grad():
            w_t = weight_fn(w)
            a_t = act_fn(a)
            bias = bias_fn(b)
            # The product is a fresh tensor: the bias and the ReLU go in place (same values as
            # `acc + bias` and `relu(acc)`, two temporaries fewer); out_fn applies the ReLU to acc
            # in place (when `relu`) and returns the requantised output.
            acc = (a_t @ w_t.T).add_(bias)
            out = out_fn(acc)
        ctx.save_for_backward(a_t, w_t, acc if relu else None)
        ctx.relu = relu
        ctx.dtypes = (a.dtype, w.dtype, b.dtype)
        ctx.bias_shape = b.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        a_t, w_t, relu_out = ctx.saved_tensors
        a_dtype, w_dtype, b_dtype = ctx.dtypes
        g = _ste(grad)  # the output requantisation's straight-through node
        if ctx.relu:
            g = torch.ops.aten.threshold_backward(g, relu_out, 0)
        grad_a = grad_w = grad_b = None
        if ctx.needs_input_grad[2]:
            # acc + bias: sum over the batch, then the bias node's mask. The reference masks it in
            # float64 (its bias pipeline computes there); the float32 values convert exactly and
            # the mask keeps or zeroes each, so masking in float32 is the same bits.
            grad_b = _ste(g.sum_to_size(ctx.bias_shape)).to(b_dtype)
        if ctx.needs_input_grad[0]:
            grad_a = _ste(g.mm(w_t)).to(a_dtype)  # mm_mat1_backward: grad @ mat2.t(), mat2 = w_t.T
        if ctx.needs_input_grad[1]:
            grad_w = _ste(g.t().mm(a_t)).to(w_dtype)  # mm_mat2_backward for a column-major mat2, then .T
        return grad_a, grad_w, grad_b, None, None, None, None, None


def fused_applicable(op: str, groups: int, has_bias: bool, exact: bool, a: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether :class:`FusedDense` stands in for the reference on this layer call."""
    return (
        op == "dense"
        and groups == 1
        and has_bias
        and not exact
        and torch.is_grad_enabled()
        and w.requires_grad
        and a.dim() == 2
        and a.dtype == torch.float32
        and w.dtype == torch.float32
    )


def scale_of(frac: int) -> float:
    """``2**frac`` as a Python float (exact)."""
    return math.ldexp(1.0, frac)


class FusedChain(torch.autograd.Function):
    """A run of :class:`FusedDense` layers as one autograd node (an MLP: every layer fused).

    The forward is the layers' forwards in order (``layers``: one ``(prepare_fn, act_fn, out_fn,
    relu)`` per layer, ``prepare_fn(w, b) -> (w_t, bias)`` doing :class:`FusedDense`'s
    ``weight_fn`` and ``bias_fn`` together); ``params`` are the layers' weights and biases,
    alternating, so that autograd hands their gradients back. The backward is the layers'
    backwards in reverse with the same operations. Between two layers the reference masks the
    gradient twice, once for the next layer's activation transform and once for this layer's
    requantisation; the mask is idempotent bit for bit (a kept element is multiplied by exactly
    1.0, a dropped one becomes a signed zero or NaN, which the second mask keeps as it is), so it
    is applied once. One node instead of several saves per-node Python and autograd work;
    tests/trainer/test_kernels.py checks outputs and every gradient against the per-layer path
    and the torch path bit for bit.
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, layers: tuple[tuple[Any, ...], ...], *params: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        saved: list[torch.Tensor | None] = []
        with torch.no_grad():
            h = a
            for index, (prepare_fn, act_fn, out_fn, relu) in enumerate(layers):
                w_t, bias = prepare_fn(params[2 * index], params[2 * index + 1])
                a_t = act_fn(h)
                acc = (a_t @ w_t.T).add_(bias)
                h = out_fn(acc)
                saved += [a_t, w_t, acc if relu else None]
        ctx.save_for_backward(*saved)
        ctx.relus = tuple(layer[3] for layer in layers)
        ctx.dtypes = tuple(p.dtype for p in params)
        ctx.bias_shapes = tuple(params[2 * i + 1].shape for i in range(len(layers)))
        return h

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        count = len(ctx.relus)
        grads: list[torch.Tensor | None] = [None] * (2 * count)
        grad_a = None
        g = _ste(grad)  # the last layer's output requantisation
        for index in range(count - 1, -1, -1):
            a_t, w_t, relu_out = saved[3 * index : 3 * index + 3]
            if ctx.relus[index]:
                g = torch.ops.aten.threshold_backward(g, relu_out, 0)
            if ctx.needs_input_grad[2 + 2 * index + 1]:
                grads[2 * index + 1] = _ste(g.sum_to_size(ctx.bias_shapes[index])).to(ctx.dtypes[2 * index + 1])
            below = _ste(g.mm(w_t)) if index > 0 or ctx.needs_input_grad[0] else None  # the activation transform's mask
            if ctx.needs_input_grad[2 + 2 * index]:
                grads[2 * index] = _ste(g.t().mm(a_t)).to(ctx.dtypes[2 * index])
            if index > 0:
                assert below is not None
                g = below  # the requantisation mask of the layer below: already applied (idempotent)
            else:
                grad_a = below
        return (grad_a, None, *grads)
