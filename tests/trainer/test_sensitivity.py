"""S(w) (paper Eq. 5): the closed form against the per-weight definition, and its gradient against
finite differences and a Hessian-vector-product construction. All in float64."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.func import functional_call

from axtrain.errors import ConfigError
from axtrain.trainer.outputs import task_loss
from axtrain.trainer.sensitivity import (
    _general_forward_with_sensitivity,
    _plain_mlp,
    forward_with_sensitivity,
    sensitivity,
    sensitivity_reference,
    weight_sensitivities,
    weighted_parameters,
)

DT = torch.float64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only waits for the busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).to(DT)


def _cnn(seed: int) -> nn.Sequential:
    """Strided, padded, dilated convs and an overlapping max-pool: every Jacobian path is exercised."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(3, 4, 2, stride=2, padding=1, dilation=1), nn.ReLU(),
        nn.Conv2d(4, 3, 2, dilation=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(27, 4), nn.ReLU(), nn.Linear(4, 3),
    ).to(DT)


def _linear_stack(seed: int) -> nn.Sequential:
    """No ReLU between the last two layers, two ReLUs in a row: the factored Jacobian's edge cases."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.ReLU(), nn.Linear(6, 4), nn.Linear(4, 3)).to(DT)


def _inputs(kind: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 5) if kind == "mlp" else (n, 2, 9, 9)
    return torch.randn(shape, generator=g, dtype=DT)


def _definition(model: nn.Sequential, x: torch.Tensor, form: str, include_bias: bool) -> torch.Tensor:
    """Eq. 5 spelled out: for every output k, every weight w: |w| * |dO_k/dw| by autograd.grad."""
    params = []
    for m in model:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            params.append(m.weight)
            if include_bias:
                params.append(m.bias)
    out = model(x)
    n, k = out.shape
    if form == "batch":
        targets = [[out[:, kk].sum() / n for kk in range(k)]]  # d(mean_n O_nk)/dw, sum inside |.|
    else:
        targets = [[out[i, kk] for kk in range(k)] for i in range(n)]
    total = 0.0
    for per_output in targets:
        for o in per_output:
            grads = torch.autograd.grad(o, params, retain_graph=True)
            for p, g in zip(params, grads, strict=True):
                for pw, gw in zip(p.detach().flatten().tolist(), g.flatten().tolist(), strict=True):
                    total += abs(pw) * abs(gw)
    return torch.tensor(total / (1 if form == "batch" else n), dtype=DT)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "stack"])
@pytest.mark.parametrize("form", ["per_sample", "batch"])
@pytest.mark.parametrize("include_bias", [False, True])
def test_closed_form_equals_definition(kind: str, form: str, include_bias: bool) -> None:
    model = {"mlp": _mlp, "cnn": _cnn, "stack": _linear_stack}[kind](1)
    x = _inputs("cnn" if kind == "cnn" else "mlp", 4, 2)
    expected = _definition(model, x, form, include_bias)
    got = sensitivity(model, x, form, include_bias)
    assert torch.allclose(got, expected, rtol=1e-10, atol=0)
    assert torch.allclose(sensitivity_reference(model, x, form, include_bias), expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_batch_form_never_exceeds_per_sample(kind: str) -> None:
    # Triangle inequality: |sum_n g_n| <= sum_n |g_n|.
    model = _mlp(3) if kind == "mlp" else _cnn(3)
    x = _inputs(kind, 6, 4)
    assert sensitivity(model, x, "batch") < sensitivity(model, x, "per_sample")


def test_single_sample_forms_agree() -> None:
    model, x = _mlp(5), _inputs("mlp", 1, 6)
    assert torch.allclose(sensitivity(model, x, "batch"), sensitivity(model, x, "per_sample"), rtol=1e-12)


def test_forward_output_is_the_model_output() -> None:
    model, x = _cnn(7), _inputs("cnn", 3, 8)
    out, _ = forward_with_sensitivity(model, x)
    assert torch.allclose(out, model(x), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "stack"])
@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_gradient_equals_double_backward(kind: str, form: str) -> None:
    """Autograd through the closed form == the naive double backward (Pearlmutter's R-operator)."""
    model = {"mlp": _mlp, "cnn": _cnn, "stack": _linear_stack}[kind](9)
    x = _inputs("cnn" if kind == "cnn" else "mlp", 4, 10)
    params = list(model.parameters())
    got = torch.autograd.grad(sensitivity(model, x, form), params, materialize_grads=True)
    ref = torch.autograd.grad(sensitivity_reference(model, x, form), params, materialize_grads=True)
    for g, r in zip(got, ref, strict=True):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)


