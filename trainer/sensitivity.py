"""AxTrain-act's sensitivity regulariser ``S(w) = sum_k sum_w |w| * |dO_k/dw|`` (paper Eq. 4-5).

``O_k`` are the network outputs (the logits) and ``w`` runs over every weight of every
``nn.Linear`` / ``nn.Conv2d`` layer. Biases are left out by default: the paper sums over the weights,
and in our hardware the biases are neither multiplied by the approximate multipliers nor stored in
the near-threshold SRAM (docs/decisions.md, NTV faults hit weights only); ``include_bias=True`` adds
``|b| * |dO_k/db|`` for users who want it.

How the batch enters (``form``):

* ``"per_sample"`` (default): ``S = mean_n S_n`` with ``S_n`` the paper's S for the single input
  ``x_n``; the sum over samples is *outside* the absolute value. This is the sensitivity that an
  input actually sees, cannot cancel between samples, and factorises (below), so it is also cheap.
* ``"batch"``: ``S = sum_k sum_w |w| * |d(mean_n O_nk)/dw|``; the sum over samples is *inside* the
  absolute value, as a double backward of the batch-mean outputs computes it. By the triangle
  inequality it is never larger than the per-sample form; opposite-signed sample gradients cancel.

Both use the *mean* over the batch, so ``gamma`` does not depend on the batch size.

Which outputs (``output_layer``, docs/act.md "Which outputs"): ``"softmax"`` takes ``O_k`` as the
logits ``z_k`` of the last layer (a softmax network's outputs before the softmax); ``"sigmoid"``
takes ``O_k = sigmoid(z_k)``, the outputs of the paper's Sigmoid output layer. Then
``dO_k/dw = sigmoid'(z_k) dz_k/dw``: the Jacobian sweep starts from ``diag(sigmoid'(z_n))`` instead
of the identity, and ``sigmoid'(z) = s (1 - s)`` stays in the autograd graph (S depends on the
weights through it too).

The closed form. For a dense layer ``z = W a + b`` and one sample, ``dO_k/dW_ji = delta_kj * a_i``
with ``delta_kj = dO_k/dz_j``, so ``sum_ji |W_ji| |delta_kj| |a_i| = |delta_k|^T (|W| |a|)``: the
layer's per-sample term needs only the Jacobian ``delta`` of the K outputs w.r.t. the layer's
pre-activations (K = 2..10) and one extra GEMM ``|a| |W|^T``. The Jacobian is propagated explicitly
from the logits down through the layers (``J <- J W`` for dense, a transposed convolution for conv,
the ReLU mask, the max-pool argmax scatter, a reshape for flatten). A conv weight is shared across
positions, so its per-sample gradient ``delta^T patches`` (im2col via ``F.unfold``) is formed with a
batched GEMM and then ``|W| * |G|`` summed; no per-output backward pass is ever run.

The result keeps its autograd graph, so ``(loss + gamma * S).backward()`` gives the exact gradient of
``E_tot``: the same value as a double backward (Pearlmutter's R-operator, paper Eq. 6-11), since
both treat the ReLU masks and max-pool argmaxes as constants and ``d|x|/dx = sign(x)`` with
``sign(0) = 0``. :func:`sensitivity_reference` is that double backward (the slow reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from axtrain.errors import ConfigError

Form = Literal["per_sample", "batch"]
FORMS: tuple[str, ...] = ("per_sample", "batch")
_SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten)


@dataclass
class _Record:
    """What the backward Jacobian sweep needs from the forward pass of one module."""

    module: nn.Module
    input: Tensor
    output_shape: torch.Size
    extra: Tensor | None = None  # ReLU: mask; MaxPool2d: argmax indices; Conv2d: unfolded patches

    @property
    def weighted(self) -> nn.Linear | nn.Conv2d:
        """The module of a weighted layer's record, typed (callers only ask weighted records)."""
        assert isinstance(self.module, (nn.Linear, nn.Conv2d))
        return self.module


