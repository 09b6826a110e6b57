"""Small networks and bundles for the runtime tests.

Networks are plain :class:`QuantizedLayer` lists with seeded random integers (stated shapes, odd on
purpose so tiles do not divide the PE array); they are exported with the exporter's public API
(``axtrain.trainer.export.export_layers``, numpy + onnx only) and compiled with
``axtrain.compiler.pipeline.compile_to_bundle``. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

from axtrain.formats.arch import DEFAULT_ARCH, Architecture
from axtrain.formats.bundle import Bundle, load_bundle
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import parse_mode

# A tiny array: 6 PEs, 8-word local memories, a 48-word weight buffer and 4 bias registers, so that
# every layer needs several tiles, chunks, weight reloads and bias blocks.
TINY_ARCH = Architecture(
    pe_rows=2, pe_cols=3, weight_buffer_bytes=96, neuron_buffer_bytes=4096, bias_buffer_words=4,
    pe_weight_memory_bytes=16, pe_neuron_memory_bytes=16, weight_buffer_bandwidth=6, neuron_buffer_bandwidth=10,
    dram_bandwidth=7, dram_latency_cycles=5,
)
ARCHS = {"default": Architecture(), "tiny": TINY_ARCH}


def dense(rng: np.random.Generator, name: str, n_out: int, n_in: int, fi: F, fo: F, relu: bool = True, modes: Sequence[str] = ("exact",), v: float = 1.1) -> QuantizedLayer:
    w = rng.integers(-100, 100, size=(n_out, n_in))
    b = rng.integers(-3000, 3000, size=n_out)
    return QuantizedLayer(name, "dense", fi, fo, w, F(8, 7), b, relu, tuple(parse_mode(m) for m in modes), v)


def conv(rng: np.random.Generator, name: str, oc: int, ic: int, k: int, fi: F, fo: F, stride: int = 1, pad: int = 0, relu: bool = True, modes: Sequence[str] = ("exact",), v: float = 1.1) -> QuantizedLayer:
    w = rng.integers(-100, 100, size=(oc, ic, k, k))
    b = rng.integers(-3000, 3000, size=oc)
    return QuantizedLayer(name, "conv", fi, fo, w, F(8, 7), b, relu, tuple(parse_mode(m) for m in modes), v, stride, pad)


def network(kind: str, seed: int = 0, modes: Sequence[str] = ("exact",), v: float = 1.1) -> tuple[list[QuantizedLayer], tuple[int, ...]]:
    """``mlp`` (13-11-5), ``cnn`` (2x9x9: conv3x3/2 pad1 -> pool2/1 -> conv2x2 -> flatten -> 7),
    ``mixed`` (per-neuron modes in one layer). Returns layers and the input shape."""
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        return [dense(rng, "d0", 11, 13, F(8, 4), F(8, 2), modes=modes, v=v), dense(rng, "d1", 5, 11, F(8, 2), F(8, 3), relu=False, modes=modes, v=v)], (13,)
    if kind == "cnn":
        return [
            conv(rng, "c0", 3, 2, 3, F(8, 4), F(8, 2), stride=2, pad=1, modes=modes, v=v),
            QuantizedLayer("p0", "maxpool", F(8, 2), F(8, 2), kernel=2, stride=1),
            conv(rng, "c1", 5, 3, 2, F(8, 2), F(8, 1), modes=modes, v=v),
            QuantizedLayer("fl", "flatten", F(8, 1), F(8, 1)),
            dense(rng, "d2", 7, 45, F(8, 1), F(8, 2), relu=False, modes=modes, v=v),
        ], (2, 9, 9)
    if kind == "mixed":
        per_neuron = ("exact", "drum:2", "drum:2", "drum:4", "exact", "drum:1")
        return [dense(rng, "d0", 6, 10, F(8, 4), F(8, 2), modes=per_neuron, v=v), dense(rng, "d1", 3, 6, F(8, 2), F(8, 3), relu=False, modes=("drum:3",), v=v)], (10,)
    raise ValueError(kind)


def compile_layers(layers: Sequence[QuantizedLayer], input_shape: tuple[int, ...], out: Path, arch: Architecture = DEFAULT_ARCH, app: str = "custom") -> Path:
    """Export ``layers`` to ONNX and compile them into a bundle at ``out``; returns the bundle path."""
    import warnings

    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.trainer.export import export_layers, save_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights may exceed the float32 bound: irrelevant here
        model = export_layers(layers, input_shape, {"app": app, "seed": "0"})
    onnx_path = out.with_suffix(".onnx")
    save_model(model, onnx_path)
    return compile_to_bundle(onnx_path, out, arch, overwrite=True)


@pytest.fixture(scope="session")
def bundle_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Bundle, list[QuantizedLayer]]]:
    """``make(kind, arch_name="default", modes=("exact",), v=1.1)`` -> (loaded bundle, its layers), cached."""
    cache: dict[tuple, tuple[Bundle, list[QuantizedLayer]]] = {}
    root = tmp_path_factory.mktemp("bundles")

    def make(kind: str, arch_name: str = "default", modes: Sequence[str] = ("exact",), v: float = 1.1) -> tuple[Bundle, list[QuantizedLayer]]:
        key = (kind, arch_name, tuple(modes), v)
        if key not in cache:
            layers, shape = network(kind, modes=modes, v=v)
            name = f"{kind}-{arch_name}-{'_'.join(m.replace(':', '') for m in modes)}-{v}"
            path = compile_layers(layers, shape, root / name, ARCHS[arch_name])
            cache[key] = (load_bundle(path), layers)
        return cache[key]

    return make


def random_inputs(bundle: Bundle, n: int, seed: int = 1) -> np.ndarray:
    """Float inputs spanning (and exceeding) the input format's range, off the grid."""
    fmt = F.parse(bundle.manifest.input.format)
    rng = np.random.default_rng(seed)
    return rng.uniform(fmt.qmin * fmt.scale * 1.2, fmt.qmax * fmt.scale * 1.2, size=(n, *bundle.manifest.input.shape)).astype(np.float32)