def _hvp_gradient(model: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """dS/dtheta of the per-sample form from Hessian-vector products (paper Eq. 6-11).

    With g_nk = dO_nk/dw: dS_n/dtheta = sum_k [ sign(w)|g_nk| on the weights
    + H(O_nk) (|w| * sign(g_nk)) ], H(O_nk) the Hessian of one output w.r.t. all parameters.
    """
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach().clone() for _, p in model.named_parameters())
    weights = {f"{i}.weight" for i, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv2d))}
    total = {n: torch.zeros_like(v) for n, v in zip(names, values, strict=True)}
    n_samples = x.shape[0]
    for i in range(n_samples):
        for k in range(model(x[:1]).shape[1]):
            def output(*theta: torch.Tensor, i: int = i, k: int = k) -> torch.Tensor:
                return functional_call(model, dict(zip(names, theta, strict=True)), (x[i : i + 1],))[0, k]

            grads = torch.autograd.functional.jacobian(output, values)
            v = tuple(
                (val.abs() * g.sign()) if name in weights else torch.zeros_like(val)
                for name, val, g in zip(names, values, grads, strict=True)
            )
            _, hv = torch.autograd.functional.hvp(output, values, v)
            for name, val, g, h in zip(names, values, grads, hv, strict=True):
                total[name] += h
                if name in weights:
                    total[name] += val.sign() * g.abs()
    return {name: t / n_samples for name, t in total.items()}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_gradient_equals_hvp_construction(kind: str) -> None:
    model = _mlp(11) if kind == "mlp" else _cnn(11)
    x = _inputs(kind, 3 if kind == "mlp" else 2, 12)
    s = sensitivity(model, x, "per_sample")
    got = dict(zip([n for n, _ in model.named_parameters()],
                   torch.autograd.grad(s, list(model.parameters()), materialize_grads=True), strict=True))
    expected = _hvp_gradient(model, x)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-10, atol=1e-12), name


def _smooth_mlp_and_input() -> tuple[nn.Sequential, torch.Tensor]:
    """A small MLP and batch whose S is smooth within +-1e-4 of its parameters.

    Every hidden pre-activation, every weight and every nonzero per-sample dO_k/dw is at least 1e-3
    away from zero, so no ReLU mask or |.| flips under the finite-difference steps.
    """
    for seed in range(200):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(DT)
        x = torch.randn(3, 3, dtype=DT)
        pre = [model[0](x), model[2](model[1](model[0](x)))]
        if min(p.abs().min().item() for p in pre) < 1e-2:
            continue
        if min(m.weight.abs().min().item() for m in model if isinstance(m, nn.Linear)) < 1e-2:
            continue
        out = model(x)
        smallest = float("inf")
        for i in range(3):
            for k in range(2):
                for g in torch.autograd.grad(out[i, k], weighted_parameters(model), retain_graph=True):
                    nonzero = g.abs()[g != 0]
                    if nonzero.numel():
                        smallest = min(smallest, nonzero.min().item())
        if smallest > 1e-3:
            return model, x
    raise AssertionError("no kink-free network found in 200 seeds")


@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_gradient_equals_central_finite_differences(form: str) -> None:
    """Central differences, step 1e-6: truncation ~1e-12, rounding ~1e-10; tolerance 1e-7 x max|grad|."""
    model, x = _smooth_mlp_and_input()
    params = list(model.parameters())
    grads = torch.autograd.grad(sensitivity(model, x, form), params, materialize_grads=True)
    eps = 1e-6
    scale = max(g.abs().max().item() for g in grads)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            flat = p.view(-1)
            for j in range(flat.numel()):
                saved = flat[j].item()
                flat[j] = saved + eps
                plus = sensitivity(model, x, form).item()
                flat[j] = saved - eps
                minus = sensitivity(model, x, form).item()
                flat[j] = saved
                assert abs((plus - minus) / (2 * eps) - g.view(-1)[j].item()) < 1e-7 * scale


