"""Pass float32_bound: the float32 accumulation bound of docs/numerics.md for every compiled graph.

onnxruntime evaluates a QDQ graph in float32. Its result equals the fixed-point integers only while
every product and partial sum of a layer is an integer below ``2**24`` LSBs of the accumulator:
``fan_in * max|a| * max|w| + max|bias| < 2**24`` (``max|a|`` the input format's largest magnitude,
``max|w|``, ``max|bias|`` the layer's integers). Our exporter checks it (trainer/export.py); an
imported graph is checked here. A layer above the bound compiles (the bundle is right: the integers
are what the hardware computes) but a ``Float32BoundWarning`` says that onnxruntime may differ from
it, and the manifest records each layer's bound (``float32_bound``).
"""

from __future__ import annotations

import warnings

from axtrain.compiler.ir import CompilerIR
from axtrain.formats.onnx_schema import FLOAT32_EXACT_LIMIT
from axtrain.hwmodels.layers import accumulation_bound


class Float32BoundWarning(UserWarning):
    """A compiled layer exceeds the float32 accumulation bound: onnxruntime may differ from the bundle."""


def float32_bound(ir: CompilerIR) -> CompilerIR:
    """Record each weighted layer's accumulation bound in its meta; warn for layers at or above 2**24."""
    assert ir.layers is not None
    layers = []
    for index, layer in enumerate(ir.layers):
        if layer.has_weights:
            bound = accumulation_bound(layer)
            if bound >= FLOAT32_EXACT_LIMIT:
                warnings.warn(
                    f"{ir.layer_label(index)}: accumulation bound {bound} >= 2**24; onnxruntime's float32 result "
                    f"may differ from the fixed-point integers the bundle computes (docs/numerics.md)",
                    Float32BoundWarning,
                    stacklevel=2,
                )
            layer = layer.with_changes(meta={**layer.meta, "accumulation_bound": bound})
        layers.append(layer)
    return ir.update(layers=tuple(layers))