@dataclass
class _Delta:
    """``dO/dz`` of one layer, ``[N, K, *z.shape[1:]]``, as ``base[n, k, ...] * mask[n, ...]``:
    ``base`` is a tensor, or (just below the logits layer ``W_L``) ``W_L[k, j]`` itself; ``mask``
    is the product of the 0/1 ReLU masks applied since (None: all ones). Keeping the mask apart
    saves a pass over ``[N, K, ...]`` (``sum_k |base * mask| = mask * sum_k |base|``), and the
    ``W_L`` form needs no GEMM at all."""

    n: int
    tensor: Tensor | None = None
    w: Tensor | None = None
    mask: Tensor | None = None
    scale: Tensor | None = None  # w form only: per-sample output scale [N, K] (sigmoid'(z)); None: ones

    def full(self) -> Tensor:
        if self.tensor is not None:
            return self.tensor if self.mask is None else self.tensor * self.mask.unsqueeze(1)
        assert self.w is not None
        base = self.w.unsqueeze(0) if self.scale is None else self.scale.unsqueeze(2) * self.w.unsqueeze(0)
        if self.mask is None:
            return base.expand(self.n, -1, -1)
        return base * self.mask.unsqueeze(1)

    def abs_sum(self) -> Tensor:
        """``sum_k |delta[:, k]|``, shape ``[N, *z.shape[1:]]``."""
        if self.tensor is not None:
            summed = self.tensor.abs().sum(1)
            return summed if self.mask is None else summed * self.mask
        assert self.w is not None
        if self.scale is not None:
            # sum_k |s_nk W_kj| = (|s| @ |W|)_nj
            column = self.scale.abs() @ self.w.abs()
            return column if self.mask is None else self.mask * column
        column = self.w.abs().sum(0)
        return column.expand(self.n, -1) if self.mask is None else self.mask * column


def _check(model: nn.Module, form: str) -> None:
    if form not in FORMS:
        raise ConfigError(f"sensitivity form {form!r} is unknown; use one of {', '.join(FORMS)}")
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"sensitivity needs an nn.Sequential, got {type(model).__name__}")
    for index, module in enumerate(model):
        if not isinstance(module, _SUPPORTED):
            names = ", ".join(t.__name__ for t in _SUPPORTED)
            raise ConfigError(
                f"sensitivity: layer {index} ({type(module).__name__}) is not supported; supported: {names}"
            )
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros":
                raise ConfigError(
                    f"sensitivity: Conv2d layer {index} needs groups=1 and integer zero padding"
                )


def _forward(model: nn.Sequential, x: Tensor) -> tuple[Tensor, list[_Record]]:
    """Run the model module by module, keeping what the Jacobian sweep needs."""
    records: list[_Record] = []
    h = x
    for module in model:
        if isinstance(module, nn.Linear):
            if h.dim() != 2:
                raise ConfigError(f"sensitivity: Linear layer got a {h.dim()}-d input; flatten first")
            out = F.linear(h, module.weight, module.bias)
            records.append(_Record(module, h, out.shape))
        elif isinstance(module, nn.Conv2d):
            padding = cast(tuple[int, ...], module.padding)  # numeric: check_model admits no padding='same'
            patches = F.unfold(h, module.kernel_size, module.dilation, padding, module.stride)
            out = module(h)
            records.append(_Record(module, h, out.shape, patches))
        elif isinstance(module, nn.ReLU):
            # relu'(z) = 1[z > 0], the convention of torch's own threshold_backward, read off the
            # output as sign(relu(z)) (1 for z > 0, else 0, for finite z): one float pass, where the
            # comparison and its cast to float cost ten times that on the CPU (49 us against 5 us
            # for 128 x 128). Detached: the mask is a constant, as the comparison was.
            out = torch.relu(h)
            records.append(_Record(module, h, out.shape, torch.sign(out.detach())))
        elif isinstance(module, nn.MaxPool2d):
            out, indices = F.max_pool2d(
                h, module.kernel_size, module.stride, module.padding, module.dilation,
                ceil_mode=module.ceil_mode, return_indices=True,
            )
            records.append(_Record(module, h, out.shape, indices))
        else:  # nn.Flatten
            out = module(h)
            records.append(_Record(module, h, out.shape))
        h = out
    return h, records