def test_bad_inputs_raise_one_line_errors() -> None:
    model, x = _mlp(0), _inputs("mlp", 2, 0)
    with pytest.raises(ConfigError, match="form 'sum'"):
        sensitivity(model, x, "sum")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"layer 1 \(Dropout\)"):
        sensitivity(nn.Sequential(nn.Linear(5, 3), nn.Dropout()).to(DT), x)
    with pytest.raises(ConfigError, match="nn.Sequential"):
        sensitivity(nn.Linear(5, 3).to(DT), x)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_weight_sensitivities_are_the_per_weight_terms(kind: str, form: str) -> None:
    """Each map entry is |w| * sum_k |dO_k/dw| (per-sample: averaged), by autograd per output."""
    model = _mlp(13) if kind == "mlp" else _cnn(13)
    x = _inputs(kind, 3, 14)
    maps = weight_sensitivities(model, x, form)
    params = weighted_parameters(model)
    out = model(x)
    expected = [torch.zeros_like(p) for p in params]
    rows = [out.mean(0)] if form == "batch" else [out[i] for i in range(x.shape[0])]
    for row in rows:
        for k in range(out.shape[1]):
            grads = torch.autograd.grad(row[k], params, retain_graph=True)
            for e, p, g in zip(expected, params, grads, strict=True):
                e += (p.abs() * g.abs()).detach() / len(rows)
    for m, e in zip(maps, expected, strict=True):
        assert torch.allclose(m, e, rtol=1e-10, atol=1e-15)
    assert torch.allclose(sum(m.sum() for m in maps), sensitivity(model, x, form), rtol=1e-12)


# -- the Sigmoid reading: O_k = sigmoid(z_k) (paper Section 2.2; trainer --output-layer sigmoid) --


