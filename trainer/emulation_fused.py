"""Fused training-mode dense layers for the emulated forward (AxTrain-pas): one autograd node
instead of five per layer, or one for a whole MLP (issue 15, training speed; decisions 214).

:func:`axtrain.trainer.emulation._mac_layer` is the definition: per mode group it wraps the weight
pipeline (quantise, flip, DRUM), the activation transform, the bias quantisation and the output
requantisation in four straight-through nodes, multiplies, adds the bias and applies the ReLU, and
torch's autograd differentiates the rest. For the common case (a dense layer whose output neurons
all use one multiplier, training mode) :class:`FusedChain` computes the same forward with the same
operations under ``no_grad`` and writes the backward out by hand, so the outputs and every
gradient are the same bits as the reference's; tests/trainer/test_emulation_fused.py checks both,
with and without fault maps, and tests/trainer/test_kernels.py the whole-MLP chain. Anything else
(several mode groups, convolutions, no bias, evaluation) takes the reference path.
"""

from __future__ import annotations

from typing import Any

import torch

from axtrain.trainer.ste import ste_mask


def _ste(grad: torch.Tensor) -> torch.Tensor:
    return ste_mask(grad)


def fused_applicable(op: str, groups: int, has_bias: bool, exact: bool, a: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether :class:`FusedChain` stands in for the reference on this layer call."""
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


class FusedChain(torch.autograd.Function):
    """One or more consecutive fused dense layers as one autograd node (one layer of any network;
    a whole MLP when every layer is fused).

    Per layer (``layers``: one ``(prepare_fn, act_fn, out_fn, relu)`` each): ``prepare_fn(w, b)``
    gives the multiplier-side weights and the quantised bias (the reference's pipelines, plain
    functions run without autograd, or what was computed ahead with the same operations),
    ``act_fn`` the input's transform, ``out_fn(acc)`` the ReLU (in place on the accumulator, which
    the backward reads as the ReLU's output, when ``relu``) and the requantised output, so the
    forward is the reference's bit for bit. ``params`` are the layers' weights and biases,
    alternating, so that autograd hands their gradients back. The backward is written out with
    the operations autograd would run, layer by layer in reverse: ``ste_mask`` at every
    straight-through point, ``threshold_backward`` for the ReLU, ``sum_to_size`` for the bias, the
    two ``mm`` of ``MmBackward`` in the order torch's ``mm_mat1_backward`` / ``mm_mat2_backward``
    choose for these layouts. Between two layers the reference masks the gradient twice, once for
    the next layer's activation transform and once for this layer's requantisation; the mask is
    idempotent bit for bit (a kept element is multiplied by exactly 1.0, a dropped one becomes a
    signed zero or NaN, which the second mask keeps as it is), so it is applied once. The bias is
    quantised in float32 where the reference uses float64: the same float32 bits (decisions 197);
    its gradient is masked in float32, the float64 mask of the reference keeping or zeroing the
    same exactly converted values.
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