def _conv_input_jacobian(rec: _Record, jac: Tensor) -> Tensor:
    """``J [N, K, OC, OH, OW]`` -> ``J [N, K, C, H, W]`` through a conv layer (transposed conv)."""
    conv = rec.module
    assert isinstance(conv, nn.Conv2d)
    padding = cast(tuple[int, ...], conv.padding)  # numeric: check_model admits no padding='same'
    n, k = jac.shape[:2]
    in_h, in_w = rec.input.shape[-2:]
    out_h, out_w = jac.shape[-2:]
    output_padding = []
    for size, out_size, kernel, stride, pad, dil in zip(
        (in_h, in_w), (out_h, out_w), conv.kernel_size, conv.stride, padding, conv.dilation, strict=True
    ):
        output_padding.append(size - ((out_size - 1) * stride - 2 * pad + dil * (kernel - 1) + 1))
    flat = F.conv_transpose2d(
        jac.reshape(n * k, *jac.shape[2:]), conv.weight, None, conv.stride, padding,
        tuple(output_padding), 1, conv.dilation,
    )
    return flat.reshape(n, k, *flat.shape[1:])


def _maxpool_input_jacobian(rec: _Record, jac: Tensor) -> Tensor:
    """Scatter-add the Jacobian onto each window's argmax (exact also for overlapping windows)."""
    assert rec.extra is not None
    n, k, c = jac.shape[:3]
    in_h, in_w = rec.input.shape[-2:]
    index = rec.extra.reshape(n, 1, c, -1).expand(n, k, c, rec.extra.shape[-2] * rec.extra.shape[-1])
    out = jac.new_zeros(n, k, c, in_h * in_w)
    out = out.scatter_add(-1, index, jac.reshape(n, k, c, -1))
    return out.reshape(n, k, c, in_h, in_w)


def _logits_layer_term(rec: _Record, form: str, include_bias: bool) -> Tensor:
    """:func:`_layer_term` of the Linear layer that produces the logits, where ``delta = I``:
    ``sum_{k,i} |W_ki| |a_i|`` needs no Jacobian and no GEMM (few ops: cheaper on a busy CPU)."""
    module = rec.weighted
    a = rec.input.abs().mean(0) if form == "per_sample" else rec.input.mean(0).abs()
    term = (module.weight.abs().sum(0) * a).sum()
    if include_bias and module.bias is not None:
        term = term + module.bias.abs().sum()
    return term


def _layer_term(rec: _Record, factored: _Delta, form: str, include_bias: bool) -> Tensor:
    """One weighted layer's contribution, given its ``delta = dO/dz``."""
    module = rec.weighted
    n = factored.n
    weight = module.weight
    bias = module.bias if include_bias else None
    if isinstance(module, nn.Linear) and form == "per_sample":
        # sum_{n,k,j} |delta_nkj| (|a_n| |W|^T)_j, since |delta_kj a_i| = |delta_kj| |a_i|.
        abs_sum = factored.abs_sum()
        term = (abs_sum * (rec.input.abs() @ weight.abs().T)).sum() / n
        if bias is not None:
            term = term + (abs_sum.sum(0) * bias.abs()).sum() / n
        return term
    delta = factored.full()
    if isinstance(module, nn.Linear):
        grad = torch.einsum("nkj,ni->kji", delta, rec.input) / n  # d(mean_n O_nk)/dW
        term = (weight.abs() * grad.abs()).sum()
        if bias is not None:
            term = term + (bias.abs() * (delta.sum(0) / n).abs()).sum()
        return term
    # Conv2d: the weight is shared over positions, so the per-sample gradient is a sum over them.
    assert rec.extra is not None
    d = delta.reshape(n, delta.shape[1], delta.shape[2], -1)  # [N, K, OC, P]
    w2 = weight.reshape(weight.shape[0], -1)  # [OC, C*kh*kw], the unfold order
    if form == "per_sample":
        grad = d @ rec.extra.transpose(1, 2).unsqueeze(1)  # [N, K, OC, CKK]
        term = (w2.abs() * grad.abs()).sum() / n
        if bias is not None:
            term = term + (bias.abs() * d.sum(-1).abs()).sum() / n
    else:
        grad = torch.einsum("nkop,ncp->koc", d, rec.extra) / n
        term = (w2.abs() * grad.abs()).sum()
        if bias is not None:
            term = term + (bias.abs() * (d.sum((0, 3)) / n).abs()).sum()
    return term