class _WithSigmoid(nn.Module):
    """``model`` followed by a Sigmoid: the paper's outputs, for the definitions by autograd."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))


def _sigmoid_definition(model: nn.Sequential, x: torch.Tensor, form: str) -> torch.Tensor:
    """Eq. 5 with O = sigmoid(z), spelled out per output and weight with autograd.grad."""
    wrapped = _WithSigmoid(model)
    params = weighted_parameters(model)
    out = wrapped(x)
    n, k = out.shape
    rows = [[out[:, kk].mean() for kk in range(k)]] if form == "batch" else [[out[i, kk] for kk in range(k)] for i in range(n)]
    total = torch.zeros((), dtype=DT)
    for per_output in rows:
        for o in per_output:
            for p, g in zip(params, torch.autograd.grad(o, params, retain_graph=True), strict=True):
                total = total + (p.detach().abs() * g.abs()).sum()
    return total / (1 if form == "batch" else n)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "stack"])
@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_sigmoid_closed_form_equals_definition(kind: str, form: str) -> None:
    model = {"mlp": _mlp, "cnn": _cnn, "stack": _linear_stack}[kind](21)
    x = _inputs("cnn" if kind == "cnn" else "mlp", 4, 22)
    expected = _sigmoid_definition(model, x, form)
    got = sensitivity(model, x, form, output_layer="sigmoid")
    assert torch.allclose(got, expected, rtol=1e-10, atol=0)
    assert torch.allclose(sensitivity_reference(model, x, form, output_layer="sigmoid"), expected, rtol=1e-10, atol=0)
    # The two readings differ: sigmoid' < 1/4 scales every term down.
    assert got < 0.25 * sensitivity(model, x, form) * (1 + 1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "stack"])
@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_sigmoid_gradient_equals_double_backward(kind: str, form: str) -> None:
    model = {"mlp": _mlp, "cnn": _cnn, "stack": _linear_stack}[kind](23)
    x = _inputs("cnn" if kind == "cnn" else "mlp", 4, 24)
    params = list(model.parameters())
    got = torch.autograd.grad(sensitivity(model, x, form, output_layer="sigmoid"), params, materialize_grads=True)
    ref = torch.autograd.grad(sensitivity_reference(model, x, form, output_layer="sigmoid"), params, materialize_grads=True)
    for g, r in zip(got, ref, strict=True):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_sigmoid_gradient_equals_central_finite_differences(form: str) -> None:
    """As the logits test: the same kink-free network; sigmoid is smooth, so the bound is the same."""
    model, x = _smooth_mlp_and_input()
    params = list(model.parameters())
    grads = torch.autograd.grad(sensitivity(model, x, form, output_layer="sigmoid"), params, materialize_grads=True)
    eps = 1e-6
    scale = max(g.abs().max().item() for g in grads)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            flat = p.view(-1)
            for j in range(flat.numel()):
                saved = flat[j].item()
                flat[j] = saved + eps
                plus = sensitivity(model, x, form, output_layer="sigmoid").item()
                flat[j] = saved - eps
                minus = sensitivity(model, x, form, output_layer="sigmoid").item()
                flat[j] = saved
                assert abs((plus - minus) / (2 * eps) - g.view(-1)[j].item()) < 1e-7 * scale


@pytest.mark.parametrize("form", ["per_sample", "batch"])
def test_sigmoid_weight_sensitivities_sum_to_s(form: str) -> None:
    model, x = _cnn(25), _inputs("cnn", 3, 26)
    maps = weight_sensitivities(model, x, form, output_layer="sigmoid")
    assert torch.allclose(sum(m.sum() for m in maps), sensitivity(model, x, form, output_layer="sigmoid"), rtol=1e-12)


def test_unknown_output_layer_is_one_line_error() -> None:
    model, x = _mlp(0), _inputs("mlp", 2, 0)
    with pytest.raises(ConfigError, match="output layer 'tanh'"):
        sensitivity(model, x, output_layer="tanh")


# --- the plain-MLP path of the training step (issue 15): the general path's bits -----------------

_PLAIN_SIZES = [(6, 3), (6, 9, 3), (30, 64, 64, 2), (784, 128, 128, 10), (7, 9, 8, 6, 5, 4)]


def _plain(sizes: tuple[int, ...], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def _step_results(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, output_layer: str, general: bool) -> list[torch.Tensor]:
    """Logits, S and every parameter's gradient of one act step's backward (float32, as training)."""
    model.zero_grad(set_to_none=True)
    if general:
        out, s = _general_forward_with_sensitivity(model, x, "per_sample", False, output_layer)
    else:
        out, s = forward_with_sensitivity(model, x, "per_sample", output_layer=output_layer)
    loss = task_loss(out, y, output_layer)
    (loss + 0.01 * s).backward()
    return [out.detach(), s.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("sizes", _PLAIN_SIZES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("output_layer", ["softmax", "sigmoid"])
def test_plain_mlp_path_is_the_general_path_bit_for_bit(sizes: tuple[int, ...], output_layer: str) -> None:
    """Same logits, S and gradients to the bit: the same operations in the same order (a weight
    with three or more gradient contributions, as the logits layer's, sums them in creation order)."""
    for seed in range(2):
        model = _plain(sizes, seed)
        assert _plain_mlp(model) is not None  # the fast path is the one under test
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.rand(16, sizes[0], generator=g) - 0.25 * seed  # seed 1: negative inputs too
        y = torch.randint(0, sizes[-1], (16,), generator=g)
        fast = _step_results(model, x, y, output_layer, general=False)
        general = _step_results(model, x, y, output_layer, general=True)
        assert len(fast) == len(general) == 2 + 2 * (len(sizes) - 1)
        for got, want in zip(fast, general, strict=True):
            assert torch.equal(got, want)


def test_plain_mlp_path_takes_only_plain_mlps() -> None:
    assert _plain_mlp(_linear_stack(0)) is None  # two ReLUs in a row, two Linears in a row
    assert _plain_mlp(_cnn(0)) is None
    assert _plain_mlp(nn.Sequential(nn.Linear(3, 3), nn.ReLU())) is None  # ends in a ReLU
    assert _plain_mlp(nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2))) is None
