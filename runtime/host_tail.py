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


def class_sums(columns: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_k columns[k]`` in the order numpy's ``sum(axis=-1)`` adds a contiguous row of
    ``len(columns)`` values: its pairwise summation (sequential from 0 below 8 values; eight running
    sums, combined as a tree, then the rest, up to 128; halves at a multiple of 8 above). So the
    class-major metrics below give the row-major definition's floats bit for bit (a test compares
    them on 1-300 classes); one vector operation per class instead of a reduction over short rows,
    which numpy runs several times slower."""
    n = len(columns)
    if n < 8:
        total = columns[0] + 0.0  # numpy starts from 0.: -0.0 + 0.0 is +0.0, as there
        for column in columns[1:]:
            total = total + column
        return np.asarray(total)
    if n <= 128:
        sums = [column.copy() for column in columns[:8]]
        end = n - n % 8
        for start in range(8, end, 8):
            for j in range(8):
                sums[j] += columns[start + j]
        total = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]))
        for column in columns[end:]:
            total = total + column
        return np.asarray(total)
    half = n // 2
    half -= half % 8
    return np.asarray(class_sums(columns[:half]) + class_sums(columns[half:]))


def output_metrics_runs(z: np.ndarray, labels: np.ndarray, ops: Sequence[str]) -> list[dict[str, float]]:
    """:func:`output_metrics` of every run of ``z`` (``[runs, N, K]``), the same floats.

    Computed class-major (``[K, runs, N]``): every reduction over the K classes is K vector
    operations in numpy's own order (:func:`class_sums`), and the means over the samples are the
    same per-run means. 10,000 MNIST outputs: ~1.6 ms a run instead of ~2.9 ms."""
    runs = z.shape[0]
    y = np.asarray(labels, dtype=np.int64)
    z = np.asarray(z).reshape(runs, len(y), -1)
    classes = z.shape[2]
    t = np.empty((classes, runs, len(y)), dtype=np.float64)
    for k in range(classes):  # one strided copy per class: ~3x faster than a transposed copy
        t[k] = z[:, :, k]
    # The first class of the largest output (np.argmax's choice on ties; no NaNs: dequantised
    # integers), and that largest output: numpy's argmax over 10 classes costs 3x the whole rest.
    top, decided = t[0], np.zeros((runs, len(y)), dtype=np.int64)
    for k in range(1, classes):
        decided = np.where(t[k] > top, k, decided)
        top = np.maximum(top, t[k])  # exact in any order
    if output_reading(ops) == "sigmoid":
        o = 1.0 / (1.0 + np.exp(-t))
        p = o / np.maximum(class_sums(list(o)), _P_FLOOR)
    else:
        e = np.exp(t - top)
        o = p = e / class_sums(list(e))
    onehot = [y == k for k in range(classes)]  # subtracted as 1.0 / 0.0, np.eye's values

    def squared_error(values: np.ndarray) -> np.ndarray:
        return np.asarray(class_sums([(values[k] - onehot[k]) ** 2 for k in range(classes)]).mean(axis=1))

    mse = squared_error(o)
    brier = mse if p is o else squared_error(p)
    picked = np.take_along_axis(p, np.broadcast_to(y, (1, runs, len(y))), axis=0)[0]
    ce = (-np.log(np.maximum(picked, _P_FLOOR))).mean(axis=1)
    error = (decided != y).mean(axis=1)
    return [{"mse": float(mse[r]), "ce": float(ce[r]), "brier": float(brier[r]), "error_rate": float(error[r])} for r in range(runs)]
