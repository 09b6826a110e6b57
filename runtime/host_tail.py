"""The host side of a bundle: its tail ops on the dequantised outputs, and the output-error metrics.

A bundle's ``manifest.host_tail`` (compiler/host_tail.py) lists float ops that follow the network's
last layer in the ONNX graph: ``Sigmoid`` (the paper's output layer), ``Softmax``, ``LogSoftmax``,
``ArgMax``. The accelerator stops at the last layer's dequantised outputs ``z``; the host then
applies each op in float32, in order: ``Sigmoid`` is ``1 / (1 + exp(-z))`` in float32 (numpy);
``Softmax`` and ``LogSoftmax`` are taken over the class axis after subtracting the maximum;
``ArgMax`` gives int64 class indices (the first on ties). onnxruntime's own float32 Sigmoid
is an approximation of the same function, so the two agree to within :data:`SIGMOID_ATOL` (absolute)
rather than bit for bit; everything before the tail stays bit-identical (tests/runtime).

The decided class is the argmax of ``z``, before the tail: a monotone tail does not change it, and
``z`` is exact where float32 sigmoid values of large ``z`` would tie at 1.0.

Output-error metrics (:func:`output_metrics`), the same definitions as the trainer's
(``axtrain.trainer.outputs``; cross-checked in tests): with a Sigmoid tail the outputs ``O`` are the
Sigmoid outputs and ``p = O / sum_k O_k``; without a tail ``O = p = softmax(z)`` (a softmax
network's outputs). ``mse = mean_n sum_k (O - t)^2``, ``brier`` the same on ``p``,
``ce = -mean_n log p_y`` (p floored at 1e-12), ``error_rate = mean_n [argmax z != y]``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

#: Largest |ours - onnxruntime| of a float32 Sigmoid measured or allowed (tests/runtime).
SIGMOID_ATOL = 1e-6
METRICS: tuple[str, ...] = ("mse", "ce", "brier", "error_rate")
_P_FLOOR = 1e-12


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    with np.errstate(over="ignore"):  # exp(-z) overflows to inf for z < -88: sigmoid is 0 there
        return np.asarray((np.float32(1) / (np.float32(1) + np.exp(-z))).astype(np.float32))


def _softmax(z: np.ndarray) -> np.ndarray:
    """Over the class axis (the last), in float32, shifted by the maximum (no overflow)."""
    z = np.asarray(z, dtype=np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray((e / e.sum(axis=-1, keepdims=True)).astype(np.float32))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - max - log(sum(exp(z - max)))`` over the class axis, in float32."""
    z = np.asarray(z, dtype=np.float32)
    shifted = z - z.max(axis=-1, keepdims=True)
    return np.asarray((shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32))


def _argmax(z: np.ndarray) -> np.ndarray:
    """Class indices (int64) over the last axis, the first on ties (onnxruntime's ArgMax)."""
    return np.asarray(np.argmax(np.asarray(z), axis=-1).astype(np.int64))


#: The host's implementation of each tail op (float32 in; float32 out, ArgMax int64 indices).
HOST_OPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"Sigmoid": _sigmoid, "Softmax": _softmax, "LogSoftmax": _log_softmax, "ArgMax": _argmax}


def tail_ops(bundle: Any) -> list[str]:
    """The op names of a bundle's host tail, in order (empty for bundles without one)."""
    return [op.op for op in getattr(bundle.manifest, "host_tail", [])]


def apply_tail(ops: Sequence[str], outputs: np.ndarray) -> np.ndarray:
    """``outputs`` (float32) with each op of ``ops`` applied in order, in float32 (after an ArgMax:
    int64 class indices)."""
    y = np.asarray(outputs, dtype=np.float32)
    for op in ops:
        y = HOST_OPS[op](y)
    return y


def output_reading(ops: Sequence[str]) -> str:
    """Which outputs the metrics score: ``sigmoid`` (a Sigmoid tail) or ``softmax`` (no tail)."""
    return "sigmoid" if list(ops) == ["Sigmoid"] else "softmax"


def output_metrics(z: np.ndarray, labels: np.ndarray, ops: Sequence[str]) -> dict[str, float]:
    """Each metric of :data:`METRICS` over the samples, from the pre-tail outputs ``z`` ([N, K])."""
    z64 = np.asarray(z, dtype=np.float64).reshape(len(labels), -1)
    y = np.asarray(labels, dtype=np.int64)
    onehot = np.eye(z64.shape[1])[y]
    if output_reading(ops) == "sigmoid":
        o = 1.0 / (1.0 + np.exp(-z64))
        p = o / np.maximum(o.sum(axis=1, keepdims=True), _P_FLOOR)
    else:
        e = np.exp(z64 - z64.max(axis=1, keepdims=True))
        o = p = e / e.sum(axis=1, keepdims=True)
    mse = float(((o - onehot) ** 2).sum(axis=1).mean())
    return {
        "mse": mse,
        "ce": float(-np.log(np.maximum(p[np.arange(len(y)), y], _P_FLOOR)).mean()),
        "brier": mse if p is o else float(((p - onehot) ** 2).sum(axis=1).mean()),  # without a tail O is p: the same float
        "error_rate": float((z64.argmax(axis=1) != y).mean()),
    }
