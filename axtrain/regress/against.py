"""``axtrain verify BUNDLE --against MODEL.onnx``: the bundle against the ONNX model it came from.

Every golden input and ``extra`` seeded random inputs run through the bundle's program in the ISA
reference interpreter with exact multipliers (onnxruntime ignores the approximation annotations)
and through the model in onnxruntime (``trainer.export.bit_exact_session``:
QDQ fusions off); the dequantised outputs must be equal bit for bit (docs/numerics.md: float32 is
exact within the exporter's accumulation bound). A bundle with a host tail (a Sigmoid after the last
layer, runtime/host_tail.py) is compared after the tail, within ``SIGMOID_ATOL``: onnxruntime's
float32 Sigmoid is an approximation of numpy's. A bundle with non-power-of-two scales (ISA 2 requant
multipliers other than 2**30) is compared within one output LSB (docs/numerics.md). A model file whose sha256 differs from the
bundle's ``source_onnx_sha256`` is compared all the same (a re-export may be equivalent) and the
line says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from axtrain.errors import BundleError, ConfigError
from axtrain.formats.bundle import Bundle, sha256_file
from axtrain.hwmodels.fixedpoint import dequantize
from axtrain.hwmodels.multipliers import EXACT
from axtrain.runtime.host_tail import SIGMOID_ATOL, apply_tail, tail_ops
from axtrain.runtime.interpreter import run_bundle

EXTRA_SEED = 20170205


def extra_inputs(bundle: Bundle, count: int) -> np.ndarray:
    """``count`` seeded float32 inputs over the input format's range and 10 % beyond."""
    f = bundle.manifest.input.fixed_point
    rng = np.random.default_rng(EXTRA_SEED)
    return rng.uniform(f.qmin * f.scale * 1.1, f.qmax * f.scale * 1.1, size=(count, *bundle.manifest.input.shape)).astype(np.float32)


def onnx_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    """The model's float32 output for ``x`` (one-line ConfigError when the model does not run)."""
    from axtrain.trainer.export import bit_exact_session  # the exporter and onnxruntime: only --against needs them

    try:
        session = bit_exact_session(model)
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: x})[0], dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception classes
        raise ConfigError(f"--against {model}: onnxruntime cannot run it ({' '.join(str(exc).split())[:160]})") from None


def verify_against(bundle: Bundle, model: Path, extra: int = 64) -> list[str]:
    """Compare; returns the lines to print, raises BundleError naming the first differing value."""
    if not model.is_file():
        raise ConfigError(f"--against: {model} does not exist")
    if not 0 <= extra <= 100_000:
        raise ConfigError(f"--extra must lie in [0, 100000], got {extra}")
    same = sha256_file(model) == bundle.manifest.source_onnx_sha256
    goldens = bundle.golden_inputs()
    x = np.concatenate([goldens, extra_inputs(bundle, extra)]) if extra else goldens
    tail = tail_ops(bundle)
    # onnxruntime multiplies exactly whatever the graph's approximation annotations say, so the bundle
    # runs with exact multipliers too (its own K/DRUM modes are what `simulate` and the goldens use).
    ours = run_bundle(bundle, x, mode_override=EXACT)[-1]
    ours = dequantize(ours, bundle.manifest.output.fixed_point).astype(np.float32)
    ours = apply_tail(tail, ours)
    theirs = onnx_outputs(model, x)
    if theirs.shape != ours.shape:
        raise BundleError(f"--against {model.name}: onnxruntime output shape {list(theirs.shape)} != the bundle's {list(ours.shape)}")
    # ISA 2: a bundle whose requant multipliers are not all powers of two (M = 2**30) has non-power-of-two
    # scales and matches onnxruntime's float path within one output LSB (docs/numerics.md), not bit for bit.
    rescaled = bool(bundle.requant.size) and bool(np.any(bundle.requant[:, 0] != 1 << 30))
    lsb = float(bundle.manifest.output.fixed_point.scale) if rescaled else 0.0
    if tail:
        wrong = np.argwhere(np.abs(theirs - ours) > SIGMOID_ATOL + lsb)
    elif lsb:
        wrong = np.argwhere(np.abs(np.rint((theirs - ours) / np.float32(lsb))) > 1)
    else:
        wrong = np.argwhere(theirs != ours)
    if wrong.size:
        where = tuple(int(i) for i in wrong[0])
        kind = "golden" if where[0] < len(goldens) else "extra"
        raise BundleError(
            f"--against {model.name}: {len(wrong)} output values differ from onnxruntime; first at input {where[0]} ({kind}) "
            f"value {where[1:]}: bundle {float(ours[where])!r}, onnxruntime {float(theirs[where])!r}"
        )
    origin = "the bundle's source" if same else "NOT the bundle's source file (sha256 differs), compared anyway"
    agree = f"within {SIGMOID_ATOL:g} after the host tail ({', '.join(tail)})" if tail else "within 1 output LSB (non-power-of-two scales)" if lsb else "bit for bit"
    return [
        f"against {model.name} OK  ({len(goldens)} goldens + {extra} extra inputs, exact multipliers, equal onnxruntime {agree}; "
        f"model is {origin})"
    ]