def _output_scale(out: Tensor, output_layer: str) -> Tensor | None:
    """``dO/dz`` of the output layer, elementwise ([N, K]); None for the logits (softmax reading)."""
    if output_layer == "softmax":
        return None
    if output_layer != "sigmoid":
        raise ConfigError(f"sensitivity: output layer {output_layer!r} is unknown; use sigmoid or softmax")
    s = torch.sigmoid(out)
    return s * (1 - s)


def _layer_deltas(
    model: nn.Sequential, x: Tensor, form: str, output_layer: str = "softmax"
) -> tuple[Tensor, list[tuple[_Record, _Delta]]]:
    """The logits and, for every Linear/Conv2d (last first), its record and ``delta = dO/dz``."""
    _check(model, form)
    out, records = _forward(model, x)
    if out.dim() != 2:
        raise ConfigError(f"sensitivity: the model output must be [N, K] logits, got shape {tuple(out.shape)}")
    n, k = out.shape
    scale = _output_scale(out, output_layer)
    weighted = [i for i, r in enumerate(records) if isinstance(r.module, (nn.Linear, nn.Conv2d))]
    if not weighted:
        return out, []
    # J[n, k, ...] = dO_nk / d(current tensor) = base * mask (see _Delta); starts as dO/dz: the
    # identity (logits) or diag(sigmoid'(z_n)). While only ReLUs separate us from a logits Linear
    # layer W_L, the base stays W_L itself (times the per-sample scale).
    if scale is None:
        jac: Tensor | None = torch.eye(k, dtype=out.dtype, device=out.device).expand(n, k, k)
    else:
        jac = torch.diag_embed(scale)
    w_top: Tensor | None = None
    mask: Tensor | None = None
    found: list[tuple[_Record, _Delta]] = []
    for index in range(len(records) - 1, weighted[0] - 1, -1):
        rec = records[index]
        module = rec.module
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            found.append((rec, _Delta(n, jac, None if jac is not None else w_top, mask, None if jac is not None else scale)))
            if index == weighted[0]:
                break  # nothing below the first weighted layer has weights
            if isinstance(module, nn.Linear) and index == len(records) - 1:
                jac, w_top = None, module.weight  # I W_L = W_L
            elif isinstance(module, nn.Linear) and jac is None:
                # J W = sum_j W_L[k, j] mask[n, j] W[j, i] = mask @ T with T[j, (k, i)] = W_L[k, j] W[j, i]:
                # one GEMM whose left operand is a constant, so its backward is one GEMM, not two.
                assert w_top is not None
                # W_L^T made contiguous first: the broadcast product then comes out contiguous and
                # the reshape is a view (with the transposed view torch laid the product out
                # permuted, and the reshape copied all K x width x width of it). Same products.
                table = (w_top.T.contiguous().unsqueeze(2) * module.weight.unsqueeze(1)).reshape(w_top.shape[1], -1)
                left = mask if mask is not None else table.new_ones(n, w_top.shape[1])
                jac = (left @ table).reshape(n, k, -1)
                if scale is not None:
                    jac = jac * scale.unsqueeze(2)
            elif isinstance(module, nn.Linear):
                jac = _Delta(n, jac, None, mask).full() @ module.weight
            else:
                jac = _conv_input_jacobian(rec, _Delta(n, jac, None, mask).full())
            mask = None
        elif isinstance(module, nn.ReLU):
            assert rec.extra is not None
            mask = rec.extra if mask is None else mask * rec.extra
        else:
            jac = _Delta(n, jac, None if jac is not None else w_top, mask, None if jac is not None else scale).full()
            jac, mask = (_maxpool_input_jacobian(rec, jac) if isinstance(module, nn.MaxPool2d)
                         else jac.reshape(n, k, *rec.input.shape[1:])), None
    return out, found


def _plain_mlp(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of ``Linear, ReLU, Linear, ..., ReLU, Linear`` (exactly these classes), else None."""
    if not isinstance(model, nn.Sequential):
        return None
    modules = list(model)
    if len(modules) % 2 == 0:
        return None
    linears = modules[0::2]
    if all(type(m) is nn.Linear for m in linears) and all(type(m) is nn.ReLU for m in modules[1::2]):
        return cast(list[nn.Linear], linears)
    return None


def _plain_mlp_forward_with_sensitivity(linears: list[nn.Linear], x: Tensor, output_layer: str) -> tuple[Tensor, Tensor]:
    """:func:`forward_with_sensitivity` of a plain MLP (:func:`_plain_mlp`), per-sample form, no bias.

    The training step's path (every MLP application). It runs the torch operations of the general
    path (``_forward``, ``_layer_deltas``, ``_layer_term``, ``_logits_layer_term``) with the same
    operands, in the same order, so S, the logits and every gradient are the same bits (the order in
    which operations are created fixes the order in which the backward pass accumulates a weight's
    gradients); it leaves out only the per-step Python around them (records, ``_Delta`` objects,
    type dispatch, the model check) and the operations whose results the MLP never reads (the
    identity Jacobian of the logits and the ``0 +`` that started the sum): 5-9 % of a small MLP's act
    step, decisions 216; tests/trainer/test_sensitivity.py compares the two paths bit for bit.
    """
    # _forward: the same F.linear / relu / sign-of-relu mask per layer.
    inputs: list[Tensor] = []
    masks: list[Tensor] = []
    h = x
    last = len(linears) - 1
    for index, layer in enumerate(linears):
        inputs.append(h)
        h = F.linear(h, layer.weight, layer.bias)
        if index < last:
            h = torch.relu(h)
            masks.append(torch.sign(h.detach()))
    out = h
    n = out.shape[0]
    scale = _output_scale(out, output_layer)
    diag = torch.diag_embed(scale) if scale is not None else None  # _layer_deltas' first Jacobian
    weights = [layer.weight for layer in linears]
    # _layer_deltas below the two top layers: the table GEMM, then J <- (J * mask) @ W.
    jacs: dict[int, Tensor] = {}
    if last >= 2:
        w_top, w_next = weights[last], weights[last - 1]
        table = (w_top.T.contiguous().unsqueeze(2) * w_next.unsqueeze(1)).reshape(w_top.shape[1], -1)
        jac = (masks[last - 1] @ table).reshape(n, w_top.shape[0], -1)
        if scale is not None:
            jac = jac * scale.unsqueeze(2)
        jacs[last - 2] = jac
        for index in range(last - 3, -1, -1):
            jac = (jac * masks[index + 1].unsqueeze(1)) @ weights[index + 1]
            jacs[index] = jac
    # The terms, top layer first (forward_with_sensitivity's order).
    top = weights[last]
    if diag is None:
        total = (top.abs().sum(0) * inputs[last].abs().mean(0)).sum()
    else:
        total = (diag.abs().sum(1) * (inputs[last].abs() @ top.abs().T)).sum() / n
    for index in range(last - 1, -1, -1):
        if index == last - 1:
            column = top.abs().sum(0) if scale is None else scale.abs() @ top.abs()
            abs_sum = masks[index] * column
        else:
            abs_sum = jacs[index].abs().sum(1) * masks[index]
        total = total + (abs_sum * (inputs[index].abs() @ weights[index].abs().T)).sum() / n
    return out, total


def forward_with_sensitivity(
    model: nn.Sequential, x: Tensor, form: Form = "per_sample", include_bias: bool = False, output_layer: str = "softmax"
) -> tuple[Tensor, Tensor]:
    """The logits ``[N, K]`` and ``S`` (a differentiable scalar) from one shared forward pass.

    Use this in a training step so the loss and S share the forward: ``out, s = ...;
    (loss_fn(out, y) + gamma * s).backward()``. ``output_layer``: ``"softmax"`` takes S on the
    logits, ``"sigmoid"`` on ``sigmoid(logits)`` (module docstring); the logits are returned either way.
    """
    if form == "per_sample" and not include_bias and x.dim() == 2:
        linears = _plain_mlp(model)
        if linears is not None:
            return _plain_mlp_forward_with_sensitivity(linears, x, output_layer)
    return _general_forward_with_sensitivity(model, x, form, include_bias, output_layer)


def _general_forward_with_sensitivity(
    model: nn.Sequential, x: Tensor, form: str, include_bias: bool, output_layer: str
) -> tuple[Tensor, Tensor]:
    """:func:`forward_with_sensitivity` for any supported network (the definition of the fast path)."""
    out, found = _layer_deltas(model, x, form, output_layer)
    total = out.new_zeros(())
    for position, (rec, delta) in enumerate(found):
        if position == 0 and output_layer == "softmax" and isinstance(rec.module, nn.Linear) and rec.output_shape == out.shape:
            total = total + _logits_layer_term(rec, form, include_bias)
        else:
            total = total + _layer_term(rec, delta, form, include_bias)
    return out, total


def weight_sensitivities(model: nn.Sequential, x: Tensor, form: Form = "per_sample", output_layer: str = "softmax") -> list[Tensor]:
    """Every weight's own term ``|w| * sum_k |dO_k/dw|`` (per-sample form: averaged over samples),
    one tensor shaped like the weight per Linear/Conv2d in layer order; they sum to :func:`sensitivity`.
    Detached (for maps and ranking, not for training)."""
    _, found = _layer_deltas(model, x, form, output_layer)
    maps: list[Tensor] = []
    for rec, factored in reversed(found):
        weight = rec.weighted.weight
        delta = factored.full()
        n = delta.shape[0]
        if isinstance(rec.module, nn.Linear):
            if form == "per_sample":
                grad_abs = torch.einsum("nkj,ni->ji", delta.abs(), rec.input.abs()) / n
            else:
                grad_abs = (torch.einsum("nkj,ni->kji", delta, rec.input) / n).abs().sum(0)
            maps.append((weight.abs() * grad_abs).detach())
            continue
        assert rec.extra is not None
        d = delta.reshape(n, delta.shape[1], delta.shape[2], -1)
        if form == "per_sample":
            grad_abs = (d @ rec.extra.transpose(1, 2).unsqueeze(1)).abs().sum((0, 1)) / n
        else:
            grad_abs = (torch.einsum("nkop,ncp->koc", d, rec.extra) / n).abs().sum(0)
        maps.append((weight.abs() * grad_abs.reshape(weight.shape)).detach())
    return maps


def sensitivity(
    model: nn.Sequential, x: Tensor, form: Form = "per_sample", include_bias: bool = False, output_layer: str = "softmax"
) -> Tensor:
    """``S(w)`` of ``model`` on the batch ``x`` (paper Eq. 5), differentiable w.r.t. the parameters.

    ``form`` is ``"per_sample"`` (default; mean over samples of each sample's S) or ``"batch"`` (S of
    the batch-mean outputs); see the module docstring. Cost of the per-sample form on an MLP: about
    one extra forward and backward (the Jacobian of K outputs is carried as a ``[N, K, width]`` tensor).
    """
    return forward_with_sensitivity(model, x, form, include_bias, output_layer)[1]


def weighted_parameters(model: nn.Sequential, include_bias: bool = False) -> list[Tensor]:
    """The parameters S sums over, in layer order (weights, then bias, of each Linear/Conv2d)."""
    params: list[Tensor] = []
    for module in model:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            params.append(module.weight)
            if include_bias and module.bias is not None:
                params.append(module.bias)
    return params


def sensitivity_reference(
    model: nn.Sequential, x: Tensor, form: Form = "per_sample", include_bias: bool = False, output_layer: str = "softmax"
) -> Tensor:
    """The slow, obvious definition by autograd (one backward per output, per sample for per_sample).

    ``"batch"``: one ``autograd.grad(mean_n O_nk, w, create_graph=True)`` per output k, i.e. the naive
    double backward (the ~15x baseline of benchmarks/bench_act.py). ``"per_sample"``: the same for
    every single sample, then the mean; N*K backward passes, for tests only.
    """
    _check(model, form)
    params = weighted_parameters(model, include_bias)
    out = model(x)
    if output_layer == "sigmoid":
        out = torch.sigmoid(out)  # O_k = sigmoid(z_k): autograd differentiates through it
    elif output_layer != "softmax":
        raise ConfigError(f"sensitivity: output layer {output_layer!r} is unknown; use sigmoid or softmax")
    n, k = out.shape
    total = out.new_zeros(())
    if form == "batch":
        mean_out = out.mean(0)
        for kk in range(k):
            grads = torch.autograd.grad(mean_out[kk], params, retain_graph=True, create_graph=True)
            total = total + sum((p.abs() * g.abs()).sum() for p, g in zip(params, grads, strict=True))
        return total
    for nn_ in range(n):
        for kk in range(k):
            grads = torch.autograd.grad(out[nn_, kk], params, retain_graph=True, create_graph=True)
            total = total + sum((p.abs() * g.abs()).sum() for p, g in zip(params, grads, strict=True))
    return total / n
